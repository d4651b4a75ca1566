"""Random and mangled inventories never produce a traceback: exit 0 (valid) or 2 (bad input), nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pi_cluster.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example"
HOSTS_TEXT = (EXAMPLE / "hosts.yml").read_text()
VARS_TEXT = (EXAMPLE / "group_vars" / "all.yml").read_text()
runner = CliRunner()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["10.42.0.0/16", "10.43.0.10", "192.168.1.0/24", "300.1.1.1", "::1", "fe80::/10", "{{ x }}",
                     "{{ hostvars }}", "iptables", "nftables", "vxlan", "!vault |", "v1.30.0+k3s1", "~", "*a"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=3),
                      max_leaves=8)
setting_keys = st.sampled_from(["cluster_cidr", "service_cidr", "cluster_dns", "kube_proxy_mode", "flannel_backend",
                                "servicelb", "k3s_version", "token", "api_port", "network_prefix", "network_gateway",
                                "network_dns", "node_labels", "node_taints", "extra_server_args", "ansible_host",
                                "ansible_port", "ssh_public_keys", "network_mode", "wifi_psk"])


def run_check(hosts: str, group_vars: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "inv"
        (d / "group_vars").mkdir(parents=True)
        (d / "hosts.yml").write_text(hosts)
        (d / "group_vars" / "all.yml").write_text(group_vars)
        result = runner.invoke(app, ["inventory", "check", "-i", str(d)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n--- hosts\n{hosts}\n--- vars\n{group_vars}"
    )
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_mangled_text_never_tracebacks(data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["hosts", "vars"]))
    text = HOSTS_TEXT if which == "hosts" else VARS_TEXT
    pos = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 40))
    insert = data.draw(st.text(alphabet=" \t\n:-{}[]'\"#&*!|>%@`,?0123456789abc.", max_size=12))
    mangled = text[:pos] + insert + text[pos + cut:]
    if which == "hosts":
        run_check(mangled, VARS_TEXT)
    else:
        run_check(HOSTS_TEXT, mangled)


@FUZZ
@given(st.dictionaries(setting_keys, values, max_size=5))
def test_random_setting_values_never_traceback(overrides: dict) -> None:
    run_check(HOSTS_TEXT, VARS_TEXT + "\n" + yaml.safe_dump(overrides))


@FUZZ
@given(values)
def test_random_documents_never_traceback(doc: object) -> None:
    run_check(yaml.safe_dump(doc), VARS_TEXT)

"""The inventory model and `pi-cluster inventory check/show`: every bad-input rule, on small real inventories."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pi_cluster import inventory as inv
from pi_cluster.cli.main import app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "example"
runner = CliRunner()


def write_inventory(tmp_path: Path, hosts: str, group_vars: str | None = None, host_vars: dict | None = None) -> Path:
    d = tmp_path / "inv"
    (d / "group_vars").mkdir(parents=True)
    (d / "hosts.yml").write_text(textwrap.dedent(hosts))
    if group_vars is not None:
        (d / "group_vars" / "all.yml").write_text(textwrap.dedent(group_vars))
    for host, text in (host_vars or {}).items():
        (d / "host_vars").mkdir(exist_ok=True)
        (d / "host_vars" / f"{host}.yml").write_text(textwrap.dedent(text))
    return d


GOOD_HOSTS = """\
    k3s_cluster:
      children:
        server:
          hosts:
            node1: {ansible_host: 192.168.5.11}
        agent:
          hosts:
            node2: {ansible_host: 192.168.5.12}
            node3: {ansible_host: 192.168.5.13}
      vars:
        ansible_user: pi
    """


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_example_inventory_is_valid() -> None:
    cluster = inv.load(EXAMPLE)
    assert [n.name for n in cluster.servers] == ["node1"]
    assert [n.name for n in cluster.agents] == ["node2", "node3"]
    assert cluster.settings.api_endpoint == "192.168.1.11"
    assert str(cluster.settings.cluster_dns) == "10.43.0.10"
    assert cluster.node("node2").user == "pi"
    assert not [w for w in cluster.warnings if w.severity == "error"]


def test_example_every_default_documented() -> None:
    """group_vars/all.yml of the example and README's table cover every cluster setting."""
    text = (EXAMPLE / "group_vars" / "all.yml").read_text()
    readme = (REPO / "README.md").read_text()
    for key in inv.DEFAULTS:
        assert f"\n{key}:" in text or f"# {key}:" in text, f"{key} missing from example group_vars"
        assert f"`{key}`" in readme, f"{key} missing from README"


def test_cli_check_example_exits_0() -> None:
    code, out = cli("inventory", "check", "-i", str(EXAMPLE))
    assert code == 0, out
    assert "1 server(s) node1" in out
    assert "2 agent(s) node2, node3" in out


def test_ansible_inventory_reads_example() -> None:
    exe = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run([str(exe), "-i", str(EXAMPLE), "--list"], check=True, capture_output=True, text=True,
                         cwd=REPO).stdout
    data = json.loads(out)
    assert sorted(data["server"]["hosts"]) == ["node1"]
    assert data["_meta"]["hostvars"]["node3"]["ansible_host"] == "192.168.1.13"


def test_host_vars_override_group_vars_as_in_ansible(tmp_path: Path) -> None:
    d = write_inventory(tmp_path, GOOD_HOSTS, "node_labels: {site: lab}\nnetwork_prefix: 24\n",
                        {"node3": "node_labels: {disk: ssd}\n"})
    cluster = inv.load(d)
    assert cluster.node("node2").labels == {"site": "lab"}
    assert cluster.node("node3").labels == {"disk": "ssd"}


def test_jinja_values_are_templated(tmp_path: Path) -> None:
    d = write_inventory(tmp_path, GOOD_HOSTS,
                        "api_endpoint: \"{{ hostvars[groups['server'][0]]['ansible_host'] }}\"\n")
    assert inv.load(d).settings.api_endpoint == "192.168.5.11"


def test_inventory_as_single_file(tmp_path: Path) -> None:
    f = tmp_path / "one.yml"
    f.write_text(textwrap.dedent(GOOD_HOSTS))
    assert len(inv.load(f).nodes) == 3


def test_default_inventory_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_inventory(tmp_path, GOOD_HOSTS)
    monkeypatch.setenv(inv.ENV_VAR, str(d))
    code, out = cli("inventory", "check")
    assert code == 0, out
    assert str(d) in out


def bad(tmp_path: Path, hosts: str = GOOD_HOSTS, group_vars: str | None = None,
        host_vars: dict | None = None) -> str:
    d = write_inventory(tmp_path, hosts, group_vars, host_vars)
    code, out = cli("inventory", "check", "-i", str(d))
    assert code == 2, out
    assert "Traceback" not in out
    return " ".join(out.split())


def test_missing_inventory(tmp_path: Path) -> None:
    code, out = cli("inventory", "check", "-i", str(tmp_path / "nope"))
    assert code == 2
    assert "inventory not found" in out and "nope" in out


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS, "cluster_cidr: 10.42.0.0/16\nservice_cidr: [10.43.0.0/16\nfoo: 1\n")
    assert "group_vars/all.yml:" in out and "YAML syntax error" in out


def test_no_server(tmp_path: Path) -> None:
    out = bad(tmp_path, """\
        k3s_cluster:
          children:
            agent:
              hosts:
                node2: {ansible_host: 192.168.5.12}
        """)
    assert "no server" in out


def test_duplicate_hostname_yaml_key(tmp_path: Path) -> None:
    out = bad(tmp_path, """\
        k3s_cluster:
          children:
            server:
              hosts:
                node1: {ansible_host: 192.168.5.11}
                node1: {ansible_host: 192.168.5.12}
        """)
    assert "host node1" in out and "duplicate key 'node1'" in out


def test_duplicate_hostname_case(tmp_path: Path) -> None:
    out = bad(tmp_path, """\
        k3s_cluster:
          children:
            server:
              hosts:
                node1: {ansible_host: 192.168.5.11}
            agent:
              hosts:
                Node1: {ansible_host: 192.168.5.12}
        """)
    assert "host Node1" in out and "duplicate hostname" in out


def test_duplicate_ansible_host(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS.replace("192.168.5.13", "192.168.5.12"))
    assert "host node3, field ansible_host" in out and "duplicate ansible_host 192.168.5.12" in out
    assert "hosts.yml" in out


def test_malformed_ip(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS.replace("192.168.5.13", "192.168.5.300"))
    assert "host node3, field ansible_host" in out and "malformed IP address" in out


def test_malformed_cidr(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="cluster_cidr: 10.42.0.0/33\n")
    assert "host node1, field cluster_cidr" in out and "malformed CIDR" in out
    assert "group_vars/all.yml:1" in out


def test_overlapping_cidrs(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="cluster_cidr: 10.42.0.0/15\nservice_cidr: 10.43.0.0/16\n")
    assert "field service_cidr" in out and "overlaps cluster_cidr" in out


def test_cidr_overlapping_node_lan(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="cluster_cidr: 192.168.0.0/16\n")
    assert "field cluster_cidr" in out and "overlaps the LAN 192.168.5.0/24 of node node1" in out


def test_cluster_dns_outside_service_cidr(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="cluster_dns: 10.44.0.10\n")
    assert "field cluster_dns" in out and "outside service_cidr" in out


def test_unknown_proxy_mode(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="kube_proxy_mode: userspace\n")
    assert "host node1, field kube_proxy_mode" in out and "'userspace'" in out and "iptables, nftables" in out


def test_unknown_flannel_backend(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="flannel_backend: udp\n")
    assert "field flannel_backend" in out and "'udp'" in out


def test_unpinned_version(tmp_path: Path) -> None:
    out = bad(tmp_path, group_vars="k3s_version: latest\n")
    assert "field k3s_version" in out


def test_invalid_hostname(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS.replace("node3:", "node_3:"))
    assert "host node_3" in out and "not a valid node name" in out


def test_host_var_error_names_host_vars_file(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS, None, {"node2": "network_gateway: 192.168.9.1\n"})
    assert "host_vars/node2.yml:1" in out and "host node2, field network_gateway" in out


def test_all_problems_listed_at_once(tmp_path: Path) -> None:
    out = bad(tmp_path, GOOD_HOSTS.replace("192.168.5.13", "192.168.5.12"),
              "kube_proxy_mode: bogus\nflannel_backend: bogus\n")
    assert "3 problem(s)" in out


def test_even_servers_is_a_warning(tmp_path: Path) -> None:
    d = write_inventory(tmp_path, """\
        k3s_cluster:
          children:
            server:
              hosts:
                node1: {ansible_host: 192.168.5.11}
                node2: {ansible_host: 192.168.5.12}
        """)
    code, out = cli("inventory", "check", "-i", str(d))
    assert code == 0, out
    assert "warning" in out and "2 servers" in out


def test_show_masks_secrets(tmp_path: Path) -> None:
    d = write_inventory(tmp_path, GOOD_HOSTS, "token: s3cr3t-t0ken\nwifi_psk: hunter22\n")
    code, out = cli("inventory", "show", "-i", str(d), "--json")
    assert code == 0, out
    assert "s3cr3t-t0ken" not in out and "hunter22" not in out
    data = json.loads(out)
    assert data["nodes"][0]["vars"]["token"] == "********"
    assert data["cluster"]["token"] == "(set)"
    code, out = cli("inventory", "show", "-i", str(d))
    assert code == 0 and "s3cr3t-t0ken" not in out and "hunter22" not in out


def test_version_and_help() -> None:
    code, out = cli("--version")
    assert code == 0 and out.startswith("pi-cluster ")
    for args in (["--help"], ["inventory", "--help"], ["inventory", "check", "--help"]):
        code, out = cli(*args)
        assert code == 0 and "Usage" in out


def test_console_script_installed() -> None:
    exe = Path(sys.executable).parent / "pi-cluster"
    r = subprocess.run([str(exe), "inventory", "check", "-i", str(EXAMPLE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_problem_model_yaml_roundtrip() -> None:
    p = inv.Problem(file="f.yml", line=3, host="node1", field="cluster_dns", message="m", hint="h")
    assert str(p) == "f.yml:3, host node1, field cluster_dns: m (h)"
    assert yaml.safe_dump(p.model_dump())

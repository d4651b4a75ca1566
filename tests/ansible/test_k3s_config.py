"""config.yaml and the join token, rendered by a real ansible-playbook run of the k3s_common role's token and
config tasks into per-host temporary directories (k3s_manage_service=false: no service is touched), compared
with the YAML k3s should get for each layout and setting."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from playbook_helpers import local_host, run_playbook, write_yaml

PLAYBOOK = """\
- name: Render the k3s files
  hosts: k3s_cluster
  gather_facts: false
  vars:
    k3s_manage_service: false
  tasks:
    - name: Token
      ansible.builtin.import_role:
        name: k3s_common
        tasks_from: token
    - name: Config
      ansible.builtin.import_role:
        name: k3s_common
        tasks_from: config
"""

IP = {"s1": "192.0.2.11", "s2": "192.0.2.12", "s3": "192.0.2.13", "a1": "192.0.2.21", "a2": "192.0.2.22"}


def _render(tmp_path: Path, servers: list[str], agents: list[str], group_vars: dict[str, Any],
            host_vars: dict[str, dict[str, Any]] | None = None, *args: str) -> tuple[dict[str, dict[str, Any]], Any]:
    def hosts(names: list[str]) -> dict[str, Any]:
        return {n: local_host(ansible_host=IP[n], k3s_config_dir=str(tmp_path / n), **(host_vars or {}).get(n, {}))
                for n in names}

    inv = write_yaml(tmp_path / "inv" / "hosts.yml", {"k3s_cluster": {"children": {
        "server": {"hosts": hosts(servers)}, "agent": {"hosts": hosts(agents)}}}})
    write_yaml(tmp_path / "inv" / "group_vars" / "all.yml", group_vars)
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    run = run_playbook(playbook, inv.parent, *args)
    assert run.rc == 0, run.output
    configs = {}
    for n in servers + agents:
        text = (tmp_path / n / "config.yaml").read_text()
        assert text.startswith("# Managed by pi-cluster"), text
        configs[n] = yaml.safe_load(text)
    return configs, run


def _base(name: str, tmp_path: Path) -> dict[str, Any]:
    return {"node-name": name, "node-ip": IP[name], "token-file": f"{tmp_path / name}/cluster-token"}


def _server(**kw: Any) -> dict[str, Any]:
    cfg = {"cluster-cidr": "10.42.0.0/16", "service-cidr": "10.43.0.0/16", "cluster-dns": "10.43.0.10",
           "cluster-domain": "cluster.local", "flannel-backend": "vxlan", "tls-san": ["192.0.2.11"],
           "write-kubeconfig-mode": "0600", "kube-proxy-arg": ["proxy-mode=iptables"]}
    cfg.update(kw)
    return cfg


def test_ha_three_servers_iptables_vxlan_servicelb(tmp_path: Path) -> None:
    # verbose and --diff: every result and every file diff is printed, except where no_log hides it
    configs, run = _render(tmp_path, ["s1", "s2", "s3"], ["a1"], {"k3s_version": "v1.31.4+k3s1"}, None,
                           "-v", "--diff")
    join = {"server": "https://192.0.2.11:6443"}
    assert configs == {
        "s1": {**_base("s1", tmp_path), "cluster-init": True, **_server()},
        "s2": {**_base("s2", tmp_path), **join, **_server()},
        "s3": {**_base("s3", tmp_path), **join, **_server()},
        "a1": {**_base("a1", tmp_path), **join, "kube-proxy-arg": ["proxy-mode=iptables"]},
    }
    # one token, generated on s1, copied to the others, 0600, never in Ansible's output
    tokens = {n: (tmp_path / n / "cluster-token").read_text() for n in configs}
    assert len(set(tokens.values())) == 1
    token = tokens["s1"].strip()
    assert len(token) == 48 and token.isalnum()
    for n in configs:
        assert stat.S_IMODE((tmp_path / n / "cluster-token").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / n / "config.yaml").stat().st_mode) == 0o600
    assert token not in run.output
    assert "censored" in run.output  # no_log at work
    # idempotence of the token and config tasks: test_site_k3s.py runs them twice through site.yml


def test_single_server_nftables_host_gw_no_servicelb_vip_labels_taints_extra_args(tmp_path: Path) -> None:
    configs, run = _render(
        tmp_path, ["s1"], ["a1", "a2"],
        {"kube_proxy_mode": "nftables", "flannel_backend": "host-gw", "servicelb": False,
         "api_endpoint": "198.51.100.10", "api_port": 6444, "token": "from-the-vault-0123",
         "extra_server_args": {"disable": ["traefik"], "write-kubeconfig-mode": "0644"},
         "extra_agent_args": {"kubelet-arg": ["max-pods=50"]}},
        {"s1": {"node_labels": ["zone=a"], "node_taints": ["dedicated=infra:NoSchedule"]},
         "a1": {"node_labels": {"disk": "ssd", "zone": "b"}}},
        "-v", "--diff",
    )
    proxy = {"kube-proxy-arg": ["proxy-mode=nftables"]}
    join = {"server": "https://198.51.100.10:6444"}
    assert configs == {
        "s1": {**_base("s1", tmp_path), **_server(**proxy), "flannel-backend": "host-gw",
               "tls-san": ["198.51.100.10"], "https-listen-port": 6444, "disable": ["servicelb", "traefik"],
               "write-kubeconfig-mode": "0644", "node-label": ["zone=a"],
               "node-taint": ["dedicated=infra:NoSchedule"]},
        "a1": {**_base("a1", tmp_path), **join, **proxy, "node-label": ["disk=ssd", "zone=b"],
               "kubelet-arg": ["max-pods=50"]},
        "a2": {**_base("a2", tmp_path), **join, **proxy, "kubelet-arg": ["max-pods=50"]},
    }
    for n in configs:
        assert (tmp_path / n / "cluster-token").read_text() == "from-the-vault-0123\n"
    assert "from-the-vault-0123" not in run.output


@pytest.mark.parametrize(
    ("mode", "backend", "endpoint", "url"),
    [("ipvs", "wireguard-native", "", "https://192.0.2.11:6443"),
     ("iptables", "none", "2001:db8::10", "https://[2001:db8::10]:6443")],
)
def test_other_proxy_modes_and_backends(tmp_path: Path, mode: str, backend: str, endpoint: str, url: str) -> None:
    configs, _ = _render(tmp_path, ["s1", "s2", "s3"], ["a1"],
                         {"kube_proxy_mode": mode, "flannel_backend": backend, "api_endpoint": endpoint})
    san = [endpoint or "192.0.2.11"]
    proxy = {"kube-proxy-arg": [f"proxy-mode={mode}"]}
    assert configs["s1"] == {**_base("s1", tmp_path), "cluster-init": True,
                             **_server(**proxy, **{"flannel-backend": backend, "tls-san": san})}
    assert configs["s3"] == {**_base("s3", tmp_path), "server": url,
                             **_server(**proxy, **{"flannel-backend": backend, "tls-san": san})}
    assert configs["a1"] == {**_base("a1", tmp_path), "server": url, **proxy}

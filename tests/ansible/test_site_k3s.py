"""The real playbooks/site.yml, k3s part (`--tags k3s`), on a 2-server + 1-agent inventory whose hosts are
all this machine (ansible_connection=local) with per-host temporary directories and k3s_manage_service=false:
its plays in order (first server, joining servers one by one, agents), the token generated on the first
server and carried to every later play, config.yaml per role, the kubeconfig pointed at the API endpoint;
`--check` first (writes nothing), then a run, then a second run that changes nothing.

The k3s binary and the first server's /etc/rancher/k3s/k3s.yaml are TEST DOUBLES (no k3s runs here)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playbook_helpers import PLAYBOOKS, local_host, publish, run_playbook, serve, write_yaml

V1, V2 = "v1.31.4+k3s1", "v1.31.5+k3s1"
SMART = {"ANSIBLE_GATHERING": "smart"}  # facts once per host and run, not once per play (test speed)
IP = {"s1": "192.0.2.11", "s2": "192.0.2.12", "a1": "192.0.2.21"}
CLIENT_KEY = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tdGVzdC1kb3VibGU="
K3S_YAML = f"""\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tdGVzdA==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tY2xpZW50
    client-key-data: {CLIENT_KEY}
"""


@pytest.fixture
def release(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "release"
    root.mkdir()
    publish(root, V1)
    publish(root, V2)
    with serve(root) as url:
        yield url


@pytest.mark.slow
def test_site_k3s_plays_token_config_kubeconfig_check_and_idempotence(tmp_path: Path, release: str) -> None:
    def node(h: str) -> Path:
        return tmp_path / "nodes" / h

    def hosts(names: list[str]) -> dict[str, object]:
        return {h: local_host(ansible_host=IP[h], k3s_install_dir=str(node(h) / "bin"),
                              k3s_config_dir=str(node(h) / "etc"), k3s_images_dir=str(node(h) / "images"))
                for h in names}

    inv = write_yaml(tmp_path / "inv" / "hosts.yml", {"k3s_cluster": {"children": {
        "server": {"hosts": hosts(["s1", "s2"])}, "agent": {"hosts": hosts(["a1"])}}}})
    kubeconfig = tmp_path / "workstation" / "kube" / "config.yaml"
    write_yaml(inv.parent / "group_vars" / "all.yml", {
        "k3s_version": V1, "k3s_release_url": release, "k3s_install_script_url": f"{release}/install.sh",
        "k3s_manage_service": False, "kubeconfig": str(kubeconfig), "kube_proxy_mode": "nftables"})
    for h in IP:
        (node(h) / "bin").mkdir(parents=True)
    (node("s1") / "etc").mkdir()
    (node("s1") / "etc" / "k3s.yaml").write_text(K3S_YAML)  # what k3s would have written
    args = ("--tags", "k3s", "-e", "ansible_become=false")

    check = run_playbook(PLAYBOOKS / "site.yml", inv.parent, *args, "--check", env=SMART)
    assert check.rc == 0, check.output
    assert all(check.changed(h) > 0 for h in IP)
    assert not any((node(h) / "bin" / "k3s").exists() for h in IP)
    assert not kubeconfig.exists()

    run = run_playbook(PLAYBOOKS / "site.yml", inv.parent, *args, env=SMART)
    assert run.rc == 0, run.output
    # plays in order: first server alone, then the other servers one at a time, then the agent
    order = [line.split("[")[1].split("]")[0] for line in run.output.splitlines()
             if line.startswith("PLAY [")]
    assert order == ["Prepare the nodes", "Set up the first server", "Join the other servers", "Join the agents"]
    token = (node("s1") / "etc" / "cluster-token").read_text()
    configs = {}
    for h in IP:
        assert (node(h) / "bin" / "k3s").stat().st_mode & 0o777 == 0o755
        assert (node(h) / "bin" / "k3s-install.sh").exists()
        assert (node(h) / "etc" / "cluster-token").read_text() == token
        configs[h] = yaml.safe_load((node(h) / "etc" / "config.yaml").read_text())
    assert configs["s1"]["cluster-init"] is True and "server" not in configs["s1"]
    for h in ("s2", "a1"):
        assert configs[h]["server"] == "https://192.0.2.11:6443" and "cluster-init" not in configs[h]
    assert "cluster-cidr" not in configs["a1"]
    assert {c["kube-proxy-arg"][0] for c in configs.values()} == {"proxy-mode=nftables"}

    # the kubeconfig: 0600, server = the API endpoint, the rest as k3s wrote it
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert kubeconfig.read_text() == K3S_YAML.replace("https://127.0.0.1:6443", "https://192.0.2.11:6443")
    assert token.strip() not in run.output and CLIENT_KEY not in run.output

    again = run_playbook(PLAYBOOKS / "site.yml", inv.parent, *args, env=SMART)
    assert again.rc == 0, again.output
    assert {h: again.changed(h) for h in IP} == dict.fromkeys(IP, 0), again.output

    # the real upgrade.yml to V2: one node at a time, servers first
    upgrade = run_playbook(PLAYBOOKS / "upgrade.yml", inv.parent, "-e", "ansible_become=false", "-e",
                           f"k3s_version={V2}", env=SMART)
    assert upgrade.rc == 0, upgrade.output
    plays = [line for line in upgrade.output.splitlines() if line.startswith("PLAY [")]
    assert [p.split("[")[1].split("]")[0] for p in plays] == ["Upgrade the servers", "Upgrade the servers",
                                                               "Upgrade the agents"]
    replaced = [line.split("[")[1].split("]")[0] for line in upgrade.output.splitlines()
                if line.startswith("changed: [")]
    assert replaced == ["s1", "s2", "a1"]
    assert all(f"k3s version {V2}" in (node(h) / "bin" / "k3s").read_text() for h in IP)

"""The k3s_reset role (reset.yml's) run by the real ansible-playbook against a temporary root: every path of
its real default list (prefixed with the root) goes, the official uninstall script runs once, SSH and OS
files stay, and a second run (a node without k3s) changes nothing.

The uninstall script is a TEST DOUBLE that records its run and removes itself, as the real one does."""

from __future__ import annotations

from pathlib import Path

import yaml
from playbook_helpers import ROLES, local_host, run_playbook, write_yaml

PLAYBOOK = """\
- name: Reset
  hosts: k3s_cluster
  gather_facts: false
  vars:
    k3s_manage_service: false
  roles:
    - role: k3s_reset
"""


def test_reset_removes_k3s_and_our_files_only_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    defaults = yaml.safe_load((ROLES / "k3s_reset" / "defaults" / "main.yml").read_text())
    bindir = root / "usr/local/bin"
    paths = [p if p.startswith("{{") else f"{root}{p}" for p in defaults["k3s_reset_paths"]]
    os_paths = [f"{root}{p}" for p in defaults["k3s_reset_os_paths"]]
    concrete = [Path(p.replace("{{ k3s_install_dir }}", str(bindir))) for p in paths + os_paths]
    for p in concrete:
        if p.suffix in (".service", ".env", ".conf", ".sh") or p.name == "k3s":
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x\n")
        else:
            (p / "data").mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "uninstalled"
    uninstall = bindir / "k3s-uninstall.sh"
    uninstall.write_text(f"#!/bin/sh\necho ran >> {marker}\nrm -f \"$0\"\n")
    uninstall.chmod(0o755)
    keep = [root / "etc/ssh/sshd_config", root / "etc/hostname", root / "var/lib/rancher/other-tool/state",
            root / "usr/local/bin/my-tool", root / "etc/sysctl.d/99-mine.conf"]
    for p in keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("keep\n")

    inv = write_yaml(tmp_path / "hosts.yml", {"k3s_cluster": {"children": {"server": {"hosts": {"s1": local_host(
        ansible_host="192.0.2.11", k3s_install_dir=str(bindir), k3s_reset_paths=paths,
        k3s_reset_os_paths=os_paths)}}}}})
    playbook = tmp_path / "reset.yml"
    playbook.write_text(PLAYBOOK)

    first = run_playbook(playbook, inv)
    assert first.rc == 0, first.output
    assert marker.read_text() == "ran\n"
    assert not uninstall.exists()
    assert [p for p in concrete if p.exists()] == []
    assert all(p.read_text() == "keep\n" for p in keep)

    second = run_playbook(playbook, inv)
    assert second.rc == 0 and second.changed("s1") == 0, second.output
    assert marker.read_text() == "ran\n"

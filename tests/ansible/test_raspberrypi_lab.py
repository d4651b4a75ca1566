"""The raspberrypi role over real SSH (host key checking on) against the nodes of a lab cluster: each lab
node has its own private /boot/firmware/cmdline.txt. The Pi model file written into each node's /boot is a
TEST DOUBLE for /proc/device-tree/model (lab nodes run on this machine's kernel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playbook_helpers import run_playbook

from pi_cluster.lab import Lab

pytestmark = pytest.mark.lab

PLAYBOOK = """\
- name: Prepare the lab's Pis
  hosts: k3s_cluster
  gather_facts: false
  roles:
    - role: raspberrypi
      vars:
        raspberrypi_reboot: false
        raspberrypi_model_files: [/boot/firmware/model]
"""
FLAGS = " cgroup_memory=1 cgroup_enable=memory"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("lab needs root")
    missing = [t for t in ("ip", "sshd", "dnsmasq", "iptables-restore", "nsenter")
               if not shutil.which(t) and not shutil.which(t, path="/usr/sbin:/sbin")]
    if missing:
        pytest.skip(f"lab needs {missing}")
    name = f"t{os.getpid() % 100000}p"
    try:
        yield Lab.up(name=name, nodes=2, servers=1)
    finally:
        Lab.down(name)


def on_node(lab: Lab, node: str, script: str) -> str:
    return subprocess.run([*lab.exec_argv(node), "sh", "-c", script], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_cmdline_on_lab_nodes_over_ssh_twice(lab: Lab, tmp_path: Path) -> None:
    server, agent = (n.name for n in lab.nodes)
    model = "printf 'Raspberry Pi 5 Model B Rev 1.0\\0' > /boot/firmware/model"
    on_node(lab, server, f"sed -i 's/{FLAGS}//' /boot/firmware/cmdline.txt; {model}")
    on_node(lab, agent, model)
    before = {n: on_node(lab, n, "cat /boot/firmware/cmdline.txt") for n in (server, agent)}
    assert "cgroup" not in before[server] and FLAGS in before[agent]

    playbook = tmp_path / "pis.yml"
    playbook.write_text(PLAYBOOK)
    first = run_playbook(playbook, lab.inventory_path)
    assert first.rc == 0, first.output
    assert first.changed(server) == 1 and first.changed(agent) == 0, first.output
    after = {n: on_node(lab, n, "cat /boot/firmware/cmdline.txt") for n in (server, agent)}
    assert after[server] == before[server].rstrip("\n") + FLAGS + "\n"
    assert after[agent] == before[agent]

    second = run_playbook(playbook, lab.inventory_path)
    assert second.rc == 0, second.output
    assert second.changed(server) == 0 and second.changed(agent) == 0, second.output


def test_cli_provision_runs_the_real_site_yml_over_ssh(lab: Lab) -> None:
    """`pi-cluster provision --tags raspberrypi` on the lab: the real site.yml through ansible-runner and SSH
    (host key checking on). Lab nodes are not Pis (no device-tree model here): nothing to change."""
    exe = Path(sys.executable).parent / "pi-cluster"
    env = {k: v for k, v in os.environ.items() if k != "PI_CLUSTER_PLAYBOOKS"}
    proc = subprocess.run([str(exe), "provision", "-i", str(lab.inventory_path), "--tags", "raspberrypi",
                           "-e", "ansible_become=false"], capture_output=True, text=True, timeout=300,
                          env={**env, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if line.startswith("│")]
    assert sorted([r[0], r[1], r[3], r[4], r[5]] for r in rows) == sorted(
        [n.name, "ok", "0", "0", "0"] for n in lab.nodes)
    assert "site done: 0 change(s) were made on 2 host(s)" in proc.stdout

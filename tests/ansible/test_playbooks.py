"""Every playbook passes `ansible-playbook --syntax-check` with the example inventory, as a user runs it."""

from __future__ import annotations

import pytest
from playbook_helpers import PLAYBOOKS, REPO, run_playbook

PLAYBOOK_NAMES = ["site.yml", "upgrade.yml", "reboot.yml", "reset.yml"]


@pytest.mark.parametrize("name", PLAYBOOK_NAMES)
def test_syntax_check_with_example_inventory(name: str) -> None:
    run = run_playbook(PLAYBOOKS / name, REPO / "inventory" / "example", "--syntax-check", cwd=REPO)
    assert run.rc == 0, run.output
    assert f"playbook: {PLAYBOOKS / name}" in run.output


def test_site_plays_target_the_k3s_ansible_groups() -> None:
    """--list-hosts with the example inventory: OS prep on all, the first server alone, then the agents."""
    run = run_playbook(PLAYBOOKS / "site.yml", REPO / "inventory" / "example", "--list-hosts", cwd=REPO)
    assert run.rc == 0, run.output
    plays = [block for block in run.output.split("play #")[1:]]
    hosts = [sorted(line.strip() for line in p.split("hosts (")[1].splitlines()[1:] if line.strip()) for p in plays]
    assert hosts == [["node1", "node2", "node3"], ["node1"], [], ["node2", "node3"]]

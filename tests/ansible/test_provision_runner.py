"""pi_cluster.provision and `pi-cluster provision/reset`, from real ansible-runner runs of a small playbook
against this machine (ansible_connection=local). The playbooks directory used here is a TEST DOUBLE for the
real playbooks/ (selected with $PI_CLUSTER_PLAYBOOKS): site.yml and reset.yml of a few quick tasks."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from playbook_helpers import write_yaml
from rich.console import Console

from pi_cluster import provision as prov
from pi_cluster.cli.provision import progress_table, recap_table

SITE = """\
- name: Small play
  hosts: k3s_cluster
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
    - name: Write a file
      ansible.builtin.copy:
        content: "made by {{ inventory_hostname }}\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
        mode: "0644"
    - name: Tolerated failure
      ansible.builtin.command: /bin/false
      changed_when: false
      ignore_errors: true
      when: inventory_hostname == 's1'
    - name: Break on the agent
      ansible.builtin.command: /bin/false
      changed_when: false
      when: inventory_hostname in break_hosts
    - name: Never runs
      ansible.builtin.debug:
        msg: never
      when: false
"""
RESET = """\
- name: Reset double
  hosts: k3s_cluster
  gather_facts: false
  tasks:
    - name: Leave a mark
      ansible.builtin.file:
        path: "{{ out_dir }}/reset-{{ inventory_hostname }}"
        state: touch
        mode: "0644"
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    books = tmp_path / "playbooks-double"
    books.mkdir()
    (books / "site.yml").write_text(SITE)
    (books / "reset.yml").write_text(RESET)
    out = tmp_path / "out"
    out.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inv = write_yaml(tmp_path / "inv" / "hosts.yml", {"k3s_cluster": {
        "children": {"server": {"hosts": {"s1": {"ansible_host": "192.0.2.11", **local}}},
                     "agent": {"hosts": {"a1": {"ansible_host": "192.0.2.21", **local}}}},
        "vars": {"out_dir": str(out), "break_hosts": ["a1"]}}})
    monkeypatch.setenv("PI_CLUSTER_PLAYBOOKS", str(books))
    runs = tmp_path / "tmp"
    runs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    return {"books": books, "out": out, "inv": inv, "runs": runs, "tmp": tmp_path}


def test_progress_recap_and_failures_from_a_real_run(setup: dict[str, Path]) -> None:
    snapshots: list[dict[str, tuple[str, int, int, int]]] = []
    tables: list[str] = []

    def on_progress(state: prov.RunState) -> None:
        snapshots.append({h: (p.task, p.ok, p.changed, p.failed) for h, p in state.hosts.items()})
        if len(tables) < 40:
            console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
            console.print(progress_table(state))
            tables.append(console.export_text())

    result = prov.run_playbook("site", setup["inv"], diff=True, hosts=["s1", "a1"], on_progress=on_progress)

    assert result.rc != 0 and not result.ok
    # the final recap is Ansible's PLAY RECAP
    assert {h: (p.ok, p.changed, p.failed, p.unreachable, p.skipped, p.ignored)
            for h, p in result.hosts.items()} == {"s1": (3, 1, 0, 0, 2, 1), "a1": (2, 1, 1, 0, 1, 0)}
    assert result.failures == [prov.Failure("a1", "Break on the agent", "non-zero return code (rc 1)")]
    assert [(c.host, c.task) for c in result.changes] == [("s1", "Write a file"), ("a1", "Write a file")] or \
        [(c.host, c.task) for c in result.changes] == [("a1", "Write a file"), ("s1", "Write a file")]
    assert all("+made by" in c.diff for c in result.changes)

    # live progress: both hosts known from the start, the current task per host moves through the play,
    # the counters only grow
    assert snapshots[0] == {"s1": ("", 0, 0, 0), "a1": ("", 0, 0, 0)}
    seen_tasks = [s["a1"][0] for s in snapshots]
    for task in ("Say hello", "Write a file", "Break on the agent"):
        assert task in seen_tasks
    assert seen_tasks.index("Say hello") < seen_tasks.index("Write a file") < seen_tasks.index("Break on the agent")
    # the live counters, just before Ansible's recap, already were the recap's numbers
    assert snapshots[-2] == {h: ("Never runs" if h == "s1" else "Break on the agent", p.ok, p.changed, p.failed)
                             for h, p in result.hosts.items()}
    for before, after in itertools.pairwise(snapshots):
        for h in ("s1", "a1"):
            assert all(b <= a for b, a in zip(before[h][1:], after[h][1:], strict=True))
    assert any("Write a file" in t and "a1" in t and "s1" in t for t in tables)
    assert any("waiting" in t for t in tables)

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(recap_table(result))
    recap = console.export_text()
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in recap.splitlines() if line.startswith("│")]
    assert rows == [["a1", "failed", "2", "1", "1", "0", "1", "0"],
                    ["s1", "changed", "3", "1", "0", "0", "2", "1"]], recap  # `ignored` shown: it was used

    # runner artifacts went to a temporary directory and are gone
    assert list(setup["runs"].iterdir()) == []
    assert not (Path(__file__).parents[2] / "artifacts").exists()


def test_unreachable_host_is_reported(setup: dict[str, Path]) -> None:
    inv = write_yaml(setup["tmp"] / "inv2" / "hosts.yml", {"k3s_cluster": {"children": {"server": {"hosts": {
        "s1": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody",
               "ansible_ssh_common_args": "-o ConnectTimeout=3"}}}},
        "vars": {"out_dir": str(setup["out"]), "break_hosts": []}}})
    before = signal.getsignal(signal.SIGINT)
    result = prov.run_playbook("site", inv)
    # ansible-runner's own Ctrl-C handler does not outlive the run
    assert signal.getsignal(signal.SIGINT) is before
    assert not result.ok
    assert result.hosts["s1"].unreachable == 1
    [failure] = result.failures
    assert failure.unreachable and failure.host == "s1" and failure.task == "Write a file"  # debug runs locally
    assert "port 1" in failure.message or "Connection refused" in failure.message


def test_missing_playbook_is_a_user_error(setup: dict[str, Path]) -> None:
    with pytest.raises(prov.ProvisionError, match=r"upgrade\.yml not found"):
        prov.run_playbook("upgrade", setup["inv"])


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "pi-cluster"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, input=stdin, timeout=180,
                          env={**os.environ, "COLUMNS": "120"})


def test_cli_provision_failure_shows_host_task_message_and_exits_1(setup: dict[str, Path]) -> None:
    proc = _cli("provision", "-i", str(setup["inv"]))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "recap: site" in proc.stdout
    assert "a1 failed: Break on the agent" in proc.stderr
    assert "non-zero return code (rc 1)" in proc.stderr
    assert "site failed on 1 host(s)" in proc.stderr
    assert (setup["out"] / "s1.txt").read_text() == "made by s1\n"


def test_cli_provision_check_and_limit(setup: dict[str, Path]) -> None:
    proc = _cli("provision", "-i", str(setup["inv"]), "--limit", "s1", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+made by s1" in proc.stdout  # the diff of what would be written
    assert "site done: 1 change(s) would be made on 1 host(s)" in proc.stdout
    assert not (setup["out"] / "s1.txt").exists()
    assert "a1" not in proc.stdout.split("recap: site")[1]


def test_cli_bad_inventory_exits_2(setup: dict[str, Path]) -> None:
    bad = write_yaml(setup["tmp"] / "bad" / "hosts.yml", {"k3s_cluster": {"children": {"agent": {"hosts": {
        "a1": {"ansible_host": "192.0.2.21"}}}}}})
    proc = _cli("provision", "-i", str(bad))
    assert proc.returncode == 2
    assert "problem" in proc.stderr and "server" in proc.stderr
    assert list(setup["out"].iterdir()) == []


def test_cli_reset_asks_and_yes_skips_the_question(setup: dict[str, Path]) -> None:
    proc = _cli("reset", "-i", str(setup["inv"]), stdin="n\n")
    assert proc.returncode == 1
    assert "Remove k3s and all cluster data from s1, a1?" in proc.stdout
    assert "reset cancelled" in proc.stderr
    assert list(setup["out"].iterdir()) == []

    proc = _cli("reset", "-i", str(setup["inv"]), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in setup["out"].iterdir()) == ["reset-a1", "reset-s1"]
    assert "reset done: 2 change(s) were made on 2 host(s)" in proc.stdout


def test_playbook_error_before_any_task_is_reported(setup: dict[str, Path]) -> None:
    broken = "- name: Broken\n  hosts: k3s_cluster\n  tasks:\n    - nosuch.module: {}\n"
    (setup["books"] / "reboot.yml").write_text(broken)
    result = prov.run_playbook("reboot", setup["inv"])
    assert not result.ok and result.rc != 0
    [failure] = result.failures
    assert failure.host == "-" and failure.task == "ansible-playbook"
    assert "nosuch.module" in failure.message

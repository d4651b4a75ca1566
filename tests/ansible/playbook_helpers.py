"""Helpers for running the real ansible-playbook against localhost (ansible_connection=local) in temp dirs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ROLES = PLAYBOOKS / "roles"
BIN = Path(sys.executable).parent
RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.M,
)


@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


def run_playbook(playbook: Path, inventory: Path, *args: str, cwd: Path | None = None) -> PlaybookRun:
    """Run the real ansible-playbook; return its rc, output and the PLAY RECAP counts per host.
    Ansible's temporary files go to a temporary directory, never into the repository."""
    with tempfile.TemporaryDirectory(prefix="pi-cluster-ansible-") as tmp:
        return _run(playbook, inventory, args, cwd, Path(tmp))


def _run(playbook: Path, inventory: Path, args: tuple[str, ...], cwd: Path | None, tmp: Path) -> PlaybookRun:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROLES),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp / "local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "remote"),
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args],
        capture_output=True, text=True, env=env, cwd=str(cwd or playbook.parent), timeout=240,
    )
    out = proc.stdout + proc.stderr
    recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"} for m in RECAP_RE.finditer(out)}
    return PlaybookRun(proc.returncode, out, recap)


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def local_host(**hostvars: Any) -> dict[str, Any]:
    """Host vars for a host Ansible runs on this machine, with this interpreter."""
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **hostvars}

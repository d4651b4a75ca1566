"""Helpers for running the real ansible-playbook against localhost (ansible_connection=local) in temp dirs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
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


def run_playbook(playbook: Path, inventory: Path, *args: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> PlaybookRun:
    """Run the real ansible-playbook; return its rc, output and the PLAY RECAP counts per host.
    Ansible's temporary files go to a temporary directory, never into the repository."""
    with tempfile.TemporaryDirectory(prefix="pi-cluster-ansible-") as tmp:
        return _run(playbook, inventory, args, cwd, Path(tmp), env or {})


def _run(playbook: Path, inventory: Path, args: tuple[str, ...], cwd: Path | None, tmp: Path,
         extra_env: dict[str, str]) -> PlaybookRun:
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
    env.update(extra_env)
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


# --- a k3s release on loopback, laid out like github.com/k3s-io/k3s/releases/download/<version>/ ---------

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}[platform.machine()]
BINARY = {"amd64": "k3s", "arm64": "k3s-arm64", "arm": "k3s-armhf"}[ARCH]


def fake_k3s(version: str) -> bytes:
    """A TEST DOUBLE of the k3s binary: prints `k3s version <v> (...)` like the real one."""
    return f"#!/bin/sh\necho 'k3s version {version} (0123abcd)'\necho 'go version go1.22.9'\n".encode()


def publish(root: Path, version: str, *, corrupt: bool = False) -> None:
    """A release directory (binary double, sha256sum file) and an install script double under ``root``."""
    d = root / version
    d.mkdir(parents=True, exist_ok=True)
    data = fake_k3s(version)
    (d / BINARY).write_bytes(data)
    digest = hashlib.sha256(data + (b"tampered" if corrupt else b"")).hexdigest()
    (d / f"sha256sum-{ARCH}.txt").write_text(f"{'0' * 64}  k3s-airgap-images-{ARCH}.tar\n{digest}  {BINARY}\n")
    (root / "install.sh").write_text("#!/bin/sh\necho install script double\n")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

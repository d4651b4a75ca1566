"""The lab's kubectl controller daemon (TEST DOUBLE of a k3s server's API + controllers).

`start(lab) -> pid` is called by part 1's `Lab.up`: it writes the `k3s`/`kubectl` client executables into
`<lab.state_dir>/bin` and starts `python -m pi_cluster.lab.control serve <lab name>` detached in the root
namespaces. The daemon listens on `<lab.state_dir>/kube.sock` (visible inside the nodes' mount namespaces, where the
clients run), answers one request at a time under the object model's lock, and reconciles DaemonSets/Deployments
every couple of seconds (pods deleted behind its back are replaced, as a controller would). `Lab.down` kills it
by the PID recorded in the lab's state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from pi_cluster.lab.kubectl import SOCKET_NAME, run, write_clients

log = logging.getLogger("pi_cluster.lab.control")
RECONCILE_INTERVAL = 2.0
MAX_REQUEST = 16 * 1024 * 1024


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def _ping(path: Path, timeout: float = 1.0) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start(lab: Any, timeout: float = 15.0) -> int:
    """Write the client executables and start the controller daemon for `lab`; return its PID once it listens."""
    state_dir = Path(lab.state_dir)
    sock = socket_path(state_dir)
    write_clients(state_dir / "bin", sock)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    logf = open(state_dir / "kubectl-controller.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pi_cluster.lab.control", "serve", str(lab.name),
                                 str(state_dir)], stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, close_fds=True)
    finally:
        logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the lab kubectl controller exited with code {proc.returncode}; see "
                               f"{state_dir / 'kubectl-controller.log'}")
        if sock.exists() and _ping(sock):
            return proc.pid
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the lab kubectl controller did not listen on {sock} within {timeout:.0f} s")


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        data = self.rfile.read(MAX_REQUEST + 1)
        if not data.strip():  # a liveness probe (start() connects and closes)
            return
        try:
            if len(data) > MAX_REQUEST:
                raise ValueError("request too large")
            req = json.loads(data)
            argv = [str(a) for a in req["argv"]]
            reply = self.server.execute(argv, str(req.get("stdin", "")), dict(req.get("files") or {}))
        except Exception as e:
            log.error("request failed: %s", traceback.format_exc())
            reply = {"code": 1, "stdout": "", "stderr": f"error: internal error in the lab kubectl stand-in: {e}\n"}
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(reply).encode())


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, lab_name: str, state_dir: Path) -> None:
        super().__init__(path, _Handler)
        self.lab_name = lab_name
        self.state_dir = state_dir
        self._cluster: Any = None
        self._init_lock = threading.Lock()

    def cluster(self) -> Any:
        with self._init_lock:
            if self._cluster is None:
                import pi_cluster.lab as labmod
                from pi_cluster.lab.kube import KubeCluster

                lab = labmod.Lab.load(self.lab_name)  # type: ignore[attr-defined,unused-ignore]
                self._cluster = KubeCluster(lab, labmod, Path(self.state_dir) / "kube.json")  # type: ignore[arg-type,unused-ignore]
            return self._cluster

    def execute(self, argv: list[str], stdin: str, files: dict[str, str]) -> dict[str, Any]:
        t0 = time.monotonic()
        res = run(self.cluster(), argv, stdin, files, read_local=False)
        log.info("%s -> %d (%.2f s)", " ".join(argv), res.code, time.monotonic() - t0)
        return {"code": res.code, "stdout": res.stdout, "stderr": res.stderr}


def _reconcile_loop(server: _Server, stop: threading.Event) -> None:
    while not stop.wait(RECONCILE_INTERVAL):
        try:
            server.cluster().reconcile_all()
        except Exception:
            log.warning("reconcile failed: %s", traceback.format_exc())


def serve(lab_name: str, state_dir: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sock = socket_path(state_dir)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    old_umask = os.umask(0o077)
    try:
        server = _Server(str(sock), lab_name, state_dir)
    finally:
        os.umask(old_umask)
    stop = threading.Event()
    threading.Thread(target=_reconcile_loop, args=(server, stop), daemon=True).start()
    log.info("lab %s: kubectl controller (test double) listening on %s, pid %d", lab_name, sock, os.getpid())
    try:
        server.serve_forever()
    finally:
        stop.set()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "serve":
        serve(argv[1], Path(argv[2]))
        return 0
    sys.stderr.write("usage: python -m pi_cluster.lab.control serve LAB_NAME STATE_DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

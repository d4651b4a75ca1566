"""Small system helpers for the lab: running commands, and sockets inside a network namespace.

`in_netns` runs a function in a short-lived thread that has joined a named network namespace (setns(2) only
changes the calling thread), so the lab can probe pods and nodes without forking ``ip netns exec``. Sockets
keep the namespace they were created in, so they can be handed back to any thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from pi_cluster.lab.models import LabError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# executable -> Debian package, for "missing tool" errors
TOOLS = {
    "ip": "iproute2", "iptables-restore": "iptables", "iptables-legacy-restore": "iptables",
    "nft": "nftables", "dnsmasq": "dnsmasq-base", "sshd": "openssh-server", "ssh-keygen": "openssh-client",
    "unshare": "util-linux", "nsenter": "util-linux", "sysctl": "procps",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridges and kernel rules)",
                       "run it as root, e.g. `sudo pi-cluster lab up`")


def require_tools(names: Sequence[str]) -> None:
    missing = [n for n in names if not which(n)]
    if missing:
        pkgs = sorted({TOOLS.get(n, n) for n in missing})
        raise LabError(f"missing system tool(s): {', '.join(missing)}",
                       f"install them: apt-get install {' '.join(pkgs)}")


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def run(argv: Sequence[str], input: str | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError quoting its stderr."""
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise LabError(f"missing system tool: {argv[0]}", f"install {TOOLS.get(argv[0], argv[0])}") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{' '.join(argv[:6])}` timed out after {timeout:.0f} s") from e
    if check and proc.returncode:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv[:6])}` failed: {' / '.join(msg[-3:]) or f'exit {proc.returncode}'}")
    return proc


def ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    """Run iproute2 commands in one `ip -batch` (optionally inside a named namespace)."""
    if not commands:
        return
    argv = ["ip", "-n", netns, "-batch", "-"] if netns else ["ip", "-batch", "-"]
    run(argv, input="\n".join(commands) + "\n")


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_pids(name: str) -> list[int]:
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a thread that has joined network namespace `netns`; return its result or raise its error."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as e:  # handed to the caller
            error.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]

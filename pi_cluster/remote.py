"""Parallel SSH access to the inventory's nodes: the one place where pi-cluster talks SSH.

Hosts are testinfra hosts on the paramiko backend, built from the inventory's connection settings (the same
ones Ansible uses: ``ansible_host``, ``ansible_user``, ``ansible_port``, ``ansible_ssh_private_key_file`` and
``-o UserKnownHostsFile=...`` in ``ansible_ssh_common_args``). Host key checking is always on: an unknown or
changed host key is rejected (paramiko ``RejectPolicy``), never silently accepted.

>>> from pi_cluster import inventory
>>> cluster = inventory.load("inventory/example")             # doctest: +SKIP
>>> results = run_many(cluster.nodes, "uname -m", timeout=10)  # doctest: +SKIP
>>> {r.node: r.stdout.strip() for r in results.values()}      # doctest: +SKIP
{'node1': 'aarch64', ...}

A node that cannot be reached yields a :class:`RunResult` with ``error`` set, never an exception for the run.
Nothing here prints.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import paramiko
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from pi_cluster.inventory import Node

DEFAULT_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Target:
    """How to reach one node over SSH (resolved from the inventory, nothing else)."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    python: str = DEFAULT_PYTHON

    @classmethod
    def from_node(cls, node: Node) -> Target:
        known = _known_hosts_from_args(node.ssh_common_args)
        python = node.vars.get("ansible_python_interpreter") or DEFAULT_PYTHON
        if not isinstance(python, str) or python.startswith("auto"):
            python = DEFAULT_PYTHON
        key = node.ssh_private_key_file
        return cls(
            name=node.name,
            address=node.address,
            port=node.port,
            user=node.user,
            key_file=os.path.expanduser(key) if key else None,
            known_hosts=known,
            python=python,
        )

    @property
    def is_root(self) -> bool:
        return (self.user or os.environ.get("USER", "root")) == "root"

    def privileged(self, command: str) -> str:
        """``command`` prefixed with ``sudo -n`` unless we log in as root (never prompts for a password)."""
        return command if self.is_root else f"sudo -n {command}"


def _known_hosts_from_args(args: str | None) -> str | None:
    """The ``UserKnownHostsFile`` named in ``ansible_ssh_common_args`` (``-o UserKnownHostsFile=F`` or
    ``-oUserKnownHostsFile F``), if any."""
    if not args:
        return None
    try:
        words = shlex.split(args)
    except ValueError:
        return None
    options: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-o" and i + 1 < len(words):
            options.append(words[i + 1])
            i += 2
            continue
        if w.startswith("-o"):
            options.append(w[2:])
        i += 1
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep:
            key, _, value = opt.partition(" ")
        if key.strip().lower() == "userknownhostsfile" and value.strip():
            return os.path.expanduser(value.strip().split()[0])
    return None


class StrictParamikoBackend(ParamikoBackend):
    """testinfra's paramiko backend with host key checking ON (known_hosts from the inventory's
    ``UserKnownHostsFile`` or ``~/.ssh/known_hosts``; unknown keys are rejected) and no ~/.ssh/config
    surprises: the inventory alone says how to connect."""

    NAME = "paramiko"

    def __init__(self, target: Target, timeout: float = 10) -> None:
        self.target = target
        user = f"{target.user}@" if target.user else ""
        address = f"[{target.address}]" if ":" in target.address else target.address
        super().__init__(
            f"paramiko://{user}{address}:{target.port}", ssh_identity_file=target.key_file, timeout=int(timeout)
        )
        self.connect_timeout = timeout

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known = self.target.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        if os.path.exists(known):
            client.load_host_keys(known)
        cfg: dict[str, Any] = {
            "hostname": self.target.address,
            "port": self.target.port,
            "username": self.target.user or os.environ.get("USER", "root"),
            "timeout": self.connect_timeout,
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
            "allow_agent": self.target.key_file is None,
            "look_for_keys": self.target.key_file is None,
        }
        if self.target.key_file:
            cfg["key_filename"] = self.target.key_file
        client.connect(**cfg)
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return client


def host(target: Target | Node, timeout: float = 10) -> testinfra.host.Host:
    """A testinfra host for one node (connects lazily, on first use)."""
    t = target if isinstance(target, Target) else Target.from_node(target)
    return testinfra.host.Host(StrictParamikoBackend(t, timeout=timeout))


@dataclass
class RunResult:
    """The outcome of one command on one node. ``error`` is set when the command could not be run at all
    (unreachable, host key rejected, timed out): then ``rc`` is None."""

    node: str
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    elapsed: float = 0.0
    first_line_at: float | None = None  # local time.time() when the first stdout line arrived
    sent_at: float | None = None  # local time.time() when stdin was completely sent

    @property
    def ok(self) -> bool:
        return self.error is None and self.rc == 0


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of why SSH failed."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return f"host key mismatch for {exc.hostname} (the known_hosts entry differs: refusing to connect)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"unknown host key ({exc}); host key checking is on"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"SSH authentication failed ({exc})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "SSH connection timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return f"SSH connection refused or unreachable ({exc.strerror})"
    if isinstance(exc, OSError):
        return f"SSH connection failed: {exc.strerror or exc}"
    return f"SSH failed: {type(exc).__name__}: {exc}"


def run_on(
    h: testinfra.host.Host,
    name: str,
    command: str,
    stdin: bytes | str | None = None,
    timeout: float = 30,
) -> RunResult:
    """Run ``command`` on host ``h`` feeding it ``stdin``; read stdout and stderr concurrently; give up after
    ``timeout`` seconds (connect time included). Never raises for SSH or remote problems."""
    start = time.monotonic()
    res = RunResult(node=name)
    backend = h.backend
    try:
        if not isinstance(backend, ParamikoBackend):
            out = h.run(command)
            res.rc, res.stdout, res.stderr = out.rc, out.stdout, out.stderr
            return res
        transport = backend.client.get_transport()
        if transport is None or not transport.is_active():
            del backend.client
            transport = backend.client.get_transport()
        assert transport is not None
        chan = transport.open_session(timeout=max(1.0, timeout - (time.monotonic() - start)))
        chan.settimeout(0.2)
        chan.exec_command(command)
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        if data:
            chan.sendall(data)
        chan.shutdown_write()
        res.sent_at = time.time()
        out, err = bytearray(), bytearray()
        deadline = start + timeout
        while True:
            got = False
            if chan.recv_ready():
                chunk = chan.recv(65536)
                if chunk:
                    if res.first_line_at is None and b"\n" in chunk:
                        res.first_line_at = time.time()
                    out += chunk
                    got = True
            if chan.recv_stderr_ready():
                chunk = chan.recv_stderr(65536)
                if chunk:
                    err += chunk
                    got = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                res.stdout, res.stderr = out.decode(errors="replace"), err.decode(errors="replace")
                res.error = f"command timed out after {timeout:.0f} s"
                return res
            if not got:
                time.sleep(0.01)
        res.rc = chan.recv_exit_status()
        res.stdout, res.stderr = out.decode(errors="replace"), err.decode(errors="replace")
        chan.close()
    except Exception as e:  # every SSH failure is a per-node result, never an exception for the run
        res.error = describe_error(e)
    finally:
        res.elapsed = time.monotonic() - start
    return res


class Pool:
    """Connections to a set of nodes, kept open for several rounds of commands.

    >>> with Pool(cluster.nodes) as pool:                       # doctest: +SKIP
    ...     pool.run_all({"node1": "hostname"}, timeout=10)
    """

    def __init__(self, nodes: Iterable[Node | Target], connect_timeout: float = 10) -> None:
        self.targets = {t.name: t for t in (n if isinstance(n, Target) else Target.from_node(n) for n in nodes)}
        self.hosts = {name: host(t, timeout=connect_timeout) for name, t in self.targets.items()}
        self._lock = threading.Lock()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for h in self.hosts.values():
            backend = h.backend
            if isinstance(backend, ParamikoBackend) and "client" in backend.__dict__:
                with contextlib.suppress(Exception):
                    backend.client.close()

    def warm_up(self) -> threading.Thread:
        """Open every node's SSH connection in the background (errors are left for the first command)."""

        def connect(name: str) -> None:
            backend = self.hosts[name].backend
            if isinstance(backend, ParamikoBackend):
                with contextlib.suppress(Exception):
                    backend.client  # noqa: B018 - opens the connection

        def all_nodes() -> None:
            with ThreadPoolExecutor(max_workers=min(32, max(1, len(self.hosts)))) as ex:
                list(ex.map(connect, list(self.hosts)))

        t = threading.Thread(target=all_nodes, daemon=True)
        t.start()
        return t

    def run(self, name: str, command: str, stdin: bytes | str | None = None, timeout: float = 30) -> RunResult:
        return run_on(self.hosts[name], name, command, stdin=stdin, timeout=timeout)

    def run_all(
        self,
        commands: dict[str, str | tuple[str, bytes | str | None]],
        timeout: float = 30,
        on_done: Callable[[RunResult], None] | None = None,
    ) -> dict[str, RunResult]:
        """Run one command per node (``{node: command}`` or ``{node: (command, stdin)}``) on all nodes in
        parallel; each gets ``timeout`` seconds. ``on_done`` is called as each node finishes."""
        results: dict[str, RunResult] = {}
        if not commands:
            return results

        def one(name: str) -> RunResult:
            spec = commands[name]
            cmd, data = (spec, None) if isinstance(spec, str) else spec
            r = self.run(name, cmd, stdin=data, timeout=timeout)
            if on_done:
                on_done(r)
            return r

        with ThreadPoolExecutor(max_workers=min(32, len(commands))) as ex:
            for r in ex.map(one, list(commands)):
                results[r.node] = r
        return results


def run_many(
    nodes: Iterable[Node | Target], command: str, stdin: bytes | str | None = None, timeout: float = 30
) -> dict[str, RunResult]:
    """Run the same command on every node in parallel (a fresh :class:`Pool` per call)."""
    with Pool(nodes, connect_timeout=min(timeout, 10)) as pool:
        return pool.run_all({n: (command, stdin) for n in pool.targets}, timeout=timeout)


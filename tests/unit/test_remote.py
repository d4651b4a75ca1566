"""pi_cluster.remote against a real sshd on 127.0.0.1 (temp host key, temp user key, known_hosts written
here), plus the probe batch travelling over it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_cluster.conformance.batch import WORKSTATION, run_batches
from pi_cluster.inventory import Node, NodeNetwork
from pi_cluster.remote import Pool, Target, _known_hosts_from_args, run_many

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not (os.path.exists(SSHD) and os.geteuid() == 0), reason="needs root and sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.port = free_port()
        self.host_pub = keygen(tmp / "host_key")
        self.user_pub = keygen(tmp / "user_key")
        (tmp / "authorized_keys").write_text(self.user_pub + "\n")
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            f"PasswordAuthentication no\nPermitRootLogin prohibit-password\nPidFile {tmp / 'sshd.pid'}\n"
            "MaxSessions 50\nMaxStartups 50\n")
        self.known_hosts = tmp / "known_hosts"
        kt, key = self.host_pub.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kt} {key}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def node(self, name: str = "node1", known_hosts: Path | None = None, port: int | None = None) -> Node:
        return Node(name=name, role="server", address="127.0.0.1", user="root", port=port or self.port,
                    ssh_private_key_file=str(self.dir / "user_key"),
                    ssh_common_args=f"-o UserKnownHostsFile={known_hosts or self.known_hosts} -o ServerAliveInterval=5",
                    network=NodeNetwork(address="127.0.0.1"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    s = Sshd(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


def test_known_hosts_parsed_from_ssh_common_args() -> None:
    assert _known_hosts_from_args("-o UserKnownHostsFile=/a/kh -o StrictHostKeyChecking=yes") == "/a/kh"
    assert _known_hosts_from_args("-oUserKnownHostsFile=/b/kh") == "/b/kh"
    assert _known_hosts_from_args("-o 'UserKnownHostsFile /c/kh'") == "/c/kh"
    assert _known_hosts_from_args("-o ProxyJump=x") is None
    assert _known_hosts_from_args(None) is None


def test_privileged_commands_use_sudo_for_non_root() -> None:
    assert Target("n", "192.0.2.1", user="pi").privileged("nft list ruleset") == "sudo -n nft list ruleset"
    assert Target("n", "192.0.2.1", user="root").privileged("nft list ruleset") == "nft list ruleset"


def test_runs_commands_with_stdin_in_parallel(sshd: Sshd) -> None:
    nodes = [sshd.node("a"), sshd.node("b"), sshd.node("c")]
    t0 = time.monotonic()
    res = run_many(nodes, "sleep 1; cat; echo done >&2", stdin="hello\n", timeout=20)
    elapsed = time.monotonic() - t0
    assert set(res) == {"a", "b", "c"}
    for r in res.values():
        assert r.ok, r.error
        assert r.stdout == "hello\n"
        assert r.stderr.strip() == "done"
    assert elapsed < 2.9, f"three 1 s commands took {elapsed:.1f} s: not parallel"


def test_unknown_host_key_is_rejected(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = run_many([sshd.node("x", known_hosts=empty)], "echo should-not-run", timeout=10)["x"]
    assert r.rc is None and not r.stdout
    assert r.error and "unknown host key" in r.error


def test_changed_host_key_is_rejected(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other").split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    r = run_many([sshd.node("x", known_hosts=kh)], "echo should-not-run", timeout=10)["x"]
    assert r.rc is None and r.error and "mismatch" in r.error


def test_unreachable_node_is_a_result_not_an_exception(sshd: Sshd) -> None:
    dead = sshd.node("dead", port=free_port())
    res = run_many([sshd.node("ok"), dead], "echo hi", timeout=10)
    assert res["ok"].ok and res["ok"].stdout.strip() == "hi"
    assert res["dead"].error and "refused" in res["dead"].error


def test_command_timeout_is_reported(sshd: Sshd) -> None:
    t0 = time.monotonic()
    r = run_many([sshd.node()], "sleep 10", timeout=1.5)["node1"]
    assert time.monotonic() - t0 < 5
    assert r.error and "timed out" in r.error


def test_exit_status_and_testinfra_host(sshd: Sshd) -> None:
    with Pool([sshd.node()]) as pool:
        r = pool.run("node1", "exit 3")
        assert r.rc == 3 and r.error is None
        h = pool.hosts["node1"]
        assert h.file("/etc/hostname").exists  # the testinfra API works on the same host
        assert h.run("echo $((6*7))").stdout.strip() == "42"


def test_probe_batch_runs_over_ssh_and_locally(sshd: Sshd) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        probes = [{"id": f"t{i}", "kind": "tcp", "host": "127.0.0.1", "port": port, "timeout": 2} for i in range(20)]
        probes.append({"id": "closed", "kind": "tcp", "host": "127.0.0.1", "port": free_port(), "timeout": 2})
        with Pool([sshd.node()]) as pool:
            out = run_batches(pool, {"node1": probes, WORKSTATION: probes[:1]}, timeout=20)
    b = out["node1"]
    assert b.error is None, b.error
    assert all(b.results[f"t{i}"]["ok"] for i in range(20))
    assert b.results["closed"] == {"ok": False, "error": "connection refused", "ms": b.results["closed"]["ms"]}
    assert b.skew is not None and abs(b.skew) < 1.0  # same machine, same clock
    assert out[WORKSTATION].results["t0"]["ok"]

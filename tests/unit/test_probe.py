"""probe.py against real servers on loopback: an HTTP server, the lab's netexec-compatible server (a test
double of agnhost netexec, run as a real process), and a small DNS server answering over UDP and TCP."""

from __future__ import annotations

import http.server
import io
import json
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_cluster.conformance import probe
from pi_cluster.conformance.test_dns import nslookup_addresses

LOOP = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOP, 0))
        return int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)
        body = ("x" * 5000 if self.path == "/big" else f"pod-a {self.path}").encode()
        try:
            self.send_response(403 if self.path == "/forbidden" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the probe gave up first (the timeout tests)
            pass


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer((LOOP, 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


RECORDS = {"web.ns.svc.cluster.local": ["10.43.0.20"], "hl.ns.svc.cluster.local": ["10.42.1.5", "10.42.2.5"]}


def dns_answer(query: bytes) -> bytes:
    qid, _flags, _qd = struct.unpack("!HHH", query[:6])
    off, labels = 12, []
    while query[off]:
        labels.append(query[off + 1:off + 1 + query[off]].decode())
        off += 1 + query[off]
    question = query[12:off + 5]
    ips = RECORDS.get(".".join(labels), [])
    rcode = 0 if ips else 3
    out = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(ips), 0, 0) + question
    for ip in ips:  # name as a compression pointer to the question
        out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
    return out


@pytest.fixture(scope="module")
def dns() -> Iterator[int]:
    class U(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(dns_answer(data), self.client_address)

    class T(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            n = struct.unpack("!H", self.request.recv(2))[0]
            ans = dns_answer(self.request.recv(n))
            self.request.sendall(struct.pack("!H", len(ans)) + ans)

    port = free_port()
    u = socketserver.ThreadingUDPServer((LOOP, port), U)
    t = socketserver.ThreadingTCPServer((LOOP, port), T)
    for s in (u, t):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield port
    u.shutdown()
    t.shutdown()


@pytest.fixture(scope="module")
def netexec() -> Iterator[int]:
    """The lab's agnhost-netexec stand-in (a test double of agnhost), as a real process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pi_cluster.lab.netexec", f"--http-port={port}",
                             "--udp-port=-1", "--name=client-x"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOP, port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


def run(*probes: dict) -> dict:
    return probe.run({"probes": [{"id": str(i), **p} for i, p in enumerate(probes)]})


def test_http_tries_bodies_and_status(web: int) -> None:
    r = run({"kind": "http", "host": LOOP, "port": web, "path": "/hostname", "tries": 3},
            {"kind": "http", "host": LOOP, "port": web, "path": "/forbidden"},
            {"kind": "http", "host": LOOP, "port": web, "path": "/big", "body_limit": 10})
    assert [t["body"] for t in r["0"]["tries"]] == ["pod-a /hostname"] * 3
    assert r["1"]["tries"][0]["status"] == 403 and r["1"]["tries"][0]["ok"]
    assert r["2"]["tries"][0]["len"] == 5000 and len(r["2"]["tries"][0]["body"]) == 10


def test_probes_run_concurrently_and_time_out(web: int) -> None:
    t0 = time.monotonic()
    r = run(*[{"kind": "http", "host": LOOP, "port": web, "path": "/slow", "timeout": 1} for _ in range(8)],
            {"kind": "http", "host": LOOP, "port": web, "path": "/slow", "timeout": 1, "tries": 4, "parallel": True})
    elapsed = time.monotonic() - t0
    assert all(r[str(i)]["tries"][0]["error"] == "timed out after 1 s" for i in range(8))
    assert len(r["8"]["tries"]) == 4
    assert elapsed < 2.5, f"12 one-second timeouts took {elapsed:.1f} s: probes are not concurrent"


def test_stop_on_error_bounds_sequential_tries() -> None:
    closed = free_port()
    r = run({"kind": "http", "host": LOOP, "port": closed, "tries": 5, "stop_on_error": True})
    assert len(r["0"]["tries"]) == 1 and r["0"]["tries"][0]["error"] == "connection refused"


def test_tcp(web: int) -> None:
    r = run({"kind": "tcp", "host": LOOP, "port": web}, {"kind": "tcp", "host": LOOP, "port": free_port()})
    assert r["0"]["ok"] and not r["1"]["ok"] and r["1"]["error"] == "connection refused"


def test_dns_udp_tcp_and_nxdomain(dns: int) -> None:
    r = run({"kind": "dns", "server": LOOP, "port": dns, "name": "web.ns.svc.cluster.local"},
            {"kind": "dns", "server": LOOP, "port": dns, "name": "hl.ns.svc.cluster.local", "proto": "tcp"},
            {"kind": "dns", "server": LOOP, "port": dns, "name": "nope.ns.svc.cluster.local"},
            {"kind": "dns", "server": LOOP, "port": free_port(), "name": "web", "timeout": 0.5})
    assert r["0"] == {"rcode": "NOERROR", "answers": ["10.43.0.20"], "error": None}
    assert r["1"]["answers"] == ["10.42.1.5", "10.42.2.5"]
    assert r["2"]["rcode"] == "NXDOMAIN" and r["2"]["answers"] == []
    assert r["3"]["error"] and r["3"]["answers"] == []


def test_dial_shell_and_echo_through_netexec(netexec: int, web: int) -> None:
    r = run({"kind": "dial", "pod": LOOP, "pod_port": netexec, "host": LOOP, "port": web, "tries": 3},
            {"kind": "dial", "pod": LOOP, "pod_port": netexec, "host": LOOP, "port": web, "tries": 4,
             "mode": "parallel"},
            {"kind": "dial", "pod": LOOP, "pod_port": netexec, "host": LOOP, "port": free_port(), "tries": 3,
             "mode": "sequential"},
            {"kind": "shell", "pod": LOOP, "pod_port": netexec, "cmd": "echo hi; exit 3"},
            {"kind": "http", "host": LOOP, "port": netexec, "path": "/echo?msg=" + "y" * 4000},
            {"kind": "dial", "pod": LOOP, "pod_port": free_port(), "host": LOOP, "port": web})
    assert r["0"]["responses"] == ["pod-a /hostname"] * 3 and r["0"]["error"] is None
    assert r["1"]["responses"] == ["pod-a /hostname"] * 4
    assert r["2"]["responses"] == [] and len(r["2"]["errors"]) == 1  # stopped at the first failure
    assert r["3"]["output"].strip() == "hi" and r["3"]["error"] == "exit status 3"
    assert r["4"]["tries"][0]["len"] == 4000
    assert r["5"]["error"].startswith("client pod: connection refused")


def test_cmd_read_mount_and_unknown() -> None:
    r = run({"kind": "cmd", "argv": ["sh", "-c", "echo out; echo err >&2; exit 2"]},
            {"kind": "cmd", "argv": ["no-such-command-xyz"]},
            {"kind": "read", "path": "/proc/self/status"},
            {"kind": "read", "path": "/nonexistent/file"},
            {"kind": "mount", "path": "/proc/self"},
            {"kind": "bogus"})
    assert (r["0"]["rc"], r["0"]["stdout"], r["0"]["stderr"]) == (2, "out\n", "err\n")
    assert "command not found" in r["1"]["error"]
    assert "Name:" in r["2"]["content"]
    assert r["3"]["content"] is None and r["3"]["error"]
    assert r["4"]["fstype"] == "proc"
    assert "unknown probe kind" in r["5"]["error"]


def test_main_prints_clock_first_then_results(web: int) -> None:
    buf = io.StringIO()
    probe.main_spec({"probes": [{"id": "a", "kind": "tcp", "host": LOOP, "port": web}]}, out=buf)
    first, second = buf.getvalue().splitlines()
    assert abs(json.loads(first)["clock"] - time.time()) < 5
    assert json.loads(second)["results"]["a"]["ok"]


def test_probe_is_stdlib_only() -> None:
    src = Path(probe.__file__).read_text()
    imports = {ln.split()[1].split(".")[0] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}, imports


def test_nslookup_output_parsing() -> None:
    bind = "Server:\t\t10.43.0.10\nAddress:\t10.43.0.10#53\n\nName:\tweb.ns.svc.cluster.local\nAddress: 10.43.0.20\n"
    busybox = "Server:    10.43.0.10\nAddress 1: 10.43.0.10 kube-dns\n\nName:      hl\nAddress 1: 10.42.1.5\n" \
              "Address 2: 10.42.2.5 10-42-2-5.hl\n"
    assert nslookup_addresses(bind) == ["10.43.0.20"]
    assert nslookup_addresses(busybox) == ["10.42.1.5", "10.42.2.5"]
    assert nslookup_addresses("** server can't find nope: NXDOMAIN\n") == []


def test_batch_output_parsing() -> None:
    from pi_cluster.conformance.batch import _parse

    ok = _parse("n", '{"clock": 1.5, "hostname": "n"}\n{"results": {}}\n', "", 0)
    assert ok.error is None and ok.results == {} and ok.clock == 1.5  # an empty batch is not a failure
    cut = _parse("n", '{"clock": 1.5, "hostname": "n"}\n', "", None)
    assert cut.error == "probe runner stopped before printing results"
    sudo = _parse("n", "", "sudo: a password is required\n", 1)
    assert sudo.error and "passwordless sudo" in sudo.error

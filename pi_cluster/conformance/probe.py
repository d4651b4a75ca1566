"""The probe runner shipped to every node: runs a JSON list of probes concurrently, prints JSON results.

Standard library only: it is sent as stdin to the node's own ``python3`` (nothing of pi-cluster is installed
on the nodes). One SSH round trip per node carries every probe of a run, so a run costs O(1) round trips
per node however many probes it has.

Run locally (the workstation's probes use the same file)::

    echo '{"probes": [{"id": "a", "kind": "tcp", "host": "127.0.0.1", "port": 22}]}' | python3 probe.py

Output: a first line ``{"clock": <time.time()>, ...}`` printed before any probe runs (the caller times its
arrival to measure clock skew), then one line ``{"results": {id: result}}``.

Probe kinds (each a dict with ``id`` and ``kind``):
  http    host, port, path="/", tries=1, timeout=2, https=False, parallel=False, stop_on_error=False ->
          {"tries": [...]} each {"ok", "status", "body", "len", "error", "ms"}; ``ok``: an HTTP answer came.
  dial    pod (client pod IP), pod_port=8080, host, port, tries=1, mode=batch|parallel|sequential,
          request="hostname" -> netexec ``/dial`` JSON {"responses", "errors"} (judged by its JSON, not
          its status) plus "error" (the client pod itself did not answer).
  shell   pod, pod_port=8080, cmd, timeout -> netexec ``/shell`` {"output", "error"}.
  tcp     host, port, timeout -> {"ok", "error", "ms"}.
  dns     server, name, proto="udp"|"tcp", timeout -> {"rcode", "answers": [IPv4...], "error"}.
  ping    host, timeout -> {"ok", "output"} (informational: VIPs are not expected to answer).
  cmd     argv, timeout -> {"rc", "stdout", "stderr", "error"}.
  read    path -> {"content", "error"}.
  mount   path -> {"device", "mountpoint", "fstype"} of the filesystem holding path.
  loop    host, port, path, duration, interval, timeout -> {"samples": [[t, ok, body_or_error], ...]}.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BODY_LIMIT = 4096
MAX_WORKERS = 64


def _err(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    return f"{type(exc).__name__}: {exc}"


def _get(host: str, port: int, path: str, timeout: float, https: bool = False) -> tuple[int, str]:
    conn: http.client.HTTPConnection
    if https:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # we probe for anonymous refusal, not for the server's identity
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "pi-cluster-check"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body.decode(errors="replace")
    finally:
        conn.close()


def _http_try(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 2))
    limit = int(p.get("body_limit", BODY_LIMIT))
    t0 = time.monotonic()
    try:
        status, body = _get(p["host"], int(p["port"]), p.get("path", "/"), timeout, bool(p.get("https")))
        return {"ok": True, "status": status, "body": body[:limit], "len": len(body), "error": None,
                "ms": round((time.monotonic() - t0) * 1000, 1)}
    except Exception as e:
        return {"ok": False, "status": None, "body": None, "len": 0, "error": _err(e, timeout),
                "ms": round((time.monotonic() - t0) * 1000, 1)}


def probe_http(p: dict[str, Any]) -> dict[str, Any]:
    """``tries`` GETs: concurrently with ``parallel``, else one after another (stopping at the first
    failure with ``stop_on_error``: enough to conclude, and bounded in time when a path is a black hole)."""
    n = int(p.get("tries", 1))
    if p.get("parallel") and n > 1:
        with ThreadPoolExecutor(max_workers=n) as ex:
            return {"tries": list(ex.map(lambda _i: _http_try(p), range(n)))}
    tries = []
    for i in range(n):
        if i and p.get("interval"):
            time.sleep(float(p["interval"]))
        t = _http_try(p)
        tries.append(t)
        if p.get("stop_on_error") and not t["ok"]:
            break
    return {"tries": tries}


DIAL_TRY = 5.0  # netexec's own per-try dial timeout


def _dial_once(p: dict[str, Any], tries: int) -> dict[str, Any]:
    query = urllib.parse.urlencode({
        "request": p.get("request", "hostname"), "protocol": p.get("protocol", "http"),
        "host": p["host"], "port": int(p["port"]), "tries": tries,
    })
    timeout = DIAL_TRY * tries + 3  # netexec dials sequentially, each try up to its own timeout
    try:
        status, body = _get(p["pod"], int(p.get("pod_port", 8080)), "/dial?" + query, timeout)
    except Exception as e:
        return {"responses": [], "errors": [], "status": None, "error": "client pod: " + _err(e, timeout)}
    try:
        data = json.loads(body)
    except ValueError:
        return {"responses": [], "errors": [], "status": status, "error": f"client pod answered {status}: "
                f"{body[:200]!r} (not netexec /dial JSON)"}
    return {"responses": list(data.get("responses") or []), "errors": list(data.get("errors") or []),
            "status": status, "error": None}


def probe_dial(p: dict[str, Any]) -> dict[str, Any]:
    """netexec ``/dial`` through a client pod. ``mode``: "batch" (one request, netexec does the tries),
    "parallel" (one single-try request per try, concurrently), "sequential" (one after another, stopping
    at the first failure)."""
    n = int(p.get("tries", 1))
    mode = p.get("mode", "batch")
    if mode == "batch" or n == 1:
        return _dial_once(p, n)
    if mode == "parallel":
        with ThreadPoolExecutor(max_workers=n) as ex:
            parts = list(ex.map(lambda _i: _dial_once(p, 1), range(n)))
    else:
        parts = []
        for _ in range(n):
            parts.append(_dial_once(p, 1))
            if parts[-1]["error"] or parts[-1]["errors"]:
                break
    transport = [x["error"] for x in parts if x["error"]]
    return {"responses": [r for x in parts for r in x["responses"]],
            "errors": [e for x in parts for e in x["errors"]] + transport, "status": parts[-1]["status"],
            "error": transport[0] if len(transport) == len(parts) else None}


def probe_shell(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 5))
    path = "/shell?" + urllib.parse.urlencode({"cmd": p["cmd"]})
    try:
        status, body = _get(p["pod"], int(p.get("pod_port", 8080)), path, timeout)
    except Exception as e:
        return {"output": None, "error": "client pod: " + _err(e, timeout)}
    try:
        data = json.loads(body)
    except ValueError:
        return {"output": None, "error": f"client pod answered {status}: {body[:200]!r}"}
    return {"output": data.get("output"), "error": data.get("error") or None}


def probe_tcp(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 2))
    t0 = time.monotonic()
    try:
        with socket.create_connection((p["host"], int(p["port"])), timeout=timeout):
            pass
        return {"ok": True, "error": None, "ms": round((time.monotonic() - t0) * 1000, 1)}
    except Exception as e:
        return {"ok": False, "error": _err(e, timeout), "ms": round((time.monotonic() - t0) * 1000, 1)}


def dns_query(name: str, qid: int, qtype: int = 1) -> bytes:
    """A DNS query packet (RFC 1035): header with RD set, one question, class IN."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode("idna") for label in name.rstrip(".").split(".") if label)
    return header + qname + b"\x00" + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, off: int) -> int:
    while True:
        length = data[off]
        if length == 0:
            return off + 1
        if length & 0xC0 == 0xC0:
            return off + 2
        off += 1 + length


def dns_parse(data: bytes, qid: int) -> dict[str, Any]:
    """rcode and the A records of a DNS answer."""
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid:
        raise ValueError("answer id does not match the query")
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    answers = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            answers.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdlen
    rcodes = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
    return {"rcode": rcodes.get(flags & 0xF, str(flags & 0xF)), "answers": answers}


def probe_dns(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 2))
    qid = random.randint(1, 0xFFFF)
    packet = dns_query(p["name"], qid)
    server = (p["server"], int(p.get("port", 53)))
    try:
        if p.get("proto", "udp") == "tcp":
            with socket.create_connection(server, timeout=timeout) as s:
                s.sendall(struct.pack("!H", len(packet)) + packet)
                buf = b""
                while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionResetError("closed")
                    buf += chunk
                data = buf[2:]
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(packet, server)
                data, _ = s.recvfrom(4096)
        out = dns_parse(data, qid)
        out["error"] = None
        return out
    except Exception as e:
        return {"rcode": None, "answers": [], "error": _err(e, timeout)}


def probe_ping(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 1))
    try:
        out = subprocess.run(["ping", "-c", "1", "-W", str(max(1, int(timeout))), p["host"]],
                             capture_output=True, text=True, timeout=timeout + 2)
        return {"ok": out.returncode == 0, "output": (out.stdout + out.stderr)[-300:]}
    except Exception as e:
        return {"ok": False, "output": _err(e, timeout)}


def probe_cmd(p: dict[str, Any]) -> dict[str, Any]:
    timeout = float(p.get("timeout", 10))
    try:
        out = subprocess.run(list(p["argv"]), capture_output=True, text=True, timeout=timeout)
        return {"rc": out.returncode, "stdout": out.stdout, "stderr": out.stderr[-2000:], "error": None}
    except FileNotFoundError:
        return {"rc": None, "stdout": "", "stderr": "", "error": f"{p['argv'][0]}: command not found"}
    except Exception as e:
        return {"rc": None, "stdout": "", "stderr": "", "error": _err(e, timeout)}


def probe_read(p: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(p["path"], encoding="utf-8", errors="replace") as f:
            return {"content": f.read(int(p.get("limit", 65536))), "error": None}
    except OSError as e:
        return {"content": None, "error": f"{p['path']}: {e.strerror or e}"}


def probe_mount(p: dict[str, Any]) -> dict[str, Any]:
    path = os.path.realpath(p["path"])
    best: dict[str, Any] = {"device": None, "mountpoint": None, "fstype": None}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best["mountpoint"] or ""):
                    best = {"device": dev, "mountpoint": mnt, "fstype": fstype}
    except OSError:
        pass
    best["exists"] = os.path.exists(path)
    return best


def probe_loop(p: dict[str, Any]) -> dict[str, Any]:
    end = time.monotonic() + float(p["duration"])
    timeout = float(p.get("timeout", 1))
    samples = []
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            _status, body = _get(p["host"], int(p["port"]), p.get("path", "/hostname"), timeout)
            samples.append([round(time.time(), 3), True, body[:200]])
        except Exception as e:
            samples.append([round(time.time(), 3), False, _err(e, timeout)])
        time.sleep(max(0.0, float(p.get("interval", 0.1)) - (time.monotonic() - t0)))
    return {"samples": samples}


KINDS = {
    "http": probe_http, "dial": probe_dial, "shell": probe_shell, "tcp": probe_tcp, "dns": probe_dns,
    "ping": probe_ping, "cmd": probe_cmd, "read": probe_read, "mount": probe_mount, "loop": probe_loop,
}


def run_one(p: dict[str, Any]) -> dict[str, Any]:
    fn = KINDS.get(p.get("kind", ""))
    if fn is None:
        return {"error": f"unknown probe kind {p.get('kind')!r}"}
    try:
        return fn(p)
    except Exception as e:  # a broken probe must not take the batch down
        return {"error": f"probe crashed: {type(e).__name__}: {e}"}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every probe of ``spec["probes"]`` concurrently; ``{id: result}``."""
    probes = list(spec.get("probes", []))
    results: dict[str, Any] = {}
    lock = threading.Lock()

    def one(p: dict[str, Any]) -> None:
        r = run_one(p)
        with lock:
            results[str(p["id"])] = r

    if probes:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(probes))) as ex:
            list(ex.map(one, probes))
    return results


def main_spec(spec: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps({"clock": time.time(), "hostname": socket.gethostname(), "uid": os.getuid()}) + "\n")
    out.flush()
    results = run(spec)
    out.write(json.dumps({"results": results}) + "\n")
    out.flush()


def main() -> None:
    main_spec(json.load(sys.stdin))


if __name__ == "__main__":
    main()

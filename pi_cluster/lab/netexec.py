"""An agnhost-netexec-compatible HTTP/UDP server for the lab's pods (stdlib only).

Runs as ``python -m pi_cluster.lab.netexec`` or as a file. Endpoints as agnhost netexec: ``/`` (``NOW: ...``),
``/hostname``, ``/clientip`` (``IP:port``), ``/echo?msg=``, ``/dial?request=&protocol=http|udp&host=&port=&tries=``
(JSON ``{"responses": [...], "errors": [...]}``, each key only when non-empty, status 200 even when every try
fails), ``/shell?cmd=`` (JSON ``{"output": ...}``), ``/healthz``. Flags: ``--http-port``, ``--http-override``,
``--udp-port`` (-1 disables), ``--name`` (pod name, else the hostname). ``--ready-file`` (lab only) is touched
once every socket is bound.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import http.server
import json
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

DIAL_TIMEOUT = 5.0
UDP_TIMEOUT = 3.0


class Config:
    name = ""
    override = ""


def pod_name() -> str:
    return Config.name or socket.gethostname()


def dial_http(request: str, host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=DIAL_TIMEOUT)
    try:
        conn.request("GET", "/" + request)
        return conn.getresponse().read().decode(errors="replace")
    finally:
        conn.close()


def dial_udp(request: str, host: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(UDP_TIMEOUT)
        s.sendto(request.encode(), (host, port))
        data, _ = s.recvfrom(65535)
        return data.decode(errors="replace").strip()


def udp_answer(msg: str, client: tuple[str, int]) -> str:
    msg = msg.strip()
    if msg == "hostname":
        return pod_name()
    if msg == "clientip":
        return f"{client[0]}:{client[1]}"
    if msg.startswith("echo "):
        return msg[5:]
    return ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "netexec"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: str | bytes, status: int = 200, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(json.dumps(obj), status, "application/json")

    def do_GET(self) -> None:
        self._route(b"")

    def do_HEAD(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._route(self.rfile.read(length) if length else b"")

    do_PUT = do_POST

    def _route(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(Config.override or self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type", "")
        if body and ctype.startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
            q.update({k: v[-1] for k, v in form.items()})
            body = b""
        path = url.path.rstrip("/") or "/"
        if path == "/":
            self._send(f"NOW: {datetime.datetime.now(datetime.UTC).isoformat()}")
        elif path == "/hostname":
            self._send(pod_name())
        elif path == "/clientip":
            self._send(f"{self.client_address[0]}:{self.client_address[1]}")
        elif path == "/echo":
            self._send(body if body and "msg" not in q else q.get("msg", ""))
        elif path == "/healthz":
            self._send("ok")
        elif path == "/dial":
            self._dial(q)
        elif path == "/shell":
            self._shell(q.get("cmd", ""))
        else:
            self._send("404 page not found\n", 404)

    def _dial(self, q: dict[str, str]) -> None:
        request, protocol, host = q.get("request", ""), q.get("protocol", "http").lower(), q.get("host", "")
        try:
            port = int(q.get("port", ""))
            tries = int(q.get("tries", "1") or 1)
        except ValueError:
            self._send("port and tries must be integers", 400)
            return
        responses: list[str] = []
        errors: list[str] = []
        for _ in range(max(tries, 1)):
            try:
                if protocol in ("", "http"):
                    responses.append(dial_http(request, host, port))
                elif protocol == "udp":
                    responses.append(dial_udp(request, host, port))
                else:
                    self._send(f"unsupported protocol {protocol}", 400)
                    return
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        out: dict[str, list[str]] = {}
        if responses:
            out["responses"] = responses
        if errors:
            out["errors"] = errors
        self._json(out)

    def _shell(self, cmd: str) -> None:
        proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, check=False)
        out: dict[str, str] = {}
        combined = (proc.stdout + proc.stderr).decode(errors="replace")
        if combined:
            out["output"] = combined
        if proc.returncode:
            out["error"] = f"exit status {proc.returncode}"
            self._json(out, 417)
        else:
            self._json(out)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        answer = udp_answer(data.decode(errors="replace"), self.client_address)
        sock.sendto(answer.encode(), self.client_address)


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netexec", description=__doc__)
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--http-override", default="")
    p.add_argument("--udp-port", type=int, default=8081)
    p.add_argument("--name", default="")
    p.add_argument("--ready-file", default="")
    p.add_argument("--set-hostname", action="store_true", help="lab: set the hostname to --name (own UTS ns)")
    args, _unknown = p.parse_known_args(argv)  # other agnhost flags (--sctp-port, ...) are accepted and ignored
    Config.name, Config.override = args.name, args.http_override
    if args.set_hostname and args.name:
        socket.sethostname(args.name)
    httpd = Server(("0.0.0.0", args.http_port), Handler)
    if args.udp_port >= 0:
        try:
            udpd = UDPServer(("0.0.0.0", args.udp_port), UDPHandler)
        except OSError as e:  # e.g. a second container of the pod with the default 8081: keep HTTP serving
            print(f"netexec: udp port {args.udp_port}: {e}", file=sys.stderr)
        else:
            threading.Thread(target=udpd.serve_forever, daemon=True).start()
    if args.ready_file:
        Path(args.ready_file).touch()
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

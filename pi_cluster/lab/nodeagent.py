"""The lab's per-node kube-proxy endpoints, for every node of one lab from a single process (stdlib only).

Serves, inside each node's network namespace, what kube-proxy serves on a real node: the mode at
``http://127.0.0.1:10249/proxyMode`` (plus ``/healthz``) and the health check on ``0.0.0.0:10256/healthz``;
and, as TEST DOUBLES of the kubelet (HTTPS 10250, every node) and the API server (HTTPS api_port, servers),
endpoints that refuse every anonymous request with 401 as the real ones do (the security checks probe them).
One process per lab: each listening socket is created in the node's namespace (setns on a helper thread);
sockets keep their namespace. Started by `Lab.up`, killed by `Lab.down` by its recorded PID.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def socket_in(netns: str, addr: tuple[str, int]) -> socket.socket:
    box: list[socket.socket | BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.listen(64)
            box.append(s)
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def make_handler(mode: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/proxyMode":
                body, ctype = mode, "text/plain; charset=utf-8"
            elif path in ("/healthz", "/livez"):
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                body, ctype = json.dumps({"lastUpdated": now, "currentTime": now}), "application/json"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


UNAUTHORIZED = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "Unauthorized", "reason": "Unauthorized", "code": 401})


class Unauthorized(http.server.BaseHTTPRequestHandler):
    """Anonymous request to the kubelet or API server stand-in: 401, as with --anonymous-auth=false."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = UNAUTHORIZED.encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET


def serve(sock: socket.socket, handler: type[http.server.BaseHTTPRequestHandler],
          tls: ssl.SSLContext | None = None) -> None:
    srv = http.server.ThreadingHTTPServer(sock.getsockname(), handler, bind_and_activate=False)
    srv.socket.close()
    # handshake in the handler thread (first read), so a silent client cannot stall accept()
    srv.socket = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False) if tls else sock
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nodeagent")
    p.add_argument("--state-dir", required=True)
    args = p.parse_args(argv)
    with open(os.path.join(args.state_dir, "state.json")) as f:
        st = json.load(f)
    mode = "nftables" if st["proxy_mode"] == "nftables" else "iptables"
    handler = make_handler(mode)
    tls: ssl.SSLContext | None = None
    cert, key = os.path.join(args.state_dir, "tls", "cert.pem"), os.path.join(args.state_dir, "tls", "key.pem")
    if os.path.exists(cert):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
    api_port = int(st.get("settings", {}).get("api_port", 6443))
    for node in st["nodes"]:
        plan: list[tuple[tuple[str, int], type[http.server.BaseHTTPRequestHandler], ssl.SSLContext | None]] = [
            (("127.0.0.1", 10249), handler, None), (("0.0.0.0", 10256), handler, None)]
        if tls:
            plan.append((("0.0.0.0", 10250), Unauthorized, tls))
            if node["role"] == "server":
                plan.append((("0.0.0.0", api_port), Unauthorized, tls))
        for addr, h, ctx in plan:
            try:
                serve(socket_in(node["netns"], addr), h, ctx)
            except OSError as e:
                print(f"nodeagent: {node['name']} {addr}: {e}", file=sys.stderr)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

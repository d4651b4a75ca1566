"""The lab's per-node kube-proxy endpoints, for every node of one lab from a single process (stdlib only).

Serves, inside each node's network namespace, what kube-proxy serves on a real node: the mode at
``http://127.0.0.1:10249/proxyMode`` (plus ``/healthz``) and the health check on ``0.0.0.0:10256/healthz``.
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


def serve(sock: socket.socket, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
    srv = http.server.ThreadingHTTPServer(sock.getsockname(), handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = sock
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
    for node in st["nodes"]:
        for addr in (("127.0.0.1", 10249), ("0.0.0.0", 10256)):
            try:
                serve(socket_in(node["netns"], addr), handler)
            except OSError as e:
                print(f"nodeagent: {node['name']} {addr}: {e}", file=sys.stderr)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

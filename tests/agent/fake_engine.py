"""A stand-in engine for tests: serves an Ollama-shaped (or other) HTTP API on loopback.

It is copied into a temporary directory under an engine's name (e.g. ``ollama``)
and run through its shebang, so the process name is the engine's name.
"""

import argparse
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OLLAMA = {
    "/api/version": {"version": "0.9.9-test"},
    "/api/tags": {
        "models": [{"name": "llama3.2:1b", "model": "llama3.2:1b", "size": 1}, {"name": "qwen2:0.5b"}]
    },
    "/api/ps": {"models": [{"name": "llama3.2:1b", "model": "llama3.2:1b", "size_vram": 0}]},
}


VLLM = {
    "/v1/models": {"object": "list", "data": [{"id": "Qwen/Qwen2.5-0.5B", "object": "model"}]},
    "/version": {"version": "0.6.6-test"},
}


def handler_for(mode):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if mode == "drip":
                self._drip()
            elif mode == "vllm" and self.path in VLLM:
                self._send(200, json.dumps(VLLM[self.path]).encode(), "application/json")
            elif mode == "ollama" and self.path in OLLAMA:
                self._send(200, json.dumps(OLLAMA[self.path]).encode(), "application/json")
            elif mode == "auth":
                self._send(401, b'{"error":"unauthorized"}', "application/json")
            else:
                self._send(404, b"<html>nothing here</html>", "text/html")

        def _send(self, status, body, kind):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drip(self):
            """A hostile engine: answers one byte every 100 ms, forever, so only a total deadline ends a probe."""
            print("probed", flush=True)
            try:
                while True:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Drip: ":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.1)
            except OSError:
                return

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--mode", default="ollama")
    parser.add_argument("--hold", action="append", default=[])
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--label", help="ignored: only changes the command line")
    parser.add_argument("--freebind", action="store_true", help="IP_FREEBIND: listen on an address not on this host")
    parser.add_argument("--helper-holding", help="start a child of the same name that holds this file open")
    args = parser.parse_args()
    helper = None
    if args.helper_holding:
        import ctypes
        import signal
        import subprocess

        def die_with_parent():
            # The tests SIGKILL engines: the helper must not outlive its engine.
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        helper = subprocess.Popen(
            [sys.argv[0], "--port", "0", "--mode", "other", "--hold", args.helper_holding],
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads exist yet in this process
        )
        helper.stdout.readline()
    held = [open(path, "rb") for path in args.hold]  # noqa: SIM115 - held open on purpose
    peers = [
        socket.create_connection((h, int(p)), timeout=5) for h, p in (c.rsplit(":", 1) for c in args.connect)
    ]
    class Server(ThreadingHTTPServer):
        def server_bind(self):
            if args.freebind:
                self.socket.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND
            super().server_bind()

    server = Server((args.bind, args.port), handler_for(args.mode))
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        for item in held + peers:
            item.close()
        if helper is not None:
            helper.kill()


if __name__ == "__main__":
    sys.exit(main())

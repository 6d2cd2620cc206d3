"""A small HTTP proxy that can make the server behind it answer 500 for a while: the soak's faulty Label Studio.

    python -m bench.faultproxy --target http://127.0.0.1:8080     # prints its own URL on the first line of stdout

Every request is forwarded to ``--target`` and the answer passed back, except during a fault window opened with
``POST /__fault?seconds=30``: then every request is answered ``500`` and, for one in two writes (``POST``,
``PATCH``, ``PUT``), only *after* forwarding it, so the server has committed what the client believes failed (the
case a blind retry turns into duplicates). ``GET /__fault`` reports the window and the counts. It serves until its
stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Faults:
    def __init__(self) -> None:
        self.until = 0.0
        self.lock = threading.Lock()
        self.counts = {"forwarded": 0, "refused": 0, "committed_then_500": 0}
        self.writes = 0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def commit_this_write(self) -> bool:
        """Alternate the faulty writes: forwarded-then-500, refused, forwarded-then-500..."""
        with self.lock:
            self.writes += 1
            return self.writes % 2 == 1


def handler(target: str, faults: Faults):
    parts = urlsplit(target)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: the soak's own log says what matters
            pass

        def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client went away (killed, say)
                self.wfile.write(body)

        def _forward(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
            headers["Host"] = parts.netloc
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            finally:
                conn.close()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            url = urlsplit(self.path)
            if url.path == "/__fault":
                if self.command == "POST":
                    seconds = float(parse_qs(url.query).get("seconds", ["30"])[0])
                    faults.until = time.monotonic() + seconds
                state = {"active": faults.active(), **faults.counts}
                return self._answer(200, json.dumps(state).encode(), [("Content-Type", "application/json")])
            refused = json.dumps({"detail": "injected fault: Label Studio is answering 500"}).encode()
            if faults.active():
                if self.command in ("POST", "PATCH", "PUT") and faults.commit_this_write():
                    self._forward(body)
                    faults.count("committed_then_500")
                else:
                    faults.count("refused")
                return self._answer(500, refused, [("Content-Type", "application/json")])
            status, headers, payload = self._forward(body)
            faults.count("forwarded")
            self._answer(status, payload, headers)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Proxy


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.target.rstrip("/"), Faults()))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()

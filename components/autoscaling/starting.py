"""Answer every request with 503 and an OpenAI-style error saying the model is starting.

The interceptor sends a request here once it has waited the route's readiness timeout for a replica, so the
client gets a clear answer instead of a hang or a bare 504. It runs on Python's standard library alone.
Environment: PORT, MESSAGE, RETRY_AFTER_SECONDS. GET /healthz answers 200 for the probes.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A request body is read (and dropped) up to this size, so the client sees the answer rather than a reset.
MAX_BODY_BYTES = 16 * 1024 * 1024


def error_body(message: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "model_starting", "code": "model_starting"}}
    ).encode()


class Handler(BaseHTTPRequestHandler):
    body = b""
    retry_after = "60"

    def _answer(self, with_body: bool) -> None:
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
        if length:
            self.rfile.read(length)
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_POST(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """One line per answered request on stderr is noise here: the interceptor's metrics count them."""


def serve(port: int, message: str, retry_after: str) -> ThreadingHTTPServer:
    Handler.body = error_body(message)
    Handler.retry_after = retry_after
    return ThreadingHTTPServer(("", port), Handler)


if __name__ == "__main__":
    serve(
        int(os.environ["PORT"]), os.environ["MESSAGE"], os.environ.get("RETRY_AFTER_SECONDS", "60")
    ).serve_forever()

"""A real local HTTP server that receives gridwatch's outgoing webhook the way an integration
would: it verifies the HMAC signature over the timestamp and the body, and answers from a
script (200, 500, 429 with Retry-After, or no answer until the client times out)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from notify.channels.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

SECRET = "webhook-test-secret"


@dataclass
class Received:
    key: str
    body: dict[str, Any]
    genuine: bool
    answered: int | str


@dataclass
class WebhookServer:
    url: str
    script: list[int | str] = field(default_factory=list)  # 200, 500, "429:2", "timeout"
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answers(self, *script: int | str) -> None:
        with self.lock:
            self.script[:] = list(script)

    def keys(self) -> list[str]:
        with self.lock:
            return [r.key for r in self.received]

    def ok(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answered == 200]


@contextmanager
def webhook_server(timeout_hold_s: float = 3.0) -> Iterator[WebhookServer]:
    state: list[WebhookServer] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            server = state[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            genuine = verify(SECRET, self.headers.get(TIMESTAMP_HEADER, ""), body,
                             self.headers.get(SIGNATURE_HEADER, ""))  # fmt: skip
            with server.lock:
                answer: int | str = server.script.pop(0) if server.script else 200
                if not genuine:
                    answer = 401
                server.received.append(
                    Received(
                        self.headers.get(DELIVERY_HEADER, ""), json.loads(body), genuine, answer
                    )
                )
            if answer == "timeout":
                time.sleep(timeout_hold_s)
                return
            if isinstance(answer, str) and answer.startswith("429"):
                self.send_response(429)
                self.send_header("Retry-After", answer.split(":")[1])
            else:
                self.send_response(int(answer))
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(WebhookServer(f"http://127.0.0.1:{httpd.server_address[1]}/hook"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        httpd.shutdown()
        httpd.server_close()

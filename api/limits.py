"""Request limits and response headers applied to every request, before any route runs."""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Responses from the API (not the console's files) are private data: never cached, never
# content-sniffed into something else.
_API_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, what: str = "the request body") -> None:
        super().__init__(413, f"{what} is larger than {limit} bytes; send less (at most {limit})")


# Uploads that may be larger than other bodies: (method, path pattern, limit, what it is).
Larger = tuple[str, "re.Pattern[str]", int, str]


class Limits:
    """Refuses a body over `max_body` bytes with 413: at once when its Content-Length says so,
    and as soon as a chunked body passes it, so nothing large is ever held in memory."""

    def __init__(self, app: ASGIApp, max_body: int, larger: tuple[Larger, ...] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.larger = larger

    def _limit(self, scope: Scope) -> tuple[int, str]:
        for method, path, limit, what in self.larger:
            if scope.get("method") == method and path.match(scope["path"]):
                return limit, what
        return self.max_body, "the request body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body, what = self._limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > max_body:
            await _refuse(send, BodyTooLarge(max_body, what))
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise BodyTooLarge(max_body, what)
            return message

        async def headed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not scope["path"].startswith("/console"):
                    message["headers"] = [
                        *(h for h in message.get("headers", []) if h[0] != b"cache-control"),
                        *_API_HEADERS,
                    ]
            await send(message)

        try:
            await self.app(scope, counted, headed)
        except BodyTooLarge as exc:  # read outside a route (a form parser, a middleware)
            if started:
                raise
            await _refuse(headed, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server already refuses a malformed length
    return None


async def _refuse(send: Send, exc: HTTPException) -> None:
    body = json.dumps({"error": "too_large", "detail": exc.detail}).encode()
    await send({"type": "http.response.start", "status": exc.status_code, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *_API_HEADERS,
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})

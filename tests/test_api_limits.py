"""The API as served (`gridwatch api`, a real uvicorn) under unbounded input: huge bodies,
half-sent requests, too many connections; its headers; and a quick, clean shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from tests.support import stop_process

LIMITS = {
    "GRIDWATCH_API_MAX_BODY_BYTES": str(64 * 1024),
    "GRIDWATCH_API_HEADER_TIMEOUT_S": "1",
    "GRIDWATCH_API_LIMIT_CONCURRENCY": "20",
}


def _serve(stack: LocalStack, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    environment = stack.service_env(
        "api", GRIDWATCH_API_PORT=str(port), GRIDWATCH_API_HOST="127.0.0.1", **env
    )
    with (stack.logs / "api.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "api"], env=environment,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
    return proc, port


@pytest.fixture
def api(stack: LocalStack) -> Iterator[int]:
    proc, port = _serve(stack, **LIMITS)
    yield port
    stop_process(proc)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def test_an_oversized_body_is_refused_before_it_is_read(api: int) -> None:
    s = _connect(api)
    s.sendall(b"POST /api/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
              b"urlencoded\r\nContent-Length: 314572800\r\n\r\nusername=a")  # fmt: skip
    answer = _answer(s)  # 300 MiB announced, a few bytes sent: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error":"too_large"' in answer.replace(b" ", b"")


def test_a_chunked_body_is_counted_as_it_streams(api: int) -> None:
    s = _connect(api)
    s.sendall(b"POST /api/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
              b"urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"a" * 16384
    try:
        for _ in range(64):  # 1 MiB in all, past the 64 KiB limit; the server stops reading
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_a_half_sent_request_is_closed_and_connections_are_limited(api: int) -> None:
    s = _connect(api)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    assert _answer(s).startswith(b"HTTP/1.1 408 ")
    idle = _connect(api)  # connects and sends nothing at all
    assert _answer(idle).startswith(b"HTTP/1.1 408 ")
    crowd = [_connect(api) for _ in range(20)]
    for c in crowd:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        busy = httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=10)
        assert busy.status_code == 503  # past the limit: refused, not queued
    finally:
        for c in crowd:
            c.close()
    ok = httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=10)
    assert ok.status_code == 200


def test_api_responses_are_not_cached_or_sniffed_and_docs_are_off_in_production(
    stack: LocalStack, api: int
) -> None:
    base = f"http://127.0.0.1:{api}"
    token = httpx.post(f"{base}/api/token", data={"username": "operator",
                                                  "password": DEMO_PASSWORD}).json()  # fmt: skip
    me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    for r in (me, httpx.get(f"{base}/api/me"), httpx.get(f"{base}/readyz")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
    assert httpx.get(f"{base}/docs").status_code == 200  # development
    proc, port = _serve(stack, GRIDWATCH_ENVIRONMENT="production",
                        GRIDWATCH_API_SECRET="s" * 40)  # fmt: skip
    try:
        for path in ("/docs", "/redoc"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        stop_process(proc)


def test_ctrl_c_ends_open_live_streams_and_stops_at_once(stack: LocalStack) -> None:
    proc, port = _serve(stack)
    base = f"http://127.0.0.1:{port}"
    try:
        token = httpx.post(f"{base}/api/token", data={"username": "operator",
                                                      "password": DEMO_PASSWORD}).json()  # fmt: skip
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        with httpx.stream("GET", f"{base}/api/live", headers=bearer, timeout=30) as live:
            assert live.status_code == 200
            lines = live.iter_lines()
            assert next(lines) == "retry: 2000"
            proc.send_signal(signal.SIGINT)
            rest = list(lines)  # the server ends the stream instead of waiting for it
        assert all(line in ("", ": keep-alive") for line in rest)
        assert proc.wait(10) in (0, 130)  # 130: stopped by SIGINT, as a shell reports it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""The API under database faults: read-only, unreachable, back again. Real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import messages
from api.app import create_app
from api.settings import ApiSettings
from gridwatch.demo import NodeCredentials
from gridwatch.local.services import free_port
from gridwatch.local.stack import LocalStack
from tests.test_api import raise_incident, sign_in


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    settings = ApiSettings(database_url=stack.dsn, api_pool_size=3)  # type: ignore[arg-type]
    # As a real server answers: an unhandled error is a 500, not an exception in the test.
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _read_only(stack: LocalStack, on: bool) -> None:
    """What an administrator does: the database read-only (or not) for new sessions, and every
    session that exists ended."""
    with psycopg.connect(stack.postgres.dsn("postgres"), autocommit=True) as admin:
        if on:
            admin.execute(f"ALTER DATABASE {stack.database} SET default_transaction_read_only = on")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (stack.database,),
            )
        else:
            admin.execute(f"ALTER DATABASE {stack.database} RESET default_transaction_read_only")


def test_a_read_only_database_answers_503_and_writes_work_again_after(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    raise_incident(stack.dsn, nodes[0].site)
    me = sign_in(client, "operator")
    incident = client.get("/api/incidents", headers=me).json()["items"][0]["id"]
    url = f"/api/incidents/{incident}/silence"
    assert client.post(url, json={"minutes": 5}, headers=me).status_code == 200
    _read_only(stack, True)
    try:
        for _ in range(4):  # more than the pool holds: every connection is a read-only one
            refused = client.post(url, json={"minutes": 5}, headers=me)
            assert refused.status_code == 503, refused.text
            assert refused.json() == {
                "error": "unavailable",
                "detail": "the database is read-only; try again in a moment",
                "message": messages.render("db.read_only", {}, "zh-CN"),
            }
        assert client.get("/api/incidents", headers=me).status_code == 200  # reads still work
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("the database cannot take writes (read-only)")
    finally:
        _read_only(stack, False)
    for _ in range(6):  # each pooled connection, opened read-only, is replaced
        again = client.post(url, json={"minutes": 5}, headers=me)
        assert again.status_code == 200, again.text
    assert client.get("/readyz").json() == {"status": "ready"}


def test_without_a_database_the_api_answers_503_json() -> None:
    nowhere = f"postgresql://gridwatch:secret-password@127.0.0.1:{free_port()}/gridwatch"
    settings = ApiSettings(database_url=nowhere, api_db_wait_s=1)  # type: ignore[arg-type]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(3):
            r = client.post("/api/token", data={"username": "operator", "password": "x" * 12})
            assert r.status_code == 503, r.text
            assert r.json() == {
                "error": "unavailable",
                "detail": "the database cannot be reached; try again in a moment",
                "message": messages.render(
                    "db.unreachable", {}, "zh-CN"
                ),  # zh-CN: no Accept-Language
            }
            assert r.headers["retry-after"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "unavailable"
        # The reason, without the server's own error text (addresses, accounts, versions).
        assert "127.0.0.1" not in ready.text and "gridwatch" not in ready.text
        assert client.get("/healthz").json() == {"status": "ok"}  # the process itself is fine

"""The API's list endpoints keep custom plans: after many runs (psycopg prepares a statement after
five, and the server may then switch it to a generic plan), each is still planned with its
values. Read from the server's own account of the session (pg_prepared_statements, EXPLAIN
EXECUTE), not from timing."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.database import Database
from api.settings import ApiSettings
from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.stack import LocalStack

_INCIDENTS = """
INSERT INTO incidents (dedup_key, rule, severity, status, title, title_code, venue_id, grid_id, path,
                       first_seen, last_seen, opened_at, resolved_at)
SELECT 'plans:' || i, 'door_forced', (ARRAY['red','yellow','green'])[1 + i % 3]::severity,
       CASE WHEN i % 10 = 0 THEN 'open' ELSE 'resolved' END::incident_status,
       'Door forced open', 'door_forced', v.id, v.grid_id, t.path, now(), now(), now(),
       CASE WHEN i % 10 = 0 THEN NULL ELSE now() END
FROM generate_series(1, 3000) AS i
JOIN (SELECT v.id, v.grid_id, row_number() OVER (ORDER BY v.id) - 1 AS n
      FROM venues v) v ON v.n = i % (SELECT count(*) FROM venues)
JOIN territory t ON t.id = v.grid_id
"""
# Each list endpoint with the filters a console uses; every one runs more than enough times.
_LISTS: list[tuple[str, dict[str, object]]] = [
    ("/api/incidents", {}),
    ("/api/incidents", {"status": "open", "severity": "red"}),
    ("/api/incidents", {"status": ["open", "acknowledged"]}),
    ("/api/tasks", {}),
    ("/api/venues", {}),
    ("/api/people", {}),
    ("/api/territory", {}),
    ("/api/v1/notifications", {}),
]
_RUNS = 12


@pytest.fixture
def one_connection(stack: LocalStack) -> Iterator[tuple[TestClient, Database]]:
    """The API with a pool of one connection: every request's statements are that session's."""
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(_INCIDENTS)
        conn.execute("ANALYZE incidents")
    settings = ApiSettings(database_url=stack.role_dsn("api"), api_pool_size=1)  # type: ignore[arg-type]
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, app.state.db


def test_list_endpoints_never_run_a_generic_plan(
    one_connection: tuple[TestClient, Database],
) -> None:
    client, db = one_connection
    r = client.post("/api/token", data={"username": "operator", "password": DEMO_PASSWORD})
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    for path, params in _LISTS:
        for _ in range(_RUNS):
            got = client.get(path, params=params, headers=bearer)  # type: ignore[arg-type]
            assert got.status_code == 200, (path, got.text)
    with db.connection() as conn:
        statements = conn.execute(
            """SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements
               WHERE NOT from_sql"""
        ).fetchall()
        # The incident list's statement (the task list's reads incidents too, in its card's join).
        listed = [
            s for s in statements
            if "FROM incidents" in str(s[1]) and "LIMIT" in str(s[1]) and "FROM tasks" not in str(s[1])
        ]  # fmt: skip
        assert listed, "the incident list was not prepared: the check would see nothing"
        generic = [
            (" ".join(str(s[1]).split()[:12]), s[2]) for s in statements if int(str(s[2])) > 0
        ]
        assert generic == [], f"statements that ran a generic plan: {generic}"
        assert all(int(s[3]) > _RUNS for s in listed)  # prepared, and planned each run
        # What the next run of the incident list's statement would do, with the open-red filter:
        # a custom plan has the values in it; a generic one shows $1, $2, ...
        name, text = str(listed[0][0]), str(listed[0][1])
        assert "path <@ $1::ltree" in text and "$7" in text and "$8" not in text
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                f"EXPLAIN EXECUTE {name}('haicheng', NULL, '{{open}}', 'red', NULL, NULL, 50)"
            ).fetchall()
        )
        assert "$" not in plan, plan
        assert "'red'" in plan, plan

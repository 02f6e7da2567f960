"""The live stream read once per process for every stream: each stream still gets exactly what its
person may see (their subtree, their own notifications), a change whose id was taken before an
earlier-committed one still arrives, and a stream that falls behind the feed's memory reads the
table and loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import psycopg
import pytest

from api.live import ChangeFeed, in_scope
from api.routes.live import _View
from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from tests.support import scalar, stop_process

_INCIDENT = """
INSERT INTO incidents (dedup_key, rule, severity, status, title, title_code, venue_id, grid_id, path,
                       first_seen, last_seen, opened_at)
SELECT %s, 'door_forced', 'red', 'open', 'Door forced open', 'door_forced', v.id, v.grid_id, t.path,
       now(), now(), now()
FROM venues v JOIN territory t ON t.id = v.grid_id WHERE v.id = %s
"""
# As notify_console() writes a console notification: the person's scope, the person's id.
_NOTIFICATION = """
WITH made AS (
    INSERT INTO changes (kind, path, person_id, payload)
    SELECT 'notification', t.path, p.id, jsonb_build_object('title', %s::text)
    FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = %s RETURNING id)
SELECT pg_notify('gridwatch_changes', id::text), id FROM made
"""


def _add_grid(dsn: str, site: str) -> tuple[str, str]:
    """Another grid beside `site`'s with a venue and a worker of its own: (venue, worker)."""
    from casework import tasks
    from registry import store
    from registry.model import Area, Level, Person, Venue, VenueKind

    community = str(scalar(dsn, "SELECT g.parent_id FROM venues v JOIN territory g ON g.id = v.grid_id"
                                " WHERE v.id = %s", (site,)))  # fmt: skip
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Area(id="g_far", level=Level.GRID, name="Far", parent=community),
            Venue(id="v-far", grid="g_far", name="Far station", kind=VenueKind.GRID_STATION),
            Person(id="worker-g_far", name="Far worker", role=tasks.Role.GRID_WORKER,
                   scope="g_far"),
        ], "test", audit=False)  # fmt: skip
        conn.execute(
            "UPDATE people SET password_hash = (SELECT password_hash FROM people"
            " WHERE id = 'operator') WHERE id = 'worker-g_far'"
        )
    return "v-far", "worker-g_far"


def _incident(dsn: str, venue: str, key: str) -> int:
    with psycopg.connect(dsn) as conn:
        conn.execute(_INCIDENT, (key, venue))
        row = conn.execute("SELECT currval('changes_id_seq')").fetchone()
    assert row is not None
    return int(row[0])


def _notify(dsn: str, person: str, title: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_NOTIFICATION, (title, person)).fetchone()
    assert row is not None
    return int(row[1])


def _read_until(lines: Iterator[str], last: int, timeout_s: float = 30.0) -> list[int]:
    """Event ids from an open stream, up to and with `last` (a change sent after the others:
    whatever the stream should have had before it has come by then, in order)."""
    ids: list[int] = []
    deadline = time.monotonic() + timeout_s
    for line in lines:
        if line.startswith("id: "):
            ids.append(int(line[4:]))
            if ids[-1] == last:
                return ids
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"change {last} did not come within {timeout_s:.0f} s; got {ids}")


@pytest.fixture
def api_base(stack: LocalStack) -> Iterator[str]:
    port = free_port()
    api = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 30), (stack.logs / "api.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(api)


def test_each_stream_gets_its_subtree_and_its_own_notifications(
    stack: LocalStack, api_base: str
) -> None:
    site = str(scalar(stack.dsn, "SELECT id FROM venues ORDER BY id LIMIT 1"))
    near_worker = stack.people_of_venue(site)[0]
    far_site, far_worker = _add_grid(stack.dsn, site)
    people = ["operator", near_worker, far_worker]
    tokens = {
        p: httpx.post(f"{api_base}/api/token", data={"username": p, "password": DEMO_PASSWORD},
                      timeout=60).json()["access_token"]
        for p in people
    }  # fmt: skip
    timeout = httpx.Timeout(30.0)
    with ExitStack() as streams:
        opened = {
            p: streams.enter_context(httpx.stream(
                "GET", f"{api_base}/api/live", timeout=timeout,
                headers={"Authorization": f"Bearer {tokens[p]}"}))
            for p in people
        }  # fmt: skip
        assert all(s.status_code == 200 for s in opened.values())
        lines = {p: s.iter_lines() for p, s in opened.items()}
        near = _incident(stack.dsn, site, "fanout-near")
        to_near_worker = _notify(stack.dsn, near_worker, "for the near worker")
        to_operator = _notify(stack.dsn, "operator", "for the operator")
        far = _incident(stack.dsn, far_site, "fanout-far")
        # A change whose id was taken first but committed after a later one still comes.
        late_conn = psycopg.connect(stack.dsn)
        late_conn.execute(_INCIDENT, ("fanout-late", site))
        early = _incident(stack.dsn, site, "fanout-early")
        before = _read_until(lines["operator"], early)  # the feed has read past the late id
        late_conn.commit()
        late = int(str(scalar(stack.dsn, "SELECT id FROM changes WHERE payload->>'id' ="
                                         " (SELECT id::text FROM incidents WHERE dedup_key ="
                                         " 'fanout-late')")))  # fmt: skip
        late_conn.close()
        assert late < early
        end = {p: _notify(stack.dsn, p, "the end") for p in people}
        got = {p: _read_until(lines[p], end[p]) for p in people}
    assert before + got["operator"] == [near, to_operator, far, early, late, end["operator"]]
    assert got[near_worker] == [near, to_near_worker, early, late, end[near_worker]]
    assert got[far_worker] == [far, end[far_worker]]


def test_a_stream_far_behind_reads_the_table(stack: LocalStack) -> None:
    """A feed that keeps three changes: a stream that missed ten gets all of its own from the
    table, once each, in order; another person's stay out."""
    site = str(scalar(stack.dsn, "SELECT id FROM venues ORDER BY id LIMIT 1"))
    worker = stack.people_of_venue(site)[0]
    scope = str(scalar(stack.dsn, "SELECT t.path FROM people p JOIN territory t"
                                  " ON t.id = p.scope_id WHERE p.id = %s", (worker,)))  # fmt: skip
    feed = ChangeFeed(stack.dsn, buffer=3)
    feed.start()
    try:
        assert feed.ready.wait(30)

        def backlog(after: int, upto: int) -> list[tuple[object, ...]]:
            with psycopg.connect(stack.dsn) as conn:
                return conn.execute(
                    """SELECT id, kind, payload::text FROM changes
                       WHERE id > %s AND id <= %s AND path <@ %s::ltree
                         AND (person_id IS NULL OR person_id = %s) ORDER BY id LIMIT 500""",
                    (after, upto, scope, worker),
                ).fetchall()

        async def run() -> tuple[list[int], list[int]]:
            view = _View(feed, scope, worker, after=0)
            frames = [f async for f in view.read_table(backlog)]
            assert not view.needs_table()
            mine = [_incident(stack.dsn, site, f"behind-{i}") for i in range(3)]
            mine.append(_notify(stack.dsn, worker, "mine"))
            mine += [_incident(stack.dsn, site, f"behind-{i}") for i in range(3, 6)]
            _notify(stack.dsn, "operator", "not mine")
            mine.append(_notify(stack.dsn, worker, "last"))
            deadline = time.monotonic() + 30
            while not _fed(feed, mine[-1]) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            frames.append(view.take())  # memory moved on: nothing from there, and it knows
            assert view.behind and view.needs_table()
            frames += [f async for f in view.read_table(backlog)]
            frames.append(view.take())
            ids = [int(line[4:]) for f in frames for line in f.splitlines()
                   if line.startswith("id: ")]  # fmt: skip
            return [i for i in ids if i >= mine[0]], mine

        got, mine = asyncio.run(run())
        assert got == mine
    finally:
        feed.stop()


def _fed(feed: ChangeFeed, cid: int) -> bool:
    pos = feed.position()
    return pos is not None and pos.upto >= cid


_SCOPES = [
    ("haicheng.d1.s1", "haicheng", True),
    ("haicheng.d1.s1", "haicheng.d1.s1", True),
    ("haicheng.d10.s1", "haicheng.d1", False),  # a label's prefix is not its parent
    ("haicheng.d1", "haicheng.d1.s1", False),
    ("other", "", True),
]


def test_in_scope_reads_as_ltree_does(stack: LocalStack) -> None:
    with psycopg.connect(stack.dsn) as conn:
        for path, scope, inside in _SCOPES:
            row = conn.execute("SELECT %s::ltree <@ %s::ltree", (path, scope)).fetchone()
            assert row is not None and row[0] is inside, (path, scope)
            assert in_scope(path, scope) is inside, (path, scope)

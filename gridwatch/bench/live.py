"""`gridwatch bench live`: many open live streams, and how long a change takes from its commit to
each stream whose person may see it; with the check that each stream got exactly those."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psycopg

from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, terminate, wait_for_port
from gridwatch.local.stack import LocalStack

_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")

# An incident for a venue: its trigger writes the change (kind incident, the grid's path) and
# the notice, as the ingest's incidents do. Returns the change's id.
_INCIDENT = """
INSERT INTO incidents (dedup_key, rule, severity, status, title, title_code, venue_id, grid_id, path,
                       first_seen, last_seen, opened_at)
SELECT 'bench-live:' || %(n)s, 'door_forced', 'red', 'open', 'Door forced open', 'door_forced', v.id,
       v.grid_id, t.path, now(), now(), now()
FROM venues v JOIN territory t ON t.id = v.grid_id WHERE v.id = %(venue)s
"""
_LAST_CHANGE = "SELECT 1, currval('changes_id_seq')"  # the trigger ran after the insert
# A console notification for one person, written as notify_console() writes it.
_NOTIFICATION = """
WITH made AS (
    INSERT INTO changes (kind, path, person_id, payload)
    SELECT 'notification', t.path, p.id, jsonb_build_object('title', 'bench', 'n', %(n)s)
    FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = %(person)s
    RETURNING id)
SELECT pg_notify('gridwatch_changes', id::text), id FROM made
"""
# Who should see what: the database's own reading of scope and person, not the API's.
_EXPECTED = """
SELECT c.id, p.id FROM changes c, people p JOIN territory t ON t.id = p.scope_id
WHERE c.id = ANY(%s) AND p.id = ANY(%s) AND c.path <@ t.path
  AND (c.person_id IS NULL OR c.person_id = p.id)
"""


class _Listener:
    """One raw HTTP/1.1 connection reading the event stream: which change ids came, and when."""

    def __init__(self, person: str, token: str) -> None:
        self.person, self.token = person, token
        self.got: dict[int, float] = {}
        self.duplicates = 0
        self.opened = asyncio.Event()
        self.failed: str | None = None

    async def run(self, port: int, stop: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            self.failed = str(exc)
            self.opened.set()
            return
        writer.write(
            f"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}"
            "\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            self.failed = head.split(b"\r\n", 1)[0].decode()
            self.opened.set()
            writer.close()
            return
        rest = b""
        reading = asyncio.ensure_future(reader.read(65536))
        stopping = asyncio.ensure_future(stop.wait())
        while True:
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                reading.cancel()
                break
            data = reading.result()
            if not data:
                break
            now = time.time()
            *frames, rest = (rest + data).split(b"\n\n")
            for frame in frames:
                if b"retry:" in frame:
                    self.opened.set()
                for match in _ID.finditer(frame):
                    cid = int(match.group(1))
                    if cid in self.got:
                        self.duplicates += 1
                    self.got.setdefault(cid, now)
            reading = asyncio.ensure_future(reader.read(65536))
        writer.close()


def _people(dsn: str, count: int, seed: int, city_wide: bool) -> list[str]:
    """A mix of people from the city's operator down to grid workers (only the city's with
    `city_wide`)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT p.id, nlevel(t.path) FROM people p JOIN territory t ON t.id = p.scope_id
               WHERE p.active AND p.password_hash IS NOT NULL ORDER BY p.id"""
        ).fetchall()
    by_level: defaultdict[int, list[str]] = defaultdict(list)
    for person, level in rows:
        by_level[int(level)].append(str(person))
    rng = random.Random(seed)
    chosen: list[str] = []
    levels = sorted(by_level)[:1] if city_wide else sorted(by_level)
    while len(chosen) < count and any(by_level[level] for level in levels):
        for level in levels:
            if by_level[level] and len(chosen) < count:
                chosen.append(by_level[level].pop(rng.randrange(len(by_level[level]))))
    return chosen


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1)}  # fmt: skip


async def _measure(
    args: argparse.Namespace, dsn: str, port: int, tokens: dict[str, str]
) -> dict[str, object]:
    people = list(tokens)
    listeners = [_Listener(people[i % len(people)], tokens[people[i % len(people)]])
                 for i in range(args.listeners)]  # fmt: skip
    stop = asyncio.Event()
    tasks = []
    for i in range(0, len(listeners), 100):  # open them in waves, as browsers would come
        tasks += [asyncio.create_task(lis.run(port, stop)) for lis in listeners[i : i + 100]]
        await asyncio.wait_for(
            asyncio.gather(*(lis.opened.wait() for lis in listeners[i : i + 100])), 120
        )
    failed = [lis.failed for lis in listeners if lis.failed]
    if failed:
        raise RuntimeError(f"{len(failed)} streams did not open: {failed[0]}")
    await asyncio.sleep(1.0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        venues = [str(r[0]) for r in conn.execute("SELECT id FROM venues ORDER BY id").fetchall()]
    rng = random.Random(args.seed)
    committed: dict[int, float] = {}

    def produce(n: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(n):
                with conn.transaction():
                    if i % 5 == 4:  # every fifth: a notification for one of the listening people
                        row = conn.execute(
                            _NOTIFICATION, {"n": i, "person": rng.choice(people)}
                        ).fetchone()
                    else:
                        conn.execute(_INCIDENT, {"n": i, "venue": rng.choice(venues)})
                        row = conn.execute(_LAST_CHANGE).fetchone()
                assert row is not None
                committed[int(row[1])] = time.time()
                time.sleep(args.interval)

    await asyncio.to_thread(produce, args.changes)
    ids = sorted(committed)
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn) as conn:
        expected: defaultdict[str, set[int]] = defaultdict(set)
        for cid, person in conn.execute(_EXPECTED, (ids, people)).fetchall():
            expected[str(person)].add(int(cid))
    while time.monotonic() < deadline:  # wait for the last deliveries (or give up: counted)
        if all(expected[lis.person] <= set(lis.got) for lis in listeners):
            break
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    samples: list[float] = []
    by_change: defaultdict[int, list[float]] = defaultdict(list)
    missing = unexpected = duplicates = 0
    for lis in listeners:
        mine = expected[lis.person]
        seen = {cid for cid in lis.got if cid in committed}
        missing += len(mine - seen)
        unexpected += len(seen - mine)
        duplicates += lis.duplicates
        for cid in mine & seen:
            samples.append(lis.got[cid] - committed[cid])
            by_change[cid].append(lis.got[cid] - committed[cid])
    return {
        "listeners": len(listeners),
        "people": len(people),
        "changes": len(ids),
        "deliveries": len(samples),
        "commit_to_delivery": _percentiles(samples) if samples else None,
        # the changes whose last delivery came latest: one slow round, or all of them?
        "slowest_changes_ms": sorted(round(max(v) * 1000) for v in by_change.values())[-5:],
        "missing": missing,
        "not_theirs": unexpected,
        "duplicates": duplicates,
        "exact": missing == unexpected == duplicates == 0,
    }


def run_live_bench(args: argparse.Namespace) -> int:
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack(home)
    api = None
    try:
        stack.start_database()
        stack.apply_demo(venues=args.venues, devices_per_venue=5)
        port = free_port()
        # One process holds every stream: its connection cap and per-person cap are raised.
        os.environ["GRIDWATCH_API_LIMIT_CONCURRENCY"] = str(args.listeners + 100)
        os.environ["GRIDWATCH_API_LIVE_STREAMS_PER_PERSON"] = str(min(1000, args.listeners))
        api = stack.start_api(port)
        if not wait_for_port("127.0.0.1", port, 30):
            raise RuntimeError("the API did not start (see logs/api.log)")
        base = f"http://127.0.0.1:{port}"
        tokens: dict[str, str] = {}
        for person in _people(stack.dsn, args.people, args.seed, args.city_wide):
            r = httpx.post(
                f"{base}/api/token",
                data={"username": person, "password": DEMO_PASSWORD},
                timeout=60,
            )
            r.raise_for_status()
            tokens[person] = r.json()["access_token"]
        result = asyncio.run(_measure(args, stack.dsn, port, tokens))
        print(json.dumps(result))
        return 0 if result["exact"] else 1
    finally:
        if api is not None:
            terminate(api)
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)

"""Incidents and tasks applied per batch: a handful of statements whatever the number of
incidents, and each key's signals in their order, as one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from casework import incidents
from casework.rules import Clear, Raise, Rule, Severity, Signal
from casework.tasks import DeadlinePolicy
from casework.venues import VenueInfo
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests.support import scalar


class CountingConnection(psycopg.Connection[tuple[Any, ...]]):
    """A real connection that counts the statements sent through it."""

    statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.statements += 1
        return super().execute(*args, **kwargs)


def _forced(venue: VenueInfo, subject: str, at: datetime) -> Raise:
    return Raise(Rule.DOOR_FORCED, subject, Severity.RED, venue, at, device=None)


def _statements(dsn: str, signals: list[Signal]) -> int:
    with CountingConnection.connect(dsn) as conn:
        incidents.apply(conn, signals, DeadlinePolicy())
        return conn.statements


def test_a_batch_of_new_incidents_costs_the_statements_of_one(stack: LocalStack) -> None:
    with psycopg.connect(stack.dsn) as conn:
        venues = list(registry.load(conn).venues.values())
    now = datetime.now(UTC)
    one = _statements(stack.dsn, [_forced(venues[0], "solo", now)])
    many = [_forced(venues[i % len(venues)], f"door{i}", now) for i in range(60)]
    assert _statements(stack.dsn, list(many)) == one
    assert one <= 10, f"{one} statements for one incident"
    # Every incident has its task, dispatched to the grid's worker on duty, with its deadline
    # timers and its timeline; each task was written once (one change row, not three).
    assert scalar(stack.dsn, "SELECT count(*) FROM incidents") == 61
    assert scalar(stack.dsn, "SELECT count(*) FROM tasks WHERE state = 'dispatched'"
                             " AND assignee IS NOT NULL AND deadline_at IS NOT NULL") == 61  # fmt: skip
    assert (
        scalar(
            stack.dsn, "SELECT count(*) FROM timers WHERE kind IN ('task_warn', 'task_deadline')"
        )
        == 122
    )
    assert scalar(stack.dsn, "SELECT count(*) FROM task_events") == 122  # create, dispatch
    assert scalar(stack.dsn, "SELECT count(*) FROM incident_events") == 122  # opened, task
    assert scalar(stack.dsn, "SELECT count(*) FROM changes WHERE kind = 'task'") == 61


def test_each_keys_signals_keep_their_order_within_a_batch(stack: LocalStack) -> None:
    with psycopg.connect(stack.dsn) as conn:
        venues = registry.load(conn).venues
        quiet = sorted(venues)[1]
        conn.execute(
            "INSERT INTO maintenance_windows (venue_id, starts, ends) VALUES"
            " (%s, now() - interval '1 minute', now() + interval '1 hour')",
            (quiet,),
        )
    venue = venues[sorted(venues)[0]]
    t0 = datetime.now(UTC)
    again = _forced(venue, "again", t0)
    twice = _forced(venue, "twice", t0)
    signals: list[Signal] = [
        again,
        Clear(again.key, "the door closed", t0 + timedelta(seconds=1)),
        _forced(venue, "again", t0 + timedelta(seconds=2)),
        twice,
        _forced(venue, "twice", t0 + timedelta(seconds=1)),
        _forced(venues[quiet], "silenced", t0),
    ]
    with psycopg.connect(stack.dsn) as conn:
        applied = incidents.apply(conn, signals, DeadlinePolicy())
    assert (applied.opened, applied.resolved) == (["door_forced"] * 3, 1)
    dsn = stack.dsn
    # "again": opened, resolved (its untaken task closed with it), opened anew with a task.
    assert scalar(dsn, "SELECT count(*) FROM incidents WHERE dedup_key = %s", (again.key,)) == 2
    assert scalar(dsn, "SELECT count(*) FROM incidents WHERE dedup_key = %s AND status = 'resolved'",
                  (again.key,)) == 1  # fmt: skip
    assert scalar(dsn, """SELECT count(*) FROM tasks t JOIN incidents i ON i.id = t.incident_id
                          WHERE i.dedup_key = %s AND t.state = 'closed'""", (again.key,)) == 1  # fmt: skip
    assert scalar(dsn, "SELECT count(*) FROM task_events WHERE action = 'incident_resolved'"
                       " AND to_state = 'closed'") == 1  # fmt: skip
    # "twice": one incident, two occurrences, the latest evidence kept.
    assert scalar(dsn, "SELECT occurrences FROM incidents WHERE dedup_key = %s", (twice.key,)) == 2
    # The venue in maintenance raised nothing.
    assert scalar(dsn, "SELECT count(*) FROM incidents WHERE venue_id = %s", (quiet,)) == 0

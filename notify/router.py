"""Routing: each new event becomes deliveries, one per person and channel, in one transaction
with marking the event routed (taken with SKIP LOCKED, so two routers never route one twice)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg

from casework.sqljson import records
from notify import links, metrics, prefs, recipients, texts
from notify.channels.base import Channel
from notify.policy import Policies, Rule
from notify.recipients import Event
from notify.settings import NotifySettings

log = logging.getLogger(__name__)
Conn = psycopg.Connection[tuple[object, ...]]
CONSOLE = "console"
# Task events raised while the task waited to be taken: they page nobody once it is taken.
_PAGING = frozenset({"task.dispatched", "task.deadline", "task.escalated"})
_WAITING = frozenset({"reported", "dispatched", "returned"})


def route(conn: Conn, channels: dict[str, Channel], settings: NotifySettings) -> int:
    """Route the events not routed yet; the number routed."""
    with conn.transaction():
        rows = conn.execute(
            """SELECT id, kind, severity::text, territory_id, path::text, task_id, incident_id,
                      person_id, params, at
               FROM notify_events WHERE routed_at IS NULL ORDER BY id LIMIT %s
               FOR UPDATE SKIP LOCKED""",
            (settings.batch,),
        ).fetchall()
        if not rows:
            return 0
        policies = Policies.load(conn)
        now = event_now(conn)  # the transaction's time: one for the whole batch
        people: dict[str, prefs.Person | None] = {}  # each person's preferences, read once
        events = [_event(row) for row in rows]
        planned: list[dict[str, object]] = []
        for event in events:
            planned += _route_one(conn, event, policies, channels, settings, now, people)
        made = _insert(conn, planned)
        for event in events:
            metrics.EVENTS.labels(event.kind).inc()
            log.info("notify event routed event=%d kind=%s deliveries=%d", event.id, event.kind,
                     made.get(event.id, 0))  # fmt: skip
        conn.execute(
            "UPDATE notify_events SET routed_at = now() WHERE id = ANY(%s)",
            ([e.id for e in events],),
        )
    return len(rows)


def _event(row: tuple[Any, ...]) -> Event:
    eid, kind, sev, terr, path, task, inc, person, params, at = row
    return Event(
        int(eid), str(kind), sev, terr, path, task, inc, person,
        dict(params) if isinstance(params, dict) else {}, at,
    )  # fmt: skip


def _still_paging(conn: Conn, event: Event) -> bool:
    """False for a paging event of a task taken (or closed) since it was raised."""
    if event.kind not in _PAGING or event.task_id is None:
        return True
    if event.params.get("state") not in _WAITING:
        return True  # raised in the handling stage: not stopped by acceptance
    row = conn.execute(
        "SELECT state::text, assignee FROM tasks WHERE id = %s", (event.task_id,)
    ).fetchone()
    return row is not None and str(row[0]) in _WAITING


def _route_one(
    conn: Conn,
    event: Event,
    policies: Policies,
    channels: dict[str, Channel],
    settings: NotifySettings,
    now: datetime,
    people: dict[str, prefs.Person | None],
) -> list[dict[str, object]]:
    """The deliveries one event makes (rows for `_insert`)."""
    if not _still_paging(conn, event):
        return []
    planned: list[dict[str, object]] = []
    done: set[tuple[str, str]] = set()
    for rule in policies.rules(event.kind, event.severity):
        for person_id in recipients.resolve(conn, rule.who, event):
            if person_id not in people:
                people[person_id] = prefs.load(conn, person_id)
            person = people[person_id]
            if person is None:
                continue
            plan = plan_channels(rule, person, channels)
            planned += _deliveries(conn, event, person, plan, done, settings, now)
    return planned


def event_now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def reachable(person: prefs.Person, channels: dict[str, Channel], names: list[str]) -> list[str]:
    """The channels of `names` that are configured and can reach the person, in order."""
    out = []
    for name in names:
        channel = channels.get(name)
        if channel is not None and channel.address(person.recipient) is not None:
            out.append(name)
    return out


def plan_channels(
    rule: Rule, person: prefs.Person, channels: dict[str, Channel]
) -> list[tuple[str, list[str]]]:
    """[(channel, fallbacks)] for one person under one rule. The console is always one."""
    own = reachable(person, channels, list(person.prefs.channels))
    outside = [c for c in own if c != CONSOLE]
    console: list[tuple[str, list[str]]] = [(CONSOLE, [])] if CONSOLE in channels else []
    if rule.channels == "all":
        return console + [(c, []) for c in outside]
    if rule.channels == "first":
        return console + ([(outside[0], outside[1:])] if outside else [])
    return [(c, []) for c in reachable(person, channels, list(rule.channels))]


def _deliveries(
    conn: Conn,
    event: Event,
    person: prefs.Person,
    plan: list[tuple[str, list[str]]],
    done: set[tuple[str, str]],
    settings: NotifySettings,
    now: datetime,
) -> list[dict[str, object]]:
    """One person's deliveries of an event, one per channel of the plan not yet covered."""
    plan = [(c, f) for c, f in plan if (person.recipient.person_id, c) not in done]
    if not plan:
        return []
    title, body = texts.render(event.kind, event.params, person.recipient.language)
    link = None
    if event.task_id is not None:
        token = links.make(conn, event.task_id, person.recipient.person_id, settings.link_ttl_s)
        link = f"{settings.public_url.rstrip('/')}/t/{token}"
    quiet = None if event.severity == "red" else person.prefs.quiet_until(now)
    rows: list[dict[str, object]] = []
    for channel, fallback in plan:
        done.add((person.recipient.person_id, channel))
        console = channel == CONSOLE
        rows.append({
            "e": event.id, "p": person.recipient.person_id, "c": channel,
            "st": "sent" if console else "pending", "k": event.kind, "s": event.severity,
            "t": event.task_id, "i": event.incident_id, "ti": title, "b": body, "l": link,
            "f": fallback, "n": None if console else quiet, "con": console,
        })  # fmt: skip
    return rows


def _insert(conn: Conn, rows: list[dict[str, object]]) -> dict[int, int]:
    """Insert the batch's deliveries in one statement; how many each event made (a delivery
    that exists already, from an earlier attempt at this batch, is not made again)."""
    if not rows:
        return {}
    made: dict[int, int] = {}
    for event_id, channel in conn.execute(
        """INSERT INTO deliveries (event_id, person_id, channel, state, kind, severity, task_id,
               incident_id, title, body, link, fallback, next_at, sent_at)
           SELECT e, p, c, st::delivery_state, k, s::severity, t, i, ti, b, l, f,
                  coalesce(n, now()), CASE WHEN con THEN now() END
           FROM jsonb_to_recordset(%s::jsonb) AS u(o int, e bigint, p text, c text, st text,
                k text, s text, t bigint, i bigint, ti text, b text, l text, f text[],
                n timestamptz, con boolean)
           ORDER BY o
           ON CONFLICT (event_id, person_id, channel) DO NOTHING
           RETURNING event_id, channel""",
        (records({"o": n, **r} for n, r in enumerate(rows)),),
    ):
        made[int(str(event_id))] = made.get(int(str(event_id)), 0) + 1
        if channel == CONSOLE:
            metrics.DELIVERIES.labels(CONSOLE, "sent").inc()
    return made

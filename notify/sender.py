"""Sending: due deliveries are taken with FOR UPDATE SKIP LOCKED and leased (attempts + 1, next_at
moved past the lease) in one short transaction, then sent outside it, then their outcome is
written. So two senders never take one delivery, a slow provider holds no lock, and a sender
that dies mid-send leaves a delivery that is tried again after its lease (with the same key).

Per channel, at most `per_minute` sends a minute (the provider's limit); per person and
channel, more than `burst_per_minute` messages in a minute become one digest, and at most one
digest a minute. Retry backs off exponentially or waits what the provider said (after_s);
Failed is final and the person's next channel gets the message.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from notify import metrics, prefs, texts
from notify.channels.base import Channel, Failed, Message, Outcome, Recipient, Retry, Sent
from notify.settings import NotifySettings

log = logging.getLogger(__name__)
Conn = psycopg.Connection[tuple[object, ...]]
CONSOLE = "console"
_WINDOW = timedelta(seconds=60)
# A provider counts its limit by when requests arrive; this budget counts them when they are
# claimed, and a send may arrive up to its timeout (5 s by default) later. Counting over a window
# longer by that much keeps every minute the provider sees within its limit.
_LIMIT_WINDOW = timedelta(seconds=70)
_DIGEST_LINES = 20
_SEVERITY_ORDER = {"red": 0, "yellow": 1, "green": 2}


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    person_id: str
    channel: str
    kind: str
    severity: str | None
    title: str
    body: str
    link: str | None
    attempts: int  # after this claim
    fallback: list[str]


_COLUMNS = "id, person_id, channel, kind, severity::text, title, body, link, attempts, fallback"


def _claimed(row: tuple[Any, ...]) -> Claimed:
    did, person, channel, kind, sev, title, body, link, attempts, fallback = row
    return Claimed(int(did), str(person), str(channel), str(kind), sev, str(title), str(body),
                   link, int(attempts), list(fallback or []))  # fmt: skip


def backoff(settings: NotifySettings, attempts: int) -> float:
    """Seconds before try number attempts + 1."""
    return float(min(settings.backoff_max_s, settings.backoff_s * 2 ** max(0, attempts - 1)))


def send_due(conn: Conn, channels: dict[str, Channel], settings: NotifySettings) -> int:
    """One round: take what is due, send it, record each outcome. The number sent or tried."""
    claimed = claim(conn, channels, settings)
    if claimed:
        people: dict[str, Recipient | None] = {}
        for c in claimed:
            if c.person_id not in people:
                person = prefs.load(conn, c.person_id)
                people[c.person_id] = person.recipient if person else None
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            futures = [
                (c, pool.submit(_send, channels[c.channel], c, people[c.person_id]))
                for c in claimed
            ]
            outcomes = [(c, f.result()) for c, f in futures]
        for c, outcome in outcomes:
            record(conn, c, outcome, settings)
    update_gauges(conn)
    return len(claimed)


def _send(channel: Channel, c: Claimed, recipient: Recipient | None) -> Outcome:
    if recipient is None:
        return Failed(reason=f"person {c.person_id} is no longer active")
    message = Message(key=str(c.id), kind=c.kind, severity=c.severity, title=c.title,
                      body=c.body, link=c.link)  # fmt: skip
    started = time.monotonic()
    try:
        return channel.send(message, recipient)
    except Exception as exc:  # a channel must not raise; if one does, it is a passing failure
        log.exception("notify channel raised channel=%s delivery=%d", channel.name, c.id)
        return Retry(reason=f"the {channel.name} channel raised {type(exc).__name__}")
    finally:
        metrics.SEND_SECONDS.labels(channel.name).observe(time.monotonic() - started)


def claim(conn: Conn, channels: dict[str, Channel], settings: NotifySettings) -> list[Claimed]:
    """Take due deliveries (SKIP LOCKED), make digests, defer what limits hold back; lease
    what is to be sent now and return it."""
    out: list[Claimed] = []
    with conn.transaction():
        rows = conn.execute(
            f"""SELECT {_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_at <= now()
                ORDER BY next_at, id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (settings.batch,),
        ).fetchall()
        if not rows:
            return out
        by_channel: defaultdict[str, list[Claimed]] = defaultdict(list)
        for row in rows:
            c = _claimed(row)
            by_channel[c.channel].append(c)
        for name, items in by_channel.items():
            channel = channels.get(name)
            if channel is None:
                for c in items:
                    _fail(conn, c, f"the {name} channel is not configured")
                continue
            out += _claim_channel(conn, channel, items, settings)
        if out:
            conn.execute(
                """UPDATE deliveries SET attempts = attempts + 1, tried_at = now(),
                       next_at = now() + %s WHERE id = ANY(%s)""",
                (timedelta(seconds=settings.lease_s), [c.id for c in out]),
            )
            limited = [c.channel for c in out if channels[c.channel].per_minute is not None]
            if limited:  # each is a request the provider counts, a retry as much as a first try
                conn.execute(
                    "INSERT INTO channel_requests (channel) SELECT unnest(%s::text[])", (limited,)
                )
    return [_with_attempt(c) for c in out]


def _with_attempt(c: Claimed) -> Claimed:
    return Claimed(c.id, c.person_id, c.channel, c.kind, c.severity, c.title, c.body, c.link,
                   c.attempts + 1, c.fallback)  # fmt: skip


def _claim_channel(
    conn: Conn, channel: Channel, items: list[Claimed], settings: NotifySettings
) -> list[Claimed]:
    budget, free_at = math.inf, None
    if channel.per_minute is not None:
        # One sender at a time counts a channel's budget (two leaders may overlap for a moment):
        # otherwise both would count before the other's requests are written, and spend it twice.
        # Never waited for: the other sender has the channel this round, these stay due.
        got = conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtext('gridwatch.channel_limit'), hashtext(%s))",
            (channel.name,),
        ).fetchone()
        if not got or not got[0]:
            return []
        conn.execute(
            "DELETE FROM channel_requests WHERE channel = %s AND at <= now() - %s",
            (channel.name, _LIMIT_WINDOW),
        )
        row = conn.execute(
            "SELECT count(*), min(at) FROM channel_requests WHERE channel = %s",
            (channel.name,),
        ).fetchone()
        assert row is not None
        budget = channel.per_minute - int(str(row[0]))
        free_at = row[1]
    per_person: defaultdict[str, list[Claimed]] = defaultdict(list)
    for c in items:
        per_person[c.person_id].append(c)
    out: list[Claimed] = []
    held: list[Claimed] = []
    for person_id, group in per_person.items():
        mine = group
        if channel.name != CONSOLE:
            row = conn.execute(
                """SELECT count(*), max(tried_at) FILTER (WHERE kind = 'digest') FROM deliveries
                   WHERE person_id = %s AND channel = %s AND digest_id IS NULL
                     AND tried_at > now() - %s""",
                (person_id, channel.name, _WINDOW),
            ).fetchone()
            assert row is not None
            recent, last_digest = int(str(row[0])), row[1]
            digestible = [c for c in mine if c.kind != "digest"]
            if digestible and recent + len(mine) > settings.burst_per_minute:
                mine = [c for c in group if c.kind == "digest"]
                if isinstance(last_digest, datetime):  # one digest a minute: the rest wait
                    _defer(conn, digestible, last_digest + _WINDOW)
                else:
                    mine.append(_digest(conn, person_id, channel.name, digestible))
        for c in mine:
            if budget >= 1:
                budget -= 1
                out.append(c)
            else:
                held.append(c)
    if held:  # until the oldest send of the window has left it (this round's: now)
        conn.execute(
            "UPDATE deliveries SET next_at = coalesce(%s, now()) + %s WHERE id = ANY(%s)",
            (free_at, _LIMIT_WINDOW, [c.id for c in held]),
        )
        log.info("notify channel at its limit channel=%s per_minute=%s held=%d", channel.name,
                 channel.per_minute, len(held))  # fmt: skip
    return out


def _defer(conn: Conn, items: list[Claimed], at: datetime | None) -> None:
    conn.execute(
        "UPDATE deliveries SET next_at = coalesce(%s, now() + interval '5 seconds') WHERE id = ANY(%s)",
        (at, [c.id for c in items]),
    )


def _digest(conn: Conn, person_id: str, channel: str, items: list[Claimed]) -> Claimed:
    """One delivery standing for `items` (which become 'digested' and point at it)."""
    person = prefs.load(conn, person_id)
    language = person.recipient.language if person else "zh-CN"
    lines = [f"- {c.title}" for c in items[:_DIGEST_LINES]]
    if len(items) > _DIGEST_LINES:
        lines.append(f"… +{len(items) - _DIGEST_LINES}")
    title, body = texts.render("digest", {"n": len(items), "lines": "\n".join(lines)}, language)
    severities = [c.severity for c in items if c.severity in _SEVERITY_ORDER]
    severity = min(severities, key=lambda s: _SEVERITY_ORDER[s or ""]) if severities else None
    row = conn.execute(
        f"""INSERT INTO deliveries (person_id, channel, kind, severity, title, body, fallback)
            VALUES (%s, %s, 'digest', %s, %s, %s, %s) RETURNING {_COLUMNS}""",
        (person_id, channel, severity, title, body, items[0].fallback),
    ).fetchone()
    assert row is not None
    digest = _claimed(row)
    conn.execute(
        "UPDATE deliveries SET state = 'digested', digest_id = %s WHERE id = ANY(%s)",
        (digest.id, [c.id for c in items]),
    )
    metrics.DELIVERIES.labels(channel, "digested").inc(len(items))
    log.info("notify digest person=%s channel=%s items=%d digest=%d", person_id, channel,
             len(items), digest.id)  # fmt: skip
    return digest


def record(conn: Conn, c: Claimed, outcome: Outcome, settings: NotifySettings) -> None:
    """Write what a send came to (only if the delivery is still the one this sender leased)."""
    with conn.transaction():
        if isinstance(outcome, Sent):
            conn.execute(
                """UPDATE deliveries SET state = 'sent', sent_at = now(), provider_ref = %s,
                       last_error = NULL
                   WHERE id = %s AND attempts = %s AND state IN ('pending', 'cancelled')""",
                (outcome.provider_ref, c.id, c.attempts),
            )
            metrics.DELIVERIES.labels(c.channel, "sent").inc()
            log.info("notify sent delivery=%d channel=%s person=%s", c.id, c.channel, c.person_id)
        elif isinstance(outcome, Retry) and c.attempts < settings.max_attempts:
            wait = outcome.after_s if outcome.after_s is not None else backoff(settings, c.attempts)
            conn.execute(
                """UPDATE deliveries SET next_at = now() + %s, last_error = %s
                   WHERE id = %s AND attempts = %s AND state = 'pending'""",
                (timedelta(seconds=wait), outcome.reason, c.id, c.attempts),
            )
            metrics.DELIVERIES.labels(c.channel, "retried").inc()
            log.warning("notify retry delivery=%d channel=%s attempt=%d in=%.1fs reason=%s",
                        c.id, c.channel, c.attempts, wait, outcome.reason)  # fmt: skip
        else:
            reason = outcome.reason if not isinstance(outcome, Sent) else ""
            if isinstance(outcome, Retry):
                reason = f"gave up after {c.attempts} tries: {reason}"
            _fail(conn, c, reason, attempts=c.attempts)


def _fail(conn: Conn, c: Claimed, reason: str, attempts: int | None = None) -> None:
    """Final: the delivery failed; the person's next channel gets the message."""
    cur = conn.execute(
        """UPDATE deliveries SET state = 'failed', last_error = %s
           WHERE id = %s AND state = 'pending' AND (%s::int IS NULL OR attempts = %s)
           RETURNING event_id, task_id, incident_id""",
        (reason, c.id, attempts, attempts),
    )
    row = cur.fetchone()
    if row is None:
        return
    metrics.DELIVERIES.labels(c.channel, "failed").inc()
    log.warning("notify failed delivery=%d channel=%s person=%s reason=%s", c.id, c.channel,
                c.person_id, reason)  # fmt: skip
    if not c.fallback:
        return
    conn.execute(
        """INSERT INTO deliveries (event_id, person_id, channel, kind, severity, task_id,
               incident_id, title, body, link, fallback)
           SELECT event_id, person_id, %s, kind, severity, task_id, incident_id, title, body,
                  link, %s FROM deliveries WHERE id = %s
           ON CONFLICT (event_id, person_id, channel) DO NOTHING""",
        (c.fallback[0], c.fallback[1:], c.id),
    )
    metrics.DELIVERIES.labels(c.fallback[0], "fallback").inc()
    log.info("notify fallback delivery=%d from=%s to=%s", c.id, c.channel, c.fallback[0])


def update_gauges(conn: Conn) -> None:
    row = conn.execute(
        """SELECT count(*),
                  coalesce(extract(epoch FROM now() - min(next_at) FILTER (WHERE next_at <= now())), 0)
           FROM deliveries WHERE state = 'pending'"""
    ).fetchone()
    assert row is not None
    metrics.QUEUE.set(int(str(row[0])))
    metrics.OLDEST_DUE.set(float(str(row[1])))

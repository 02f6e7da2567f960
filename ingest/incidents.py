"""Applying rule signals: incidents opened, repeated and resolved, rule timers, and a task for
every new incident, all in the transaction that stores the messages behind them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ingest import emergency, tasks
from ingest.rules import CancelTimer, Clear, Raise, Rule, Severity, Signal, StartTimer

__all__ = ["Raise", "Signal", "apply", "decode", "raise_incident", "resolve"]
from ingest.tasks import DeadlinePolicy

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
SYSTEM = "system"
TIMER_RULE = "rule"


@dataclass(slots=True)
class Applied:
    """What a batch of signals did."""

    opened: list[str] = field(default_factory=list)  # the rule of each incident opened
    resolved: int = 0
    tasks: list[int] = field(default_factory=list)

    def merge(self, other: Applied) -> None:
        self.opened += other.opened
        self.resolved += other.resolved
        self.tasks += other.tasks


def apply(conn: Conn, signals: list[Signal], policy: DeadlinePolicy) -> Applied:
    """Apply signals in order. What exists is read first, in one query for clears and one for
    timers, so the common cases (a reading that clears nothing, a timer already running) cost
    no writes; repeats of one incident in a batch are one write."""
    out = Applied()
    if not signals:
        return out
    # Rows are locked in key order, the same in every worker, so two batches touching the same
    # incidents cannot deadlock; the order of signals for one key is kept (the sort is stable).
    signals = sorted(signals, key=lambda s: s.key)
    clear_keys = sorted({s.key for s in signals if isinstance(s, Clear)})
    timer_keys_asked = sorted({s.key for s in signals if isinstance(s, StartTimer | CancelTimer)})
    # Open incidents and running timers with the time of their latest evidence: a clear or a
    # cancel older than that evidence is a late message and changes nothing.
    open_since = _existing(conn, "SELECT dedup_key, last_seen FROM incidents"
                           " WHERE status <> 'resolved' AND dedup_key = ANY(%s)", clear_keys)  # fmt: skip
    timer_since = _existing(conn, "SELECT key, (data->>'ts')::timestamptz FROM timers"
                            " WHERE kind = 'rule' AND key = ANY(%s)", timer_keys_asked)  # fmt: skip
    silenced: dict[tuple[str, str | None], bool] = {}
    i = 0
    while i < len(signals):
        signal = signals[i]
        i += 1
        match signal:
            case Raise():
                repeats = 1
                while (
                    i < len(signals)
                    and isinstance(nxt := signals[i], Raise)
                    and nxt.key == signal.key
                ):
                    repeats += 1
                    signal = nxt if nxt.ts > signal.ts else signal
                    i += 1
                where = (signal.venue.id, signal.device)
                if where not in silenced:
                    silenced[where] = _silenced(conn, signal)
                if silenced[where]:
                    continue
                raise_incident(conn, signal, policy, out, repeats)
                seen = open_since.get(signal.key)
                open_since[signal.key] = signal.ts if seen is None else max(seen, signal.ts)
            case Clear() if signal.key in open_since and _not_older(
                signal.ts, open_since[signal.key]
            ):
                out.resolved += resolve(conn, signal.key, signal.reason, not_after=signal.ts)
                del open_since[signal.key]
            case StartTimer() if signal.key not in timer_since:
                conn.execute(
                    """INSERT INTO timers (kind, key, due_at, data) VALUES (%s, %s, %s, %s)
                       ON CONFLICT (kind, key) DO NOTHING""",
                    (TIMER_RULE, signal.key, signal.due, Jsonb(_encode(signal.then))),
                )
                timer_since[signal.key] = signal.then.ts
            case CancelTimer() if signal.key in timer_since and _not_older(
                signal.ts, timer_since[signal.key]
            ):
                conn.execute(
                    """DELETE FROM timers WHERE kind = %s AND key = %s
                       AND (%s::timestamptz IS NULL OR (data->>'ts')::timestamptz <= %s)""",
                    (TIMER_RULE, signal.key, signal.ts, signal.ts),
                )
                del timer_since[signal.key]
    return out


def _not_older(ts: datetime | None, evidence: datetime | None) -> bool:
    """Whether a clear or cancel dated `ts` may act on what `evidence` (its time) raised."""
    return ts is None or evidence is None or ts >= evidence


def _existing(conn: Conn, query: str, keys: list[str]) -> dict[str, datetime | None]:
    if not keys:
        return {}
    rows = conn.execute(query, (keys,)).fetchall()
    return {str(k): t if isinstance(t, datetime) else None for k, t in rows}


def _silenced(conn: Conn, signal: Raise) -> bool:
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM maintenance_windows
                          WHERE starts <= now() AND now() < ends
                            AND (venue_id = %s OR device_id = %s))""",
        (signal.venue.id, signal.device),
    ).fetchone()
    return bool(row and row[0])


def raise_incident(
    conn: Conn, signal: Raise, policy: DeadlinePolicy, out: Applied, repeats: int = 1
) -> int:
    """Open the incident (and its task), or count repeats on the open one; its id."""
    venue = signal.venue
    row = conn.execute(
        """INSERT INTO incidents (dedup_key, rule, severity, title, venue_id, device_id, node_id,
                                  grid_id, path, detail, first_seen, last_seen, occurrences,
                                  opened_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::ltree, %s, %s, %s, %s, clock_timestamp())
           ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO UPDATE SET
               occurrences = incidents.occurrences + excluded.occurrences,
               last_seen = GREATEST(incidents.last_seen, excluded.last_seen),
               detail = incidents.detail || excluded.detail
           RETURNING id, (xmax = 0) AS inserted""",
        (
            signal.key, signal.rule.value, signal.severity.value, signal.title, venue.id,
            signal.device, signal.node, venue.grid_id, venue.path, Jsonb(signal.detail),
            signal.ts, signal.ts, repeats,
        ),
    ).fetchone()  # fmt: skip
    assert row is not None
    incident_id, inserted = int(str(row[0])), bool(row[1])
    if not inserted:  # counted on the incident (occurrences, last_seen), not one row per repeat
        return incident_id
    out.opened.append(signal.rule.value)
    conn.execute(
        "INSERT INTO incident_events (incident_id, kind, actor, data) VALUES (%s, 'opened', %s, %s)",
        (incident_id, SYSTEM, Jsonb({"ts": signal.ts.isoformat(), **signal.detail})),
    )
    task_id = tasks.create(
        conn, incident_id=incident_id, title=f"{signal.title} at {venue.name or venue.id}",
        severity=signal.severity, grid_id=venue.grid_id, path=venue.path, policy=policy,
    )  # fmt: skip
    out.tasks.append(task_id)
    conn.execute(
        "INSERT INTO incident_events (incident_id, kind, actor, data) VALUES (%s, 'task', %s, %s)",
        (incident_id, SYSTEM, Jsonb({"task_id": task_id})),
    )
    if signal.emergency_level is not None:
        _emergency_for_rule(conn, signal, incident_id, policy, out)
    log.info("incident opened id=%d key=%s severity=%s venue=%s task=%d",
             incident_id, signal.key, signal.severity, venue.id, task_id)  # fmt: skip
    return incident_id


def _emergency_for_rule(
    conn: Conn, signal: Raise, incident_id: int, policy: DeadlinePolicy, out: Applied
) -> None:
    """A rule asks for emergency mode above its venue: it starts at once only if an admin let
    the rule act alone; otherwise it is proposed, as a red incident a person confirms."""
    assert signal.emergency_level is not None
    venue = signal.venue
    reason = f"{signal.title} at {venue.name or venue.id} (incident {incident_id})"
    if signal.emergency_alone:
        emergency.start_for_rule(conn, venue.grid_id, signal.emergency_level, reason,
                                 incident_id, signal.rule.value, policy)  # fmt: skip
        return
    area = emergency.area_for_rule(conn, venue.grid_id, signal.emergency_level)
    if area is None:
        return
    proposal = Raise(
        Rule.EMERGENCY_PROPOSED, area, Severity.RED, venue, signal.ts, node=signal.node,
        detail={"area": area, "rule": signal.rule.value, "source_incident": incident_id,
                "reason": reason},
    )  # fmt: skip
    proposal_incident = raise_incident(conn, proposal, policy, out)
    conn.execute(
        """INSERT INTO emergency_proposals (territory_id, incident_id, source_id, rule, reason)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (territory_id) WHERE decided_at IS NULL
           DO NOTHING""",
        (area, proposal_incident, incident_id, signal.rule.value, reason),
    )
    log.warning("emergency proposed area=%s rule=%s incident=%d: a person must confirm it",
                area, signal.rule.value, proposal_incident)  # fmt: skip


def resolve(
    conn: Conn,
    dedup_key: str,
    reason: str,
    actor: str = SYSTEM,
    *,
    not_after: datetime | None = None,
) -> int:
    """Resolve the open incident with this key; 1 if there was one. With `not_after`, only an
    incident whose latest evidence is not newer than that."""
    row = conn.execute(
        """UPDATE incidents SET status = 'resolved', resolved_at = now(), resolved_by = %s
           WHERE dedup_key = %s AND status <> 'resolved'
             AND (%s::timestamptz IS NULL OR last_seen <= %s) RETURNING id""",
        (actor, dedup_key, not_after, not_after),
    ).fetchone()
    if row is None:
        return 0
    conn.execute(
        "INSERT INTO incident_events (incident_id, kind, actor, note) VALUES (%s, 'resolved', %s, %s)",
        (row[0], actor, reason),
    )
    task = conn.execute(
        "SELECT id FROM tasks WHERE incident_id = %s AND state <> 'closed'", (row[0],)
    ).fetchone()
    if task is not None:
        tasks.on_incident_resolved(conn, int(str(task[0])), reason)
    return 1


def _encode(signal: Raise) -> dict[str, Any]:
    """A Raise kept in a timer row, to be raised when the timer fires."""
    return {
        "rule": signal.rule.value, "subject": signal.subject, "severity": signal.severity.value,
        "venue": signal.venue.id, "ts": signal.ts.isoformat(), "device": signal.device,
        "node": signal.node, "detail": signal.detail, "emergency_level": signal.emergency_level,
        "emergency_alone": signal.emergency_alone,
    }  # fmt: skip


def decode(data: dict[str, Any], venues: dict[str, Any]) -> Raise | None:
    """The Raise kept by `_encode`; None if its venue no longer exists."""
    venue = venues.get(data["venue"])
    if venue is None:
        return None
    return Raise(
        Rule(data["rule"]), data["subject"], Severity(data["severity"]), venue,
        datetime.fromisoformat(data["ts"]), device=data["device"], node=data["node"],
        detail=data["detail"], emergency_level=data["emergency_level"],
        emergency_alone=bool(data.get("emergency_alone", False)),  # absent in older timers
    )  # fmt: skip

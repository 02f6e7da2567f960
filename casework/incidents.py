"""Applying rule signals: incidents opened, repeated and resolved, rule timers, and a task for
every new incident, all in the transaction that stores the messages behind them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from casework import emergency, tasks
from casework.rules import CancelTimer, Clear, Raise, Rule, Severity, Signal, StartTimer
from casework.sqljson import records

__all__ = ["Raise", "Signal", "apply", "decode", "raise_incident", "resolve"]
from casework.tasks import DeadlinePolicy

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


@dataclass(frozen=True, slots=True)
class _Open:
    """Raise (or count repeats on) the incident of `signal.key`."""

    signal: Raise
    repeats: int


@dataclass(frozen=True, slots=True)
class _Resolve:
    key: str
    reason: str
    not_after: datetime | None


_Op = _Open | _Resolve | StartTimer | CancelTimer


def apply(conn: Conn, signals: list[Signal], policy: DeadlinePolicy) -> Applied:
    """Apply a batch of signals with a handful of set-based statements, whatever their number.

    What exists is read first (open incidents, running timers, maintenance windows), then each
    key's signals are reduced, in their order, to what they do (open or repeat, resolve, start
    or cancel a timer). Those operations run in rounds, one per key in each: the first of every
    key together, then the second, and so on, each kind as one statement. Keys are independent,
    and within a key the order is kept; repeats of one incident in a batch are one write."""
    out = Applied()
    if not signals:
        return out
    # Rows are locked in key order, the same in every worker, so two batches touching the same
    # incidents cannot deadlock; the order of signals for one key is kept (the sort is stable).
    signals = sorted(signals, key=lambda s: s.key)
    incident_keys = sorted({s.key for s in signals if isinstance(s, Raise | Clear)})
    timer_keys_asked = sorted({s.key for s in signals if isinstance(s, StartTimer | CancelTimer)})
    # Running timers and open incidents with the time of their latest evidence: a clear or a
    # cancel older than that evidence is a late message and changes nothing. They are locked
    # here, timers then incidents, each in key order, as every worker and the leader lock
    # them: the rounds below then touch only rows already held, and new ones.
    timer_since = _existing(conn, "SELECT key, (data->>'ts')::timestamptz FROM timers"
                            " WHERE kind = 'rule' AND key = ANY(%s) ORDER BY key FOR UPDATE",
                            timer_keys_asked)  # fmt: skip
    open_since = _existing(conn, "SELECT dedup_key, last_seen FROM incidents"
                           " WHERE status <> 'resolved' AND dedup_key = ANY(%s)"
                           " ORDER BY dedup_key FOR NO KEY UPDATE", incident_keys)  # fmt: skip
    silenced = _silenced(conn, [s for s in signals if isinstance(s, Raise)])
    plans: dict[str, list[_Op]] = {}
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
                if (signal.venue.id, signal.device) in silenced:
                    continue
                plans.setdefault(signal.key, []).append(_Open(signal, repeats))
                seen = open_since.get(signal.key)
                open_since[signal.key] = signal.ts if seen is None else max(seen, signal.ts)
            case Clear() if signal.key in open_since and _not_older(
                signal.ts, open_since[signal.key]
            ):
                plans.setdefault(signal.key, []).append(
                    _Resolve(signal.key, signal.reason, signal.ts)
                )
                del open_since[signal.key]
            case StartTimer() if signal.key not in timer_since:
                plans.setdefault(signal.key, []).append(signal)
                timer_since[signal.key] = signal.then.ts
            case CancelTimer() if signal.key in timer_since and _not_older(
                signal.ts, timer_since[signal.key]
            ):
                plans.setdefault(signal.key, []).append(signal)
                del timer_since[signal.key]
    for r in range(max((len(ops) for ops in plans.values()), default=0)):
        ops = [p[r] for p in plans.values() if len(p) > r]  # in key order
        if opens := [op for op in ops if isinstance(op, _Open)]:
            open_many(conn, opens, policy, out)
        if resolves := [op for op in ops if isinstance(op, _Resolve)]:
            out.resolved += len(_resolve_many(conn, resolves))
        if starts := [op for op in ops if isinstance(op, StartTimer)]:
            conn.execute(
                """INSERT INTO timers (kind, key, due_at, data)
                   SELECT %s, k, d, j
                   FROM jsonb_to_recordset(%s::jsonb) AS u(k text, d timestamptz, j jsonb)
                   ON CONFLICT (kind, key) DO NOTHING""",
                (TIMER_RULE,
                 records({"k": t.key, "d": t.due, "j": _encode(t.then)} for t in starts)),
            )  # fmt: skip
        if cancels := [op for op in ops if isinstance(op, CancelTimer)]:
            conn.execute(
                """DELETE FROM timers t USING unnest(%s::text[], %s::timestamptz[]) AS u(k, ts)
                   WHERE t.kind = %s AND t.key = u.k
                     AND (u.ts IS NULL OR (t.data->>'ts')::timestamptz <= u.ts)""",
                ([c.key for c in cancels], [c.ts for c in cancels], TIMER_RULE),
            )
    return out


def _not_older(ts: datetime | None, evidence: datetime | None) -> bool:
    """Whether a clear or cancel dated `ts` may act on what `evidence` (its time) raised."""
    return ts is None or evidence is None or ts >= evidence


def _existing(conn: Conn, query: str, keys: list[str]) -> dict[str, datetime | None]:
    if not keys:
        return {}
    rows = conn.execute(query, (keys,)).fetchall()
    return {str(k): t if isinstance(t, datetime) else None for k, t in rows}


def _silenced(conn: Conn, raises: list[Raise]) -> set[tuple[str, str | None]]:
    """The (venue, device) pairs of these signals inside a maintenance window now."""
    pairs = sorted({(s.venue.id, s.device) for s in raises}, key=lambda p: (p[0], p[1] or ""))
    if not pairs:
        return set()
    rows = conn.execute(
        """SELECT u.v, u.d FROM unnest(%s::text[], %s::text[]) AS u(v, d)
           WHERE EXISTS (SELECT 1 FROM maintenance_windows
                         WHERE starts <= now() AND now() < ends
                           AND (venue_id = u.v OR device_id = u.d))""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ).fetchall()
    return {(str(v), d if d is None else str(d)) for v, d in rows}


def raise_incident(
    conn: Conn, signal: Raise, policy: DeadlinePolicy, out: Applied, repeats: int = 1
) -> int:
    """Open the incident (and its task), or count repeats on the open one; its id."""
    return open_many(conn, [_Open(signal, repeats)], policy, out)[signal.key]


def open_many(
    conn: Conn, opens: list[_Open], policy: DeadlinePolicy, out: Applied
) -> dict[str, int]:
    """Open incidents (each with its task), or count repeats on the open ones, in a few
    statements for all of them; the incident id of each key. Keys are distinct and sorted."""
    sigs = [o.signal for o in opens]
    rows = conn.execute(
        """INSERT INTO incidents (dedup_key, rule, severity, title, title_code, title_params,
                                  venue_id, device_id, node_id, grid_id, path, detail,
                                  first_seen, last_seen, occurrences, opened_at)
           SELECT k, r, s::severity, t, tc,
                  tp || CASE WHEN d IS NULL THEN '{}'::jsonb
                             ELSE jsonb_build_object('device', coalesce(nullif(dv.name, ''), d))
                        END,
                  v, d, n, g, p::ltree, j, ts, ts, c, clock_timestamp()
           FROM jsonb_to_recordset(%s::jsonb) AS u(o int, k text, r text, s text, t text,
                tc text, tp jsonb, v text, d text, n text, g text, p text, j jsonb,
                ts timestamptz, c int)
           LEFT JOIN devices dv ON dv.id = u.d
           ORDER BY o
           ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO UPDATE SET
               occurrences = incidents.occurrences + excluded.occurrences,
               last_seen = GREATEST(incidents.last_seen, excluded.last_seen),
               detail = incidents.detail || excluded.detail
           RETURNING dedup_key, id, (xmax = 0) AS inserted""",
        (
            records(
                {"o": i, "k": s.key, "r": s.rule.value, "s": s.severity.value,
                 "t": s.title.render("en"), "tc": s.title.code, "tp": s.title.params,
                 "v": s.venue.id, "d": s.device, "n": s.node, "g": s.venue.grid_id,
                 "p": s.venue.path, "j": s.detail, "ts": s.ts, "c": o.repeats}
                for i, (s, o) in enumerate(zip(sigs, opens, strict=True))
            ),
        ),
    ).fetchall()  # fmt: skip
    ids = {str(k): int(str(i)) for k, i, _ in rows}
    inserted = {str(k) for k, _, ins in rows if ins}
    new = [s for s in sigs if s.key in inserted]
    if not new:  # counted on the open incidents (occurrences, last_seen), not a row per repeat
        return ids
    new_ids = [ids[s.key] for s in new]
    task_ids = tasks.create_many(
        conn,
        [
            tasks.NewTask(ids[s.key], s.title.for_task(), s.severity, s.venue.grid_id,
                          s.venue.path)
            for s in new
        ],
        policy,
    )  # fmt: skip
    events = [{"i": i, "k": "opened", "j": {"ts": s.ts.isoformat(), **s.detail}}
              for s, i in zip(new, new_ids, strict=True)]  # fmt: skip
    events += [{"i": i, "k": "task", "j": {"task_id": task_ids[i]}} for i in new_ids]
    conn.execute(
        """INSERT INTO incident_events (incident_id, kind, actor, data)
           SELECT i, k, %s, j FROM jsonb_to_recordset(%s::jsonb) AS u(i bigint, k text, j jsonb)""",
        (SYSTEM, records(events)),
    )
    for s, incident_id in zip(new, new_ids, strict=True):
        out.opened.append(s.rule.value)
        out.tasks.append(task_ids[incident_id])
        log.info("incident opened id=%d key=%s severity=%s venue=%s task=%d",
                 incident_id, s.key, s.severity, s.venue.id, task_ids[incident_id])  # fmt: skip
    for s in new:
        if s.emergency_level is not None:
            _emergency_for_rule(conn, s, ids[s.key], policy, out)
    return ids


def _emergency_for_rule(
    conn: Conn, signal: Raise, incident_id: int, policy: DeadlinePolicy, out: Applied
) -> None:
    """A rule asks for emergency mode above its venue: it starts at once only if an admin let
    the rule act alone; otherwise it is proposed, as a red incident a person confirms."""
    assert signal.emergency_level is not None
    venue = signal.venue
    reason = signal.title.reason(incident_id)
    if signal.emergency_alone:
        emergency.start_for_rule(conn, venue.grid_id, signal.emergency_level, reason,
                                 incident_id, signal.rule.value, policy)  # fmt: skip
        return
    area = emergency.area_for_rule(conn, venue.grid_id, signal.emergency_level)
    if area is None:
        return
    named = conn.execute("SELECT name FROM territory WHERE id = %s", (area,)).fetchone()
    proposal = Raise(
        Rule.EMERGENCY_PROPOSED, area, Severity.RED, venue, signal.ts, node=signal.node,
        detail={"area": area, "area_name": str(named[0]) if named else area,
                "rule": signal.rule.value, "source_incident": incident_id, "reason": reason},
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
    return len(_resolve_many(conn, [_Resolve(dedup_key, reason, not_after)], actor))


def _resolve_many(conn: Conn, resolves: list[_Resolve], actor: str = SYSTEM) -> list[int]:
    """Resolve the open incidents of these (distinct) keys, each only if its latest evidence
    is not newer than its `not_after`; their tasks follow. The ids resolved."""
    rows = conn.execute(
        """WITH done AS (
               UPDATE incidents i SET status = 'resolved', resolved_at = now(), resolved_by = %s
               FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS u(k, why, na)
               WHERE i.dedup_key = u.k AND i.status <> 'resolved'
                 AND (u.na IS NULL OR i.last_seen <= u.na)
               RETURNING i.id, u.why),
           logged AS (
               INSERT INTO incident_events (incident_id, kind, actor, note)
               SELECT id, 'resolved', %s, why FROM done)
           SELECT id, why FROM done ORDER BY id""",
        (actor, [r.key for r in resolves], [r.reason for r in resolves],
         [r.not_after for r in resolves], actor),
    ).fetchall()  # fmt: skip
    if rows:
        tasks.on_incidents_resolved(conn, {int(str(i)): str(why) for i, why in rows}, actor)
    return [int(str(i)) for i, _ in rows]


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

"""The leader's work on commands: sign and publish queued ones, re-publish unanswered ones that
must reach their device, expire the others, and raise an incident for a door command that could
not be delivered in time (resolved when the device answers).

A must-deliver command keeps its id on every attempt, with a fresh `ts` and a short deadline:
the edge executes an id once, so an attempt that crosses an answer does nothing twice.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import psycopg

from casework import incidents
from casework.emergency import COMMANDS_CHANNEL
from casework.rules import Clear, Rule, RuleBook
from casework.tasks import DeadlinePolicy
from gateway import codec, topics
from gateway import messages as m
from gateway.signing import Signer
from ingest import metrics
from ingest.groups import within
from ingest.registry import Registry

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]


class Publish(Protocol):
    """Publish at QoS 1 on the worker's broker account (retained: a node's configuration)."""

    def __call__(
        self, topic: str, payload: bytes, *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo: ...


# Each attempt of a must-deliver command is valid this long: wider than the clock skew a node
# accepts (edge.trust.MAX_SKEW), so a node whose clock is a minute off still executes it.
ATTEMPT_S = 150
RETRY_FIRST_S = 5.0  # then 10, 20, 40, 60, 60, ... (and at once when the node is born again)
RETRY_MAX_S = 60.0
RESULT_GRACE_S = 10  # a command's result may arrive a little after its deadline
DEFAULT_ALARM_S = 300.0

_UNDELIVERED = (
    "c.must_deliver AND c.superseded_by IS NULL AND c.state IN ('queued', 'sent', 'expired')"
)
# A must-deliver command its door refused or could not carry out (a jammed lock, a node without
# the platform's key): retrying does not help, a person must go. Trouble until a newer
# must-deliver command for the door replaces it.
_REFUSED = "c.must_deliver AND c.superseded_by IS NULL AND c.state IN ('failed', 'rejected')"


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """How the leader treats commands that must reach their device."""

    alarm_after_s: float = DEFAULT_ALARM_S  # unanswered this long: an incident for the venue


def retry_after(attempts: int) -> float:
    """Seconds before attempt `attempts + 1` when nothing has been heard."""
    return min(RETRY_FIRST_S * 2.0 ** max(attempts - 1, 0), RETRY_MAX_S)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def payload(
    cid: object,
    device: str,
    action: object,
    ts: datetime,
    deadline: datetime,
    signer: Signer | None,
) -> bytes:
    """The signed wire payload of one attempt of a command."""
    command = m.Command.model_validate_json(
        json.dumps(
            {"type": m.MessageType.COMMAND, "v": m.CONTRACT_VERSION, "id": str(cid), "ts": ts,
             "device": device, "deadline": deadline, "action": action},
            default=_iso,
        )
    )  # fmt: skip
    obj: dict[str, Any] = codec.to_wire(command)
    if signer is not None:
        obj = signer.sign(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


_PUBLISH_BATCH = 500
_PUBLISH_BATCHES = 20  # per tick at most: other duties wait no longer than 10,000 publishes


def publish(
    conn: Conn, send: Publish, signer: Signer | None, *, areas: list[str] | None = None
) -> None:
    """Publish queued commands, and attempts of must-deliver ones that are due (their retry
    time has come, or their node has been born again since the last attempt): all of them now,
    in batches, so a broadcast to a thousand speakers does not wait for the next tick.
    `areas`: the ingest group's territory paths (ingest.groups.Scope.param), whose nodes'
    commands go out on this broker; None: all."""
    for _ in range(_PUBLISH_BATCHES):
        if _publish_batch(conn, send, signer, _PUBLISH_BATCH, areas) < _PUBLISH_BATCH:
            return  # that was all (or the broker is not taking them: the next tick tries)


def _publish_batch(
    conn: Conn, send: Publish, signer: Signer | None, limit: int, areas: list[str] | None
) -> int:
    """Publish up to `limit` due commands and mark those the broker took as sent, in one
    statement; how many were marked (fewer than found when some could not be published)."""
    rows = conn.execute(
        f"""SELECT c.id, c.device_id, c.action, c.created_at, c.deadline, c.must_deliver,
                  c.attempts, n.id, n.venue_id, now()
           FROM commands c JOIN devices d ON d.id = c.device_id
           JOIN edge_nodes n ON n.id = d.node_id
           JOIN venues v ON v.id = n.venue_id JOIN territory t ON t.id = v.grid_id
           LEFT JOIN node_presence p ON p.node_id = n.id
           WHERE (c.state = 'queued'
                  OR ({_UNDELIVERED} AND c.attempts > 0
                      AND (c.retry_at <= now() OR (p.online AND p.updated_at > c.sent_at))))
             AND {within("t.path")}
           ORDER BY c.created_at LIMIT %s""",
        (areas, limit),
    ).fetchall()
    sent: list[tuple[object, int, float, mqtt.MQTTMessageInfo]] = []
    deadlines: dict[object, datetime] = {}
    for cid, device, action, created, deadline, must, attempts, node, site, now in rows:
        assert isinstance(created, datetime) and isinstance(deadline, datetime)
        assert isinstance(now, datetime)
        ts, valid_until = created, deadline
        if must:  # each attempt is issued now and valid a short while
            ts = now
            valid_until = deadlines[cid] = now + timedelta(seconds=ATTEMPT_S)
        topic = topics.command(str(site), str(node), str(device))
        info = send(topic, payload(cid, str(device), action, ts, valid_until, signer))
        sent.append((cid, int(str(attempts)), retry_after(int(str(attempts)) + 1), info))
    published: list[object] = []
    pauses: list[float] = []
    retried = 0
    for cid, attempts_before, pause, info in sent:
        try:
            info.wait_for_publish(5)  # all are in flight already: this waits for the slowest
        except (RuntimeError, ValueError) as exc:  # not connected, or the publish failed
            log.warning("command not published yet id=%s: %s", cid, exc)
            continue
        if not info.is_published():
            continue
        published.append(cid)
        pauses.append(pause)
        retried += attempts_before > 0
    if not published:
        return 0
    conn.execute(
        """UPDATE commands c SET state = 'sent', sent_at = now(), attempts = c.attempts + 1,
               deadline = COALESCE(u.deadline, c.deadline),
               retry_at = CASE WHEN c.must_deliver THEN now() + make_interval(secs => u.pause) END
           FROM unnest(%s::uuid[], %s::timestamptz[], %s::float8[]) AS u(id, deadline, pause)
           WHERE c.id = u.id AND c.superseded_by IS NULL
             AND (c.state = 'queued' OR (c.must_deliver AND c.state IN ('sent', 'expired')))""",
        (published, [deadlines.get(cid) for cid in published], pauses),
    )
    metrics.COMMANDS_SENT.inc(len(published))
    if retried:
        metrics.COMMANDS_RETRIED.inc(retried)
    return len(published)


class Publisher:
    """Publishes commands on a connection and a thread of its own while its leader leads: a
    broadcast or a door command never waits behind the leader's other work (due timers in a
    storm, a backlog of notifications: 3.4 s before the first of 1,000 speakers was sent, with
    20,000 incidents' notifications being routed). Woken by the queue's notice, and every
    `poll_s` for retries that fall due."""

    def __init__(
        self,
        dsn: str,
        send: Publish,
        signer: Signer | None,
        areas: Callable[[], list[str] | None],
        name: str,
        poll_s: float = 0.25,
    ) -> None:
        self.dsn, self.send, self.signer, self.areas = dsn, send, signer, areas
        self.name, self.poll_s = name, poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start publishing (on taking the lead); a no-op while it runs."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="command-publisher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing (on stepping down): the current round is the last."""
        self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True,
                                     application_name=f"gridwatch-commands-{self.name}") as conn:  # fmt: skip
                    # One publisher per territory at a time, whichever process: a publisher
                    # still finishing its round (its leader stepped down, or lost the lead to
                    # another worker) holds this until its connection closes.
                    scope = "gridwatch-commands:" + ",".join(sorted(self.areas() or ["*"]))
                    while not stop.is_set() and not _try_lock(conn, scope):
                        stop.wait(0.2)
                    conn.execute(f"LISTEN {COMMANDS_CHANNEL}")
                    while not stop.is_set():
                        publish(conn, self.send, self.signer, areas=self.areas())
                        for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                            pass
                        for _ in conn.notifies(timeout=0):
                            pass  # one round publishes what all of them announced
            except psycopg.Error as exc:
                log.warning("command publisher lost its connection, retrying: %s",
                            str(exc).strip())  # fmt: skip
                stop.wait(2.0)


def _try_lock(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()
    return bool(row and row[0])


def expire(conn: Conn) -> None:
    """Commands that may be dropped and had no result by their deadline are expired; a door's is
    an outcome for the audit log, beside who asked for it."""
    with conn.transaction():
        gone = conn.execute(
            """UPDATE commands SET state = 'expired', detail = 'no result by the deadline',
                   result_at = now()
               WHERE state IN ('queued', 'sent') AND deadline < now() - make_interval(secs => %s)
                 AND NOT (must_deliver AND superseded_by IS NULL)
               RETURNING id""",
            (RESULT_GRACE_S,),
        ).fetchall()
        if gone:
            audit_door_outcomes(conn, [r[0] for r in gone])  # type: ignore[misc]
            log.warning("commands expired without a result count=%d", len(gone))


def audit_door_outcomes(conn: Conn, ids: Sequence[uuid.UUID]) -> None:
    """What became of door commands (their state just set: done, failed, rejected, expired)
    goes into the audit log beside who asked for them, with the action and its duration."""
    if not ids:
        return
    conn.execute(
        """INSERT INTO audit_log (person_id, action, target, detail, client)
           SELECT 'system', 'door.outcome', device_id,
                  jsonb_build_object('command', id, 'issued_by', issued_by, 'reason', reason,
                                     'action', action, 'status', state::text, 'detail', detail),
                  'ingest'
           FROM commands WHERE id = ANY(%s) AND action->>'action' LIKE 'door.%%' ORDER BY id""",
        (list(ids),),
    )


def alarm(
    conn: Conn,
    registry: Registry,
    book: RuleBook,
    policy: DeadlinePolicy,
    limits: CommandPolicy,
    *,
    areas: list[str] | None = None,
) -> None:
    """An incident for each device with a must-deliver command unanswered past the limit, or
    refused or failed by its door (at once), and the resolution of those whose door has done what
    was asked (or whose command a newer must-deliver one replaced). `areas`: as for publish."""
    rows = conn.execute(
        f"""SELECT c.id, c.device_id, d.node_id, c.action->>'action', c.created_at, c.attempts,
                  c.state::text, c.detail
           FROM commands c JOIN devices d ON d.id = c.device_id
           JOIN edge_nodes n ON n.id = d.node_id
           JOIN venues v ON v.id = n.venue_id JOIN territory t ON t.id = v.grid_id
           WHERE c.alarmed_at IS NULL
             AND ({_REFUSED}
                  OR ({_UNDELIVERED} AND c.created_at < now() - make_interval(secs => %s)))
             AND {within("t.path")}
           ORDER BY c.created_at LIMIT 100""",
        (limits.alarm_after_s, areas),
    ).fetchall()
    signals: list[incidents.Signal] = []
    alarmed: list[uuid.UUID] = []
    for cid, device, node, action, created, attempts, state, why in rows:
        venue = registry.venue_of_node(str(node))
        assert isinstance(cid, uuid.UUID) and isinstance(created, datetime)
        alarmed.append(cid)
        if venue is None:
            continue
        s = book.settings(Rule.COMMAND_UNDELIVERED, venue)
        if not s.enabled:
            continue
        signals.append(
            incidents.Raise(
                Rule.COMMAND_UNDELIVERED, str(device), s.severity, venue, created,
                device=str(device), node=str(node),
                detail={"command": str(cid), "action": str(action), "attempts": attempts,
                        "since": created.isoformat(), "state": state, "why": why},
            )
        )  # fmt: skip
    answered = conn.execute(
        f"""SELECT i.dedup_key FROM incidents i
           WHERE i.rule = %s AND i.status <> 'resolved' AND {within("i.path")}
             AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.device_id = i.device_id
                             AND ({_UNDELIVERED} OR {_REFUSED}))""",
        (Rule.COMMAND_UNDELIVERED.value, areas),
    ).fetchall()
    if not (alarmed or answered):
        return
    with conn.transaction():
        if alarmed:
            conn.execute("UPDATE commands SET alarmed_at = now() WHERE id = ANY(%s)", (alarmed,))
            metrics.COMMANDS_UNDELIVERED.inc(len(alarmed))
            log.error("door commands undelivered past %.0fs count=%d",
                      limits.alarm_after_s, len(alarmed))  # fmt: skip
        signals += [Clear(str(k), "the door did what was asked") for (k,) in answered]
        incidents.apply(conn, signals, policy)

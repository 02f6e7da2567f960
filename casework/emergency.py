"""Emergency mode for a subtree ("normal to emergency"): tighter deadlines, a broadcast to every
speaker in it, its shelters' doors unlocked; all reverted when it ends, all recorded."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from casework import tasks
from casework.refused import Refused
from casework.tasks import DeadlinePolicy
from gateway import messages as m

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
COMMANDS_CHANNEL = "gridwatch_commands"
SYSTEM = "system"
DEFAULT_MESSAGE = (
    "Emergency in this area. Please follow the instructions of staff and go to the nearest shelter."
)
_COMMAND_DEADLINE = timedelta(seconds=60)
MAX_COMMAND_VALIDITY = timedelta(seconds=300)  # as edge/trust.py's MAX_VALIDITY


class EmergencyError(Refused):
    """An emergency that cannot be started or ended; the message says why."""


def must_deliver(action: BaseModel, emergency_id: int | None) -> bool:
    """Whether a command is retried until its device answers: locks and lockdowns, and an
    emergency's shelter unlocks; never a momentary unlock, which must not happen late."""
    if isinstance(action, m.DoorLock | m.DoorLockdown):
        return True
    return isinstance(action, m.DoorUnlock) and emergency_id is not None


def queue_command(
    conn: Conn,
    device_id: str,
    action: BaseModel,
    *,
    issued_by: str,
    reason: str = "",
    emergency_id: int | None = None,
    deadline: timedelta = _COMMAND_DEADLINE,
) -> uuid.UUID:
    """Queue a command for a device; the ingest leader publishes it and tracks its result. A
    door command supersedes the device's older unanswered door commands."""
    if not timedelta(0) < deadline <= MAX_COMMAND_VALIDITY:
        raise ValueError(
            f"a command's deadline must be within {MAX_COMMAND_VALIDITY.total_seconds():.0f} s"
            f" of now (the edge refuses longer ones), not {deadline.total_seconds():.0f} s"
        )
    command_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO commands (id, device_id, action, issued_by, reason, emergency_id, deadline,
                                 must_deliver)
           VALUES (%s, %s, %s, %s, %s, %s, now() + %s, %s)""",
        (command_id, device_id, Jsonb(action.model_dump(mode="json")), issued_by, reason,
         emergency_id, deadline, must_deliver(action, emergency_id)),
    )  # fmt: skip
    if isinstance(action, m.DoorUnlock | m.DoorLock | m.DoorLockdown):
        _supersede(conn, device_id, command_id, must_deliver(action, emergency_id))
    conn.execute(f"NOTIFY {COMMANDS_CHANNEL}")
    return command_id


def queue_commands(
    conn: Conn,
    device_ids: list[str],
    action: BaseModel,
    *,
    issued_by: str,
    reason: str = "",
    emergency_id: int | None = None,
    deadline: timedelta = _COMMAND_DEADLINE,
) -> list[uuid.UUID]:
    """Queue one command for each of many devices, in one statement and with one notice to the
    leader (a broadcast to a city's speakers); ids in the order of `device_ids`. Door commands
    each supersede their door's older ones, as `queue_command` does."""
    if isinstance(action, m.DoorUnlock | m.DoorLock | m.DoorLockdown):
        return [queue_command(conn, d, action, issued_by=issued_by, reason=reason,
                              emergency_id=emergency_id, deadline=deadline)
                for d in device_ids]  # fmt: skip
    if not timedelta(0) < deadline <= MAX_COMMAND_VALIDITY:
        raise ValueError(
            f"a command's deadline must be within {MAX_COMMAND_VALIDITY.total_seconds():.0f} s"
            f" of now (the edge refuses longer ones), not {deadline.total_seconds():.0f} s"
        )
    ids = [uuid.uuid4() for _ in device_ids]
    if not ids:
        return ids
    conn.execute(
        """INSERT INTO commands (id, device_id, action, issued_by, reason, emergency_id, deadline,
                                 must_deliver)
           SELECT u.id, u.device_id, %s, %s, %s, %s, now() + %s, %s
           FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS u(id, device_id, n)
           ORDER BY u.n""",
        (Jsonb(action.model_dump(mode="json")), issued_by, reason, emergency_id, deadline,
         must_deliver(action, emergency_id), ids, device_ids),
    )  # fmt: skip
    conn.execute(f"NOTIFY {COMMANDS_CHANNEL}")
    return ids


def _supersede(conn: Conn, device_id: str, newer: uuid.UUID, must: bool) -> None:
    """Older unanswered (or refused) door commands of the device are no longer sent, retried or
    alarmed about. Only a command that must be delivered replaces one that must: a momentary
    unlock that may expire unheard must not cancel the lock that secures a shelter."""
    conn.execute(
        """UPDATE commands SET superseded_by = %(newer)s,
               state = CASE WHEN state = 'queued' THEN 'expired' ELSE state END,
               detail = CASE WHEN state = 'queued' THEN 'superseded by ' || %(newer)s::text
                             ELSE detail END,
               result_at = CASE WHEN state = 'queued' THEN now() ELSE result_at END
           WHERE device_id = %(device)s AND id <> %(newer)s AND superseded_by IS NULL
             AND (%(must)s OR NOT must_deliver)
             AND state IN ('queued', 'sent', 'expired', 'failed', 'rejected')
             AND action->>'action' LIKE 'door.%%'""",
        {"newer": newer, "device": device_id, "must": must},
    )


def devices(
    conn: Conn,
    path: str,
    kind: str,
    *,
    venue: str | None = None,
    shelters_only: bool = False,
    uncovered: bool = False,
) -> list[str]:
    """Devices of a kind under `path` (of one venue, if given); with `uncovered`, only those no
    emergency still covers."""
    rows = conn.execute(
        """SELECT d.id FROM devices d
           JOIN edge_nodes n ON n.id = d.node_id
           JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id
           WHERE d.kind = %s AND t.path <@ %s::ltree AND (v.is_shelter OR NOT %s)
             AND (%s::text IS NULL OR v.id = %s)
             AND NOT (%s AND EXISTS (SELECT 1 FROM emergencies e
                                     WHERE e.ended_at IS NULL AND e.path @> t.path))
           ORDER BY d.id""",
        (kind, path, shelters_only, venue, venue, uncovered),
    ).fetchall()
    return [str(r[0]) for r in rows]


def start(
    conn: Conn,
    territory_id: str,
    *,
    actor: str,
    reason: str,
    message: str = DEFAULT_MESSAGE,
    policy: DeadlinePolicy | None = None,
) -> int:
    """Switch a subtree to emergency mode; its id."""
    row = conn.execute(
        "SELECT path::text, name FROM territory WHERE id = %s", (territory_id,)
    ).fetchone()
    if row is None:
        raise EmergencyError(
            f"no territory {territory_id!r}", "emergency.no_area", area=territory_id
        )
    path, name = str(row[0]), str(row[1] or territory_id)
    covering = conn.execute(
        """SELECT e.territory_id, t.name FROM emergencies e JOIN territory t ON t.id = e.territory_id
           WHERE e.ended_at IS NULL AND e.path @> %s::ltree""",
        (path,),
    ).fetchone()
    if covering is not None:
        raise EmergencyError(f"{territory_id} is already in an emergency (of {covering[0]})",
                             "emergency.already", area=name,
                             of=str(covering[1] or covering[0]))  # fmt: skip
    got = conn.execute(
        """INSERT INTO emergencies (territory_id, path, reason, message, started_by)
           VALUES (%s, %s::ltree, %s, %s, %s) RETURNING id""",
        (territory_id, path, reason, message, actor),
    ).fetchone()
    assert got is not None
    emergency_id = int(str(got[0]))
    play = m.SpeakerPlay(text=message, priority=m.SpeakerPriority.EMERGENCY, repeat=3)
    speakers = devices(conn, path, "speaker")
    doors = devices(conn, path, "door", shelters_only=True)
    queue_commands(conn, speakers, play, issued_by=actor, reason="emergency broadcast",
                   emergency_id=emergency_id)  # fmt: skip
    for device in doors:
        queue_command(conn, device, m.DoorUnlock(duration_s=None), issued_by=actor,
                      reason="emergency: shelter open", emergency_id=emergency_id)  # fmt: skip
    _tighten_deadlines(conn, path, policy or DeadlinePolicy())
    conn.execute(
        "INSERT INTO notifications (territory_id, kind, message) VALUES (%s, 'emergency', %s)",
        (territory_id, f"Emergency mode on: {reason}"),
    )
    log.info("emergency started id=%d area=%s speakers=%d shelter_doors=%d by=%s",
             emergency_id, territory_id, len(speakers), len(doors), actor)  # fmt: skip
    return emergency_id


def end(conn: Conn, territory_id: str, *, actor: str) -> int:
    """Return a subtree to normal: speakers stop, shelter doors lock again; the emergency's id."""
    row = conn.execute(
        """UPDATE emergencies SET ended_at = now(), ended_by = %s
           WHERE territory_id = %s AND ended_at IS NULL RETURNING id, path::text""",
        (actor, territory_id),
    ).fetchone()
    if row is None:
        named = conn.execute("SELECT name FROM territory WHERE id = %s", (territory_id,)).fetchone()
        raise EmergencyError(f"{territory_id} is not in an emergency", "emergency.none",
                             area=str(named[0]) if named else territory_id)  # fmt: skip
    emergency_id, path = int(str(row[0])), str(row[1])
    # What a wider emergency still covers stays as it is.
    queue_commands(conn, devices(conn, path, "speaker", uncovered=True), m.SpeakerStop(),
                   issued_by=actor, reason="emergency over", emergency_id=emergency_id)  # fmt: skip
    for device in devices(conn, path, "door", shelters_only=True, uncovered=True):
        queue_command(conn, device, m.DoorLock(), issued_by=actor,
                      reason="emergency over: shelter back to normal", emergency_id=emergency_id)  # fmt: skip
    conn.execute(
        "INSERT INTO notifications (territory_id, kind, message) VALUES (%s, 'emergency', %s)",
        (territory_id, "Emergency mode off"),
    )
    log.info("emergency ended id=%d area=%s by=%s", emergency_id, territory_id, actor)
    return emergency_id


def area_for_rule(conn: Conn, grid_id: str, level: str) -> str | None:
    """The ancestor of a grid at `level` a rule asks emergency mode for; None if there is no
    such level, or an emergency already covers it."""
    row = conn.execute(
        """SELECT a.id, EXISTS (SELECT 1 FROM emergencies e
                                WHERE e.ended_at IS NULL AND e.path @> a.path)
           FROM territory g JOIN territory a ON a.path @> g.path
           WHERE g.id = %s AND a.level = %s""",
        (grid_id, level),
    ).fetchone()
    if row is None:
        log.error("rule asks for an emergency at level %s above %s: no such level", level, grid_id)
        return None
    return None if row[1] else str(row[0])


def start_for_rule(
    conn: Conn,
    grid_id: str,
    level: str,
    reason: str,
    incident_id: int,
    rule: str,
    policy: DeadlinePolicy,
) -> None:
    """A rule an admin let act alone starts emergency mode at `level` above a grid, audited as
    the rule acting alone; nothing if one already covers it."""
    area = area_for_rule(conn, grid_id, level)
    if area is None:
        return
    try:
        with conn.transaction():
            eid = start(conn, area, actor=SYSTEM, reason=reason, policy=policy)
            conn.execute(
                """INSERT INTO audit_log (person_id, action, target, detail)
                   VALUES (%s, 'emergency.start', %s, %s)""",
                (SYSTEM, area, Jsonb({"id": eid, "reason": reason, "rule": rule,
                                      "incident": incident_id, "acts_alone": True})),
            )  # fmt: skip
    except (EmergencyError, psycopg.errors.UniqueViolation):
        pass  # already in an emergency (perhaps started by another worker just now)


def _tighten_deadlines(conn: Conn, path: str, policy: DeadlinePolicy) -> None:
    """Open tasks in the area get emergency deadlines from now on (never a later one)."""
    rows = conn.execute(
        "UPDATE tasks SET emergency = true WHERE path <@ %s::ltree AND state <> 'closed' RETURNING id",
        (path,),
    ).fetchall()
    for (task_id,) in rows:
        tasks.retime_for_emergency(conn, int(str(task_id)), policy)

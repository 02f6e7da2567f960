"""Grid tasks: the closed loop from an incident to a checked, closed case.

    reported ─dispatch→ dispatched ─accept→ accepted ─start→ handling ─feedback→ feedback
        ─check→ checking ─approve→ closed          (reject → rework ─start→ handling …)
    hand_back: dispatched | accepted | handling | rework → returned ─dispatch→ dispatched
    reassign (dispatcher, with a reason): dispatched | accepted → dispatched, to another candidate
    suspend / resume (dispatcher), extend (dispatcher: more time for the current stage)

Every action is a row in task_events: who, when, why. Each stage has a deadline by severity;
at 80% the task is flagged, at 100% it escalates one level up the territory tree and that level
is notified; it keeps going up while nobody acts. Deadline timers are rows in `timers`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from casework.refused import Refused
from casework.rules import Severity
from casework.sqljson import records
from casework.titles import Title

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
SYSTEM = "system"
TIMER_WARN = "task_warn"
TIMER_DEADLINE = "task_deadline"


class State(StrEnum):
    REPORTED = "reported"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    HANDLING = "handling"
    FEEDBACK = "feedback"
    CHECKING = "checking"
    CLOSED = "closed"
    RETURNED = "returned"
    REWORK = "rework"
    SUSPENDED = "suspended"


class Action(StrEnum):
    DISPATCH = "dispatch"
    ACCEPT = "accept"
    START = "start"
    FEEDBACK = "feedback"
    CHECK = "check"
    APPROVE = "approve"
    REJECT = "reject"
    HAND_BACK = "hand_back"
    SUSPEND = "suspend"
    RESUME = "resume"
    EXTEND = "extend"
    REASSIGN = "reassign"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DISPATCHER = "dispatcher"
    GRID_WORKER = "grid_worker"
    DEPARTMENT = "department"
    VIEWER = "viewer"


class Stage(StrEnum):
    ACCEPT = "accept"  # until someone accepts it
    HANDLE = "handle"  # until the feedback is in


_STAGE = {
    State.REPORTED: Stage.ACCEPT,
    State.DISPATCHED: Stage.ACCEPT,
    State.RETURNED: Stage.ACCEPT,
    State.ACCEPTED: Stage.HANDLE,
    State.HANDLING: Stage.HANDLE,
    State.REWORK: Stage.HANDLE,
}
# Who runs the work of an area: dispatch and check tasks, change incidents, command devices.
SUPERVISORS = frozenset({Role.ADMIN, Role.OPERATOR, Role.DISPATCHER})
_WORKERS = frozenset({Role.GRID_WORKER, Role.DEPARTMENT})
_ACTIVE = frozenset(State) - {State.CLOSED, State.SUSPENDED}


@dataclass(frozen=True, slots=True)
class Move:
    """An action: the states it starts from, the state it leads to, who may take it."""

    sources: frozenset[State]
    target: State | None  # None: stays (extend), or back to where it was (resume)
    roles: frozenset[Role]
    assignee_only: bool = False  # a worker acts only on tasks assigned to them


MOVES: dict[Action, Move] = {
    Action.DISPATCH: Move(frozenset({State.REPORTED, State.RETURNED}), State.DISPATCHED, SUPERVISORS),
    Action.ACCEPT: Move(frozenset({State.DISPATCHED}), State.ACCEPTED, _WORKERS, assignee_only=True),
    Action.START: Move(frozenset({State.ACCEPTED, State.REWORK}), State.HANDLING, _WORKERS, assignee_only=True),
    Action.FEEDBACK: Move(frozenset({State.HANDLING}), State.FEEDBACK, _WORKERS, assignee_only=True),
    Action.CHECK: Move(frozenset({State.FEEDBACK}), State.CHECKING, SUPERVISORS),
    Action.APPROVE: Move(frozenset({State.CHECKING}), State.CLOSED, SUPERVISORS),
    Action.REJECT: Move(frozenset({State.CHECKING}), State.REWORK, SUPERVISORS),
    Action.HAND_BACK: Move(
        frozenset({State.DISPATCHED, State.ACCEPTED, State.HANDLING, State.REWORK}),
        State.RETURNED, _WORKERS, assignee_only=True,
    ),
    Action.SUSPEND: Move(_ACTIVE, State.SUSPENDED, SUPERVISORS),
    Action.RESUME: Move(frozenset({State.SUSPENDED}), None, SUPERVISORS),
    Action.EXTEND: Move(frozenset(_STAGE), None, SUPERVISORS),
    Action.REASSIGN: Move(frozenset({State.DISPATCHED, State.ACCEPTED}), State.DISPATCHED, SUPERVISORS),
}  # fmt: skip


class DeadlinePolicy(BaseModel):
    """Seconds allowed per severity and stage; tighter in emergency mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    red_accept_s: float = Field(default=300, gt=0, description="red: accepted within")
    red_handle_s: float = Field(default=3600, gt=0, description="red: handled within")
    yellow_accept_s: float = Field(default=1800, gt=0, description="yellow: accepted within")
    yellow_handle_s: float = Field(default=86_400, gt=0, description="yellow: handled within")
    green_accept_s: float = Field(default=14_400, gt=0, description="green: accepted within")
    green_handle_s: float = Field(default=259_200, gt=0, description="green: handled within")
    warn_at: float = Field(default=0.8, gt=0, lt=1, description="share of a deadline that flags")
    emergency_factor: float = Field(
        default=0.5, gt=0, le=1, description="deadlines are multiplied by this in an emergency"
    )

    def seconds(self, severity: Severity, stage: Stage, emergency: bool) -> float:
        base: float = getattr(self, f"{severity.value}_{stage.value}_s")
        return base * (self.emergency_factor if emergency else 1.0)


class TaskError(Refused):
    """An action that is not allowed; the message says why."""


class TaskForbidden(TaskError):
    """An action that is not this person's to take (their role, or someone else's task)."""


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    role: Role
    scope_path: str


def _name(conn: Conn, person_id: str) -> str:
    """A person's name for a message a person reads (their id if they have none)."""
    row = conn.execute("SELECT name FROM people WHERE id = %s", (person_id,)).fetchone()
    return str(row[0]) if row and row[0] else person_id


def person(conn: Conn, person_id: str) -> Person:
    row = conn.execute(
        """SELECT p.id, p.role::text, t.path::text FROM people p JOIN territory t ON t.id = p.scope_id
           WHERE p.id = %s AND p.active""",
        (person_id,),
    ).fetchone()
    if row is None:
        raise TaskError(f"no active person {person_id!r}", "task.no_person", person=person_id)
    return Person(str(row[0]), Role(str(row[1])), str(row[2]))


# A weekly shift covers a moment when, in the shift's time zone, the moment falls on one of its
# days between its start and end, or, for a shift past midnight (its end not after its start),
# after its start on one of its days or before its end on the day after one; the dates bound
# the day the shift starts on.
def shift_covers(at: str) -> str:
    """SQL true when shift `s` covers the moment `at` (an SQL expression: `now()`, a parameter)."""
    return """
    (NOT s.disabled AND (
      (s.starts < s.ends
       AND extract(isodow FROM ({at} AT TIME ZONE s.timezone))::smallint = ANY(s.days)
       AND ({at} AT TIME ZONE s.timezone)::time >= s.starts
       AND ({at} AT TIME ZONE s.timezone)::time < s.ends
       AND ({at} AT TIME ZONE s.timezone)::date
           BETWEEN coalesce(s.valid_from, '-infinity') AND coalesce(s.valid_to, 'infinity'))
      OR (s.ends <= s.starts
       AND extract(isodow FROM ({at} AT TIME ZONE s.timezone))::smallint = ANY(s.days)
       AND ({at} AT TIME ZONE s.timezone)::time >= s.starts
       AND ({at} AT TIME ZONE s.timezone)::date
           BETWEEN coalesce(s.valid_from, '-infinity') AND coalesce(s.valid_to, 'infinity'))
      OR (s.ends <= s.starts
       AND extract(isodow FROM ({at} AT TIME ZONE s.timezone) - interval '1 day')
           ::smallint = ANY(s.days)
       AND ({at} AT TIME ZONE s.timezone)::time < s.ends
       AND (({at} AT TIME ZONE s.timezone) - interval '1 day')::date
           BETWEEN coalesce(s.valid_from, '-infinity') AND coalesce(s.valid_to, 'infinity'))))""".format(
        at=f"({at})::timestamptz"
    )


def on_duty(conn: Conn, grid_id: str, at: datetime) -> str | None:
    """Who is on duty in the grid at `at`: see `on_duty_many`."""
    return on_duty_many(conn, [grid_id], at).get(grid_id)


def on_duty_many(conn: Conn, grid_ids: Sequence[str], at: datetime) -> dict[str, str]:
    """Who is on duty in each grid at `at`, in one query: a dated roster entry (one-off cover)
    first, then a weekly shift, else the grid's only worker; grids with nobody are left out."""
    grids = sorted(set(grid_ids))
    if not grids:
        return {}
    rows = conn.execute(
        """SELECT g.id, coalesce(
             (SELECT r.person_id FROM duty_roster r JOIN people p ON p.id = r.person_id
              JOIN territory ps ON ps.id = p.scope_id JOIN territory gt ON gt.id = r.grid_id
              WHERE r.grid_id = g.id AND r.starts <= %(at)s AND %(at)s < r.ends AND p.active
                AND p.role IN ('grid_worker', 'department') AND ps.path @> gt.path
              ORDER BY r.starts DESC LIMIT 1),
             (SELECT s.person_id FROM duty_shifts s JOIN people p ON p.id = s.person_id
              JOIN territory ps ON ps.id = p.scope_id JOIN territory gt ON gt.id = s.grid_id
              WHERE s.grid_id = g.id AND p.active AND p.role IN ('grid_worker', 'department')
                AND ps.path @> gt.path AND """
        + shift_covers("%(at)s")
        + """ ORDER BY s.starts DESC, s.id LIMIT 1),
             (SELECT CASE WHEN count(*) = 1 THEN min(w.id) END FROM
                (SELECT id FROM people WHERE scope_id = g.id AND role = 'grid_worker' AND active
                 LIMIT 2) w))
           FROM unnest(%(grids)s::text[]) AS g(id)""",
        {"grids": grids, "at": at},
    ).fetchall()
    return {str(g): str(p) for g, p in rows if p is not None}


class Group(StrEnum):
    """Whom a task can go to, as a dispatcher sees them."""

    GRID = "grid"  # the workers of the task's grid (or of an area holding it)
    COMMUNITY = "community"  # the workers of the community's other grids
    DEPARTMENTS = "departments"  # police, fire, property management: called in ("report for duty")


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    name: str
    role: Role
    scope_id: str
    scope_name: str
    group: Group
    on_duty: bool  # on a duty roster or a weekly shift right now
    open_tasks: int  # assigned to them and not closed


# Who may be sent a task of grid `g` (its path `grid_path`, its community's `community_path`):
# grid workers whose area holds the grid or lies in the community (its other grids), and the
# departments whose area holds the community or lies in it (a subdistrict's police station, a
# district's fire station, an estate's property management) -- the ones it can call in.
_CANDIDATES = (
    """WITH g AS (
         SELECT t.path AS grid_path, coalesce(
             (SELECT c.path FROM territory c WHERE c.path @> t.path AND c.level = 'community'
              ORDER BY nlevel(c.path) DESC LIMIT 1),
             CASE WHEN nlevel(t.path) > 1 THEN subpath(t.path, 0, nlevel(t.path) - 1)
                  ELSE t.path END) AS community_path
         FROM tasks k JOIN territory t ON t.id = k.grid_id WHERE k.id = %(task)s)
       SELECT p.id, p.name, p.role::text, p.scope_id, a.name,
              CASE WHEN p.role = 'department' THEN 'departments'
                   WHEN a.path @> g.grid_path THEN 'grid' ELSE 'community' END,
              EXISTS (SELECT 1 FROM duty_roster r WHERE r.person_id = p.id
                      AND r.starts <= now() AND now() < r.ends)
              OR EXISTS (SELECT 1 FROM duty_shifts s WHERE s.person_id = p.id AND """
    + "{shift})"
    + """,
              (SELECT count(*) FROM tasks o WHERE o.assignee = p.id AND o.state <> 'closed')
       FROM g, people p JOIN territory a ON a.id = p.scope_id
       WHERE p.active AND (%(person)s::text IS NULL OR p.id = %(person)s)
         AND ((p.role = 'grid_worker' AND (a.path @> g.grid_path OR a.path <@ g.community_path))
              OR (p.role = 'department'
                  AND (a.path @> g.community_path OR a.path <@ g.community_path)))"""
)
_GROUP_ORDER = {Group.GRID: 0, Group.COMMUNITY: 1, Group.DEPARTMENTS: 2}


def candidates(conn: Conn, task_id: int, person_id: str | None = None) -> list[Candidate]:
    """Whom a task can be dispatched or reassigned to (or only `person_id`, if they are one), in
    one query: by group, then those on duty and least busy first."""
    rows = conn.execute(
        _CANDIDATES.format(shift=shift_covers("now()")), {"task": task_id, "person": person_id}
    ).fetchall()
    found = [
        Candidate(
            str(i), str(n), Role(str(r)), str(s), str(sn), Group(str(g)), bool(d), int(str(o))
        )
        for i, n, r, s, sn, g, d, o in rows
    ]
    return sorted(found, key=lambda c: (_GROUP_ORDER[c.group], not c.on_duty, c.open_tasks, c.name))


@dataclass(frozen=True, slots=True)
class NewTask:
    """The task a new incident opens."""

    incident_id: int
    title: Title  # its parameters join its incident's (the device's name among them)
    severity: Severity
    grid_id: str
    path: str


def create_many(conn: Conn, new: Sequence[NewTask], policy: DeadlinePolicy) -> dict[int, int]:
    """Open the tasks of new incidents, each dispatched to whoever is on duty in its grid, in
    a few statements for all of them; the task id of each incident. A task is written once, in
    its first state (dispatched, or reported when nobody is on duty), with its deadline."""
    if not new:
        return {}
    now = _now(conn)
    paths = sorted({t.path for t in new})
    emergency = {
        str(p)
        for (p,) in conn.execute(
            """SELECT p FROM unnest(%s::text[]) AS u(p) WHERE EXISTS (
                   SELECT 1 FROM emergencies WHERE ended_at IS NULL AND path @> u.p::ltree)""",
            (paths,),
        )
    }
    duty = on_duty_many(conn, [t.grid_id for t in new], now)
    new = sorted(new, key=lambda t: t.incident_id)
    deadlines = [
        now + timedelta(seconds=policy.seconds(t.severity, Stage.ACCEPT, t.path in emergency))
        for t in new
    ]
    rows = conn.execute(
        """INSERT INTO tasks (incident_id, title, title_code, title_params, severity, grid_id,
                              path, level_id, emergency, state, assignee, stage_started,
                              deadline_at, created_at)
           SELECT i, t, tc,
                  coalesce((SELECT title_params FROM incidents WHERE id = u.i), '{}') || tp,
                  s::severity, g, p::ltree, g, e, st::task_state, a, %s, d, clock_timestamp()
           FROM jsonb_to_recordset(%s::jsonb) AS u(o int, i bigint, t text, tc text, tp jsonb,
                s text, g text, p text, e boolean, st text, a text, d timestamptz)
           ORDER BY o
           RETURNING incident_id, id""",
        (
            now,
            records(
                {"o": n, "i": t.incident_id, "t": t.title.render("en"), "tc": t.title.code,
                 "tp": t.title.params, "s": t.severity.value,
                 "g": t.grid_id, "p": t.path, "e": t.path in emergency,
                 "st": State.DISPATCHED.value if t.grid_id in duty else State.REPORTED.value,
                 "a": duty.get(t.grid_id), "d": d}
                for n, (t, d) in enumerate(zip(new, deadlines, strict=True))
            ),
        ),
    ).fetchall()  # fmt: skip
    ids = {int(str(i)): int(str(t)) for i, t in rows}
    events: list[dict[str, object]] = []
    for t in new:
        task_id = ids[t.incident_id]
        events.append({"i": task_id, "a": "create", "s": State.REPORTED.value, "r": "",
                       "j": {"incident_id": t.incident_id}})  # fmt: skip
        if t.grid_id in duty:
            events.append({"i": task_id, "a": Action.DISPATCH.value, "f": State.REPORTED.value,
                           "s": State.DISPATCHED.value, "r": "on duty",
                           "j": {"assignee": duty[t.grid_id]}})  # fmt: skip
    conn.execute(
        """INSERT INTO task_events (task_id, action, from_state, to_state, actor, reason, data)
           SELECT i, a, f::task_state, s::task_state, %s, r, j
           FROM jsonb_to_recordset(%s::jsonb) AS u(i bigint, a text, f text, s text, r text,
                j jsonb)""",
        (SYSTEM, records(events)),
    )
    _set_deadline_timers_many(
        conn, [(ids[t.incident_id], now, d) for t, d in zip(new, deadlines, strict=True)], policy
    )
    return ids


def act(
    conn: Conn,
    task_id: int,
    action: Action,
    actor_id: str,
    *,
    reason: str = "",
    note: str = "",
    evidence: list[str] | None = None,
    assignee: str | None = None,
    extend_s: float | None = None,
    policy: DeadlinePolicy | None = None,
    photos: Sequence[int] = (),
) -> State:
    """Take an action on a task in the caller's transaction; raise TaskError if it is not allowed."""
    policy = policy or DeadlinePolicy()
    actor = person(conn, actor_id)
    row = conn.execute(
        """SELECT state::text, suspended_from::text, assignee, path::text, severity::text,
                  emergency, deadline_at
           FROM tasks WHERE id = %s FOR NO KEY UPDATE""",
        (task_id,),
    ).fetchone()
    if row is None:
        raise TaskError(f"no task {task_id}", "task.missing", id=task_id)
    state, suspended_from = State(str(row[0])), row[1]
    current_assignee, path, severity = row[2], str(row[3]), Severity(str(row[4]))
    emergency, deadline_at = bool(row[5]), row[6]
    move = MOVES[action]
    if actor.role not in move.roles:
        raise TaskForbidden(f"a {actor.role} cannot {action} a task", "task.role", role=actor.role,
                            action=action)  # fmt: skip
    # A worker called in from elsewhere (another grid, a department) acts on the task assigned
    # to them, wherever it is; everything else stays within the actor's own area.
    theirs = move.assignee_only and current_assignee == actor.id
    if not _within(path, actor.scope_path) and not theirs:
        raise TaskForbidden(f"task {task_id} is outside {actor.id}'s area", "task.outside",
                            id=task_id, person=_name(conn, actor.id))  # fmt: skip
    if move.assignee_only and current_assignee != actor.id:
        raise TaskForbidden(
            f"task {task_id} is assigned to {current_assignee or 'nobody'}, not {actor.id}",
            "task.not_yours" if current_assignee else "task.unassigned",
            id=task_id,
            assignee=_name(conn, str(current_assignee)) if current_assignee else "",
            person=_name(conn, actor.id),
        )
    if state not in move.sources:
        allowed = ", ".join(sorted(s.value for s in move.sources))
        raise TaskError(f"cannot {action} a task that is {state} (only when {allowed})",
                        "task.state", action=action, state=state,
                        allowed=sorted(move.sources))  # fmt: skip
    if action is Action.FEEDBACK and not note.strip():
        raise TaskError("feedback needs a note saying what was done", "task.feedback_note")
    if (
        action in (Action.HAND_BACK, Action.REJECT, Action.SUSPEND, Action.EXTEND, Action.REASSIGN)
        and not reason.strip()
    ):
        raise TaskError(f"{action} needs a reason", "task.reason", action=action)

    target = move.target
    if action is Action.RESUME:
        target = State(str(suspended_from))
    data: dict[str, Any] = {}
    if photos:
        data["photos"] = _photos_of(conn, task_id, action, photos)
    now = _now(conn)
    if action in (Action.DISPATCH, Action.REASSIGN):
        if assignee is None:
            raise TaskError(f"{action} needs an assignee", "task.dispatch_assignee",
                            action=action)  # fmt: skip
        if action is Action.REASSIGN and assignee == current_assignee:
            raise TaskError(f"task {task_id} is assigned to {assignee} already",
                            "task.assigned_already", id=task_id, assignee=assignee)  # fmt: skip
        if not candidates(conn, task_id, assignee):
            raise TaskForbidden(
                f"{assignee} is not a worker task {task_id} can be sent to: only the workers of "
                "its grid and of its community's other grids, and the departments its grid can "
                "call in",
                "task.not_candidate",
                id=task_id,
                person=assignee,
            )
        conn.execute("UPDATE tasks SET assignee = %s WHERE id = %s", (assignee, task_id))
        data["assignee"] = assignee
        if action is Action.REASSIGN:
            data["from"] = current_assignee
    if action is Action.EXTEND:
        if not extend_s or extend_s <= 0:
            raise TaskError("extend needs a positive number of seconds", "task.extend_seconds")
        base = deadline_at if isinstance(deadline_at, datetime) and deadline_at > now else now
        new_deadline = base + timedelta(seconds=extend_s)
        conn.execute(
            "UPDATE tasks SET deadline_at = %s, flagged = false, updated_at = now() WHERE id = %s",
            (new_deadline, task_id),
        )
        _set_deadline_timers(conn, task_id, now, new_deadline, policy)
        _event(conn, task_id, action, state, state, actor.id, reason=reason,
               data={"deadline_at": new_deadline.isoformat()})  # fmt: skip
        return state
    assert target is not None
    conn.execute(
        """UPDATE tasks SET state = %s, updated_at = now(),
               suspended_from = CASE WHEN %s = 'suspended' THEN state ELSE NULL END,
               assignee = CASE WHEN %s = 'returned' THEN NULL ELSE assignee END,
               closed_at = CASE WHEN %s = 'closed' THEN now() ELSE closed_at END
           WHERE id = %s""",
        (target.value, target.value, target.value, target.value, task_id),
    )
    _event(conn, task_id, action, state, target, actor.id, reason=reason, note=note,
           evidence=evidence or [], data=data)  # fmt: skip
    old_stage, new_stage = _STAGE.get(state), _STAGE.get(target)
    if new_stage is None:
        _clear_deadline(conn, task_id)
    elif action is Action.REASSIGN:
        # The new assignee inherits the remaining time: the stage's start and deadline stay, so
        # passing a task round (A, B, A) never holds off its escalation. More time is an EXTEND.
        pass
    elif new_stage != old_stage or action is Action.RESUME:  # a new clock
        _start_stage(conn, task_id, new_stage, severity, emergency, policy, now)
    if target is State.CLOSED:
        conn.execute(
            """WITH done AS (
                   UPDATE incidents SET status = 'resolved', resolved_at = now(), resolved_by = %s
                   WHERE id = (SELECT incident_id FROM tasks WHERE id = %s) AND status <> 'resolved'
                   RETURNING id)
               INSERT INTO incident_events (incident_id, kind, actor, note)
               SELECT id, 'resolved', %s, %s FROM done""",
            (actor.id, task_id, actor.id, f"task {task_id} closed"),
        )
    return target


def _photos_of(conn: Conn, task_id: int, action: Action, photos: Sequence[int]) -> list[int]:
    """The photo ids attached to a feedback, each of which must be one of this task's."""
    if action is not Action.FEEDBACK:
        raise TaskError(f"photos are attached to a feedback, not to {action}",
                        "photo.not_feedback", action=action)  # fmt: skip
    wanted = sorted(set(photos))
    found = {
        int(str(i))
        for (i,) in conn.execute(
            "SELECT id FROM task_photos WHERE task_id = %s AND id = ANY(%s)", (task_id, wanted)
        )
    }
    strangers = [i for i in wanted if i not in found]
    if strangers:
        listed = ", ".join(map(str, strangers))
        raise TaskError(f"photo {listed} is not one of task {task_id}'s photos; upload it first",
                        "photo.not_this_tasks", photos=strangers, id=task_id)  # fmt: skip
    return wanted


def on_incidents_resolved(conn: Conn, reasons: dict[int, str], actor: str = SYSTEM) -> None:
    """These incidents (id: why) were resolved: by the system (`actor` SYSTEM, their
    conditions cleared by themselves) or by a person (`actor`, an operator resolving by hand),
    who is recorded on the tasks' events. A task nobody has in hand is closed; one being worked
    on stays with its worker, who reports and has it checked as usual. Set-based, for every
    incident at once."""
    rows = conn.execute(
        """SELECT id, incident_id, state::text FROM tasks
           WHERE incident_id = ANY(%s) AND state <> 'closed' ORDER BY id FOR NO KEY UPDATE""",
        (sorted(reasons),),
    ).fetchall()
    if not rows:
        return
    untaken = {State.REPORTED, State.DISPATCHED, State.RETURNED}
    closing = [int(str(t)) for t, _, st in rows if State(str(st)) in untaken]
    if closing:
        conn.execute(
            """UPDATE tasks SET state = 'closed', closed_at = now(), updated_at = now(),
                   deadline_at = NULL, flagged = false
               WHERE id = ANY(%s)""",
            (closing,),
        )
        conn.execute(
            "DELETE FROM timers WHERE kind IN (%s, %s) AND key = ANY(%s)",
            (TIMER_WARN, TIMER_DEADLINE, [str(t) for t in closing]),
        )
    closed = set(closing)
    conn.execute(
        """INSERT INTO task_events (task_id, action, from_state, to_state, actor, reason)
           SELECT i, 'incident_resolved', f::task_state, s::task_state, %s, r
           FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS u(i, f, s, r)""",
        (
            actor,
            [int(str(t)) for t, _, _ in rows],
            [str(st) if int(str(t)) in closed else None for t, _, st in rows],
            [State.CLOSED.value if int(str(t)) in closed else None for t, _, _ in rows],
            [reasons[int(str(i))] for _, i, _ in rows],
        ),
    )


def _within(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def _now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def _event(
    conn: Conn,
    task_id: int,
    action: str,
    from_state: State | None,
    to_state: State | None,
    actor: str,
    *,
    reason: str = "",
    note: str = "",
    evidence: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        """INSERT INTO task_events (task_id, action, from_state, to_state, actor, reason, note,
                                    evidence, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            task_id, str(action), from_state and from_state.value, to_state and to_state.value,
            actor, reason, note, Jsonb(evidence or []), Jsonb(data or {}),
        ),
    )  # fmt: skip


def _start_stage(
    conn: Conn,
    task_id: int,
    stage: Stage,
    severity: Severity,
    emergency: bool,
    policy: DeadlinePolicy,
    now: datetime,
) -> None:
    deadline = now + timedelta(seconds=policy.seconds(severity, stage, emergency))
    conn.execute(
        """UPDATE tasks SET stage_started = %s, deadline_at = %s, flagged = false, updated_at = now()
           WHERE id = %s""",
        (now, deadline, task_id),
    )
    _set_deadline_timers(conn, task_id, now, deadline, policy)


def _set_deadline_timers(
    conn: Conn, task_id: int, start: datetime, deadline: datetime, policy: DeadlinePolicy
) -> None:
    _set_deadline_timers_many(conn, [(task_id, start, deadline)], policy)


def _set_deadline_timers_many(
    conn: Conn, stages: Sequence[tuple[int, datetime, datetime]], policy: DeadlinePolicy
) -> None:
    """The warning (at `warn_at` of the stage) and deadline timers of (task, start, deadline)."""
    timers: list[dict[str, object]] = []
    for task_id, start, deadline in sorted(stages):
        warn = start + (deadline - start) * policy.warn_at
        for kind, due in ((TIMER_WARN, warn), (TIMER_DEADLINE, deadline)):
            timers.append({"k": kind, "key": str(task_id), "d": due})
    conn.execute(
        """INSERT INTO timers (kind, key, due_at)
           SELECT k, key, d FROM jsonb_to_recordset(%s::jsonb) AS u(k text, key text, d timestamptz)
           ON CONFLICT (kind, key) DO UPDATE SET due_at = excluded.due_at""",
        (records(timers),),
    )


def _clear_deadline(conn: Conn, task_id: int) -> None:
    conn.execute("UPDATE tasks SET deadline_at = NULL, flagged = false WHERE id = %s", (task_id,))
    conn.execute(
        "DELETE FROM timers WHERE kind IN (%s, %s) AND key = %s",
        (TIMER_WARN, TIMER_DEADLINE, str(task_id)),
    )


def retime_for_emergency(conn: Conn, task_id: int, policy: DeadlinePolicy) -> None:
    """Shorten the current stage's deadline to the emergency one, counted from the stage start."""
    row = conn.execute(
        "SELECT state::text, severity::text, stage_started, deadline_at FROM tasks WHERE id = %s",
        (task_id,),
    ).fetchone()
    if row is None or row[3] is None:
        return
    stage = _STAGE.get(State(str(row[0])))
    started, deadline = row[2], row[3]
    assert isinstance(started, datetime) and isinstance(deadline, datetime)
    if stage is None:
        return
    tighter = started + timedelta(seconds=policy.seconds(Severity(str(row[1])), stage, True))
    if tighter < deadline:
        conn.execute("UPDATE tasks SET deadline_at = %s WHERE id = %s", (tighter, task_id))
        _set_deadline_timers(conn, task_id, started, tighter, policy)
        _event(conn, task_id, "emergency_deadline", None, None, SYSTEM,
               data={"deadline_at": tighter.isoformat()})  # fmt: skip


def on_warn(conn: Conn, task_id: int) -> None:
    """80% of the stage's time is gone: flag the task and tell its current level."""
    row = conn.execute(
        "UPDATE tasks SET flagged = true WHERE id = %s AND deadline_at IS NOT NULL"
        " RETURNING level_id, title, state::text",
        (task_id,),
    ).fetchone()
    if row is None:
        return
    _event(conn, task_id, "warn", None, None, SYSTEM, reason="80% of the deadline passed")
    _notify(conn, str(row[0]), task_id, "deadline_warning",
            f"Task {task_id} ({row[1]}) is close to its deadline while {row[2]}")  # fmt: skip


def on_deadline(conn: Conn, task_id: int, policy: DeadlinePolicy) -> None:
    """The stage's deadline passed: escalate one level up and give that level a new deadline."""
    row = conn.execute(
        """SELECT t.level_id, p.parent_id, t.state::text, t.severity::text, t.emergency, t.title
           FROM tasks t JOIN territory p ON p.id = t.level_id
           WHERE t.id = %s AND t.deadline_at IS NOT NULL FOR NO KEY UPDATE OF t""",
        (task_id,),
    ).fetchone()
    if row is None:
        return
    level, parent, state = str(row[0]), row[1], State(str(row[2]))
    severity, emergency, title = Severity(str(row[3])), bool(row[4]), str(row[5])
    now = _now(conn)
    stage = _STAGE.get(state)
    if parent is None:  # already at the city: nobody above; flag it and keep the deadline off
        _event(conn, task_id, "overdue", None, None, SYSTEM, reason="deadline passed at the top")
        _clear_deadline(conn, task_id)
        conn.execute("UPDATE tasks SET flagged = true WHERE id = %s", (task_id,))
        return
    conn.execute(
        "UPDATE tasks SET level_id = %s, escalations = escalations + 1, updated_at = now()"
        " WHERE id = %s",
        (parent, task_id),
    )
    _event(conn, task_id, "escalate", None, None, SYSTEM,
           reason=f"{stage} deadline passed while {state}",
           data={"from": level, "to": str(parent)})  # fmt: skip
    _notify(conn, str(parent), task_id, "escalated",
            f"Task {task_id} ({title}) escalated from {level}: {stage} deadline passed")  # fmt: skip
    if stage is not None:  # the next level gets the same time again
        _start_stage(conn, task_id, stage, severity, emergency, policy, now)
    log.info("task escalated task=%d from=%s to=%s", task_id, level, parent)


def _notify(conn: Conn, territory_id: str, task_id: int, kind: str, message: str) -> None:
    conn.execute(
        "INSERT INTO notifications (territory_id, task_id, kind, message) VALUES (%s, %s, %s, %s)",
        (territory_id, task_id, kind, message),
    )

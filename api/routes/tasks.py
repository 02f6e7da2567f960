"""Grid tasks in the signed-in person's subtree: a worker's inbox, boards, every transition."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.messages import ApiError
from api.models import (
    AreaQuery,
    Candidate,
    Candidates,
    Cursor,
    Page,
    RowId,
    Task,
    TaskAction,
    TaskEvent,
    as_model,
    as_models,
    page,
)
from api.routes.incidents import snapshot_jpeg
from casework import tasks as task_ops
from casework.tasks import SUPERVISORS, Group, State

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
_COLUMNS = """id, incident_id, title, title_code, title_params, severity::text, state::text, assignee, grid_id, level_id,
              deadline_at, flagged, escalations, emergency, created_at, updated_at"""
# A task row with its card's context, in the same query: the incident's venue and device, the
# assignee's name, the last hand-back and the last feedback's photos (one index lookup each).
_FROM = """tasks LEFT JOIN LATERAL (
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'venue_id', v.id, 'venue_name', v.name, 'venue_address', v.address,
        'latitude', v.latitude, 'longitude', v.longitude, 'timezone', v.timezone,
        'rule', i.rule, 'device_id', i.device_id, 'device_name', nullif(d.name, ''),
        'snapshot', i.detail ? 'snapshot',
        'assignee_name', (SELECT name FROM people WHERE id = tasks.assignee),
        'grid_name', (SELECT name FROM territory WHERE id = tasks.grid_id),
        'level_name', (SELECT name FROM territory WHERE id = tasks.level_id),
        'handed_back', (SELECT jsonb_build_object('by', e.actor, 'at', e.at, 'reason', e.reason,
                               'by_name', (SELECT name FROM people WHERE id = e.actor))
                        FROM task_events e WHERE e.task_id = tasks.id AND e.action = 'hand_back'
                        ORDER BY e.id DESC LIMIT 1),
        'photos', (SELECT e.data->'photos' FROM task_events e
                   WHERE e.task_id = tasks.id AND e.action = 'feedback'
                   ORDER BY e.id DESC LIMIT 1))) AS context
    FROM incidents i LEFT JOIN venues v ON v.id = i.venue_id
    LEFT JOIN devices d ON d.id = i.device_id
    WHERE i.id = tasks.incident_id) x ON true"""
# Whom a person sees: the tasks of their area, and the ones assigned to them from elsewhere
# (a worker of another grid, a department called in).
VISIBLE = "(path <@ %(scope)s::ltree OR assignee = %(me)s)"


@router.get("", response_model=Page[Task], summary="Tasks, newest first")
def list_tasks(
    user: CurrentUser,
    db: DbDep,
    mine: Annotated[bool, Query(description="only tasks assigned to me (the inbox)")] = False,
    open_only: Annotated[bool, Query(alias="open")] = True,
    state: State | None = None,
    area: AreaQuery = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[Task]:
    rows = db.execute(
        f"""SELECT {_COLUMNS}, coalesce(x.context, '{{}}') FROM {_FROM}
            WHERE {VISIBLE}
              AND (%(area)s::text IS NULL OR path <@ (SELECT path FROM territory WHERE id = %(area)s))
              AND (NOT %(mine)s OR assignee = %(me)s)
              AND (NOT %(open)s OR state <> 'closed')
              AND (%(state)s::text IS NULL OR state::text = %(state)s)
              AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"scope": user.scope_path, "area": area, "mine": mine, "me": user.id, "open": open_only,
         "state": state, "cursor": cursor, "limit": limit},
    ).fetchall()  # fmt: skip
    items = as_models(Task, rows)
    return page(items, limit)


def _task(db: Conn, user: User, task_id: int, *, acted: bool = False) -> Task:
    """The task if the person may see it (404 otherwise); `acted`: they just acted on it (a
    hand-back by an assignee from elsewhere takes it out of their sight; they get it once)."""
    row = db.execute(
        f"SELECT {_COLUMNS}, coalesce(x.context, '{{}}') FROM {_FROM}"
        f" WHERE id = %(id)s AND (%(acted)s OR {VISIBLE})",
        {"id": task_id, "scope": user.scope_path, "me": user.id, "acted": acted},
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "task.missing", id=task_id)
    return as_model(Task, row)


@router.get("/{task_id}", response_model=Task, summary="One task")
def get_task(task_id: RowId, user: CurrentUser, db: DbDep) -> Task:
    return _task(db, user, task_id)


@router.get("/{task_id}/events", response_model=list[TaskEvent], summary="A task's timeline")
def task_events(task_id: RowId, user: CurrentUser, db: DbDep) -> list[TaskEvent]:
    _task(db, user, task_id)
    rows = db.execute(
        """SELECT e.at, e.action, e.from_state::text, e.to_state::text, e.actor, e.reason, e.note,
                  e.evidence, p.name, q.name, e.data, coalesce(e.data->'photos', '[]'::jsonb)
           FROM task_events e LEFT JOIN people p ON p.id = e.actor
           LEFT JOIN people q ON q.id = e.data->>'assignee'
           WHERE e.task_id = %s ORDER BY e.id""",
        (task_id,),
    ).fetchall()
    return as_models(TaskEvent, rows)


@router.post("/{task_id}/actions", response_model=Task, summary="Take an action on a task")
def act(
    task_id: RowId,
    body: TaskAction,
    user: CurrentUser,
    db: DbDep,
    request: Request,
) -> Task:
    with db.transaction():
        _task(db, user, task_id)
        task_ops.act(
            db, task_id, body.action, user.id, reason=body.reason, note=body.note,
            evidence=body.evidence, assignee=body.assignee, extend_s=body.extend_s,
            policy=request.app.state.deadlines, photos=body.photos,
        )  # fmt: skip
        audit(db, user, request, f"task.{body.action}", str(task_id),
              body.model_dump(exclude_defaults=True, mode="json"))  # fmt: skip
    return _task(db, user, task_id, acted=True)


@router.get(
    "/{task_id}/candidates",
    response_model=Candidates,
    summary="Whom a task can be dispatched or reassigned to",
)
def candidates(task_id: RowId, user: CurrentUser, db: DbDep) -> Candidates:
    """The workers of the task's grid, those of its community's other grids, and the departments
    the grid can call in, each with whether they are on duty and how many open tasks they hold.
    Only these are accepted by dispatch and reassign."""
    if user.role not in SUPERVISORS:
        raise ApiError(status.HTTP_403_FORBIDDEN, "role.dispatch", role=user.role)
    _task(db, user, task_id)
    groups: dict[Group, list[Candidate]] = {g: [] for g in Group}
    for c in task_ops.candidates(db, task_id):
        groups[c.group].append(
            Candidate(id=c.id, name=c.name, role=c.role.value, scope_id=c.scope_id,
                      scope_name=c.scope_name, on_duty=c.on_duty, open_tasks=c.open_tasks)
        )  # fmt: skip
    return Candidates(
        grid=groups[Group.GRID],
        community=groups[Group.COMMUNITY],
        departments=groups[Group.DEPARTMENTS],
    )


@router.get(
    "/{task_id}/snapshot",
    summary="The camera's picture of the task's incident (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}},
)
def snapshot(task_id: RowId, user: CurrentUser, db: DbDep) -> Response:
    """For whoever may see the task, its assignee from another grid included."""
    task = _task(db, user, task_id)
    jpeg = snapshot_jpeg(db, task.incident_id)
    if jpeg is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "task.no_picture", id=task_id)
    # Not cached (api.limits says no-store for every API answer): pictures of incidents.
    return Response(jpeg, media_type="image/jpeg")

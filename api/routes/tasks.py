"""Grid tasks in the signed-in person's subtree: a worker's inbox, boards, every transition."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.models import (
    AreaQuery,
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
from ingest import tasks as task_ops
from ingest.tasks import State

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
_COLUMNS = """id, incident_id, title, severity::text, state::text, assignee, grid_id, level_id,
              deadline_at, flagged, escalations, emergency, created_at, updated_at"""


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
        f"""SELECT {_COLUMNS} FROM tasks
            WHERE path <@ %(scope)s::ltree
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


def _task(db: Conn, user: User, task_id: int) -> Task:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM tasks WHERE id = %s AND path <@ %s::ltree",
        (task_id, user.scope_path),
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return as_model(Task, row)


@router.get("/{task_id}", response_model=Task, summary="One task")
def get_task(task_id: RowId, user: CurrentUser, db: DbDep) -> Task:
    return _task(db, user, task_id)


@router.get("/{task_id}/events", response_model=list[TaskEvent], summary="A task's timeline")
def task_events(task_id: RowId, user: CurrentUser, db: DbDep) -> list[TaskEvent]:
    _task(db, user, task_id)
    rows = db.execute(
        """SELECT at, action, from_state::text, to_state::text, actor, reason, note, evidence,
                  coalesce(data->'photos', '[]'::jsonb)
           FROM task_events WHERE task_id = %s ORDER BY id""",
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
    return _task(db, user, task_id)

"""Photo evidence of a task: the assignee uploads pictures while handling it (then attaches them
to the feedback); the assignee and the area's supervisors (who check it) see them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import images
from api.database import Database
from api.deps import BearerToken, Conn, CurrentUser, DbDep, KeyDep, User, audit, session_for
from api.messages import ApiError
from api.models import RowId, as_model, as_models
from api.routes.tasks import VISIBLE
from casework.tasks import SUPERVISORS, State

router = APIRouter(prefix="/api/tasks", tags=["photos"])
MAX_PHOTO_BYTES = 5 * 1024 * 1024  # api.limits lets a photo upload's body grow to this
MAX_PHOTOS_PER_TASK = 20
PHOTO_PATH = r"^/api/tasks/[0-9]+/photos$"  # for api.limits
_COLUMNS = """p.id, p.task_id, p.uploaded_by, coalesce(u.name, p.uploaded_by), p.content_type,
              p.width, p.height, p.size, p.location_kept, p.created_at"""


class Photo(BaseModel):
    id: int
    task_id: int
    uploaded_by: str
    uploaded_by_name: str
    content_type: str
    width: int
    height: int
    size: int
    location_kept: bool
    created_at: datetime


def _task_for(
    db: Conn, user: User, task_id: int, *, upload: bool = False, lock: bool = False
) -> tuple[str, str | None]:
    """The task's state and assignee, if the person may see its photos: its assignee (from this
    area or called in from elsewhere) and the area's supervisors; with `upload`, only its
    assignee while handling it. 404 when they cannot see the task, 403 / 409 otherwise."""
    row = db.execute(
        f"SELECT state::text, assignee, path <@ %(scope)s::ltree FROM tasks"
        f" WHERE id = %(id)s AND {VISIBLE}" + (" FOR NO KEY UPDATE" if lock else ""),
        {"id": task_id, "scope": user.scope_path, "me": user.id},
    ).fetchone()
    if row is None:  # outside the person's sight looks the same as missing
        raise ApiError(status.HTTP_404_NOT_FOUND, "task.missing", id=task_id)
    state, assignee, in_scope = str(row[0]), row[1], bool(row[2])
    if upload:
        if assignee != user.id:
            raise ApiError(status.HTTP_403_FORBIDDEN, "photo.assignee_only", id=task_id,
                           person=user.id)  # fmt: skip
        if state != State.HANDLING:
            raise ApiError(status.HTTP_409_CONFLICT, "photo.not_handling", id=task_id,
                           state=state)  # fmt: skip
    elif assignee != user.id and not (in_scope and user.role in SUPERVISORS):
        raise ApiError(status.HTTP_403_FORBIDDEN, "photo.whose", id=task_id)
    return state, assignee


def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/{task_id}/photos",
    response_model=Photo,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a photo while handling the task (the body is the picture)",
    responses={413: {"description": f"larger than {MAX_PHOTO_BYTES} bytes"}},
    openapi_extra={"requestBody": {"required": True, "description": "a JPEG or PNG picture",
                                   "content": {images.JPEG: _BINARY, images.PNG: _BINARY}}},
)  # fmt: skip
async def upload(
    task_id: RowId,
    token: BearerToken,
    key: KeyDep,
    request: Request,
    keep_location: Annotated[
        bool, Query(description="keep the picture's GPS position (EXIF); stripped otherwise")
    ] = False,
) -> Photo:
    # Who and when first, on a connection given back at once; then the body is read (api.limits
    # caps it) with no connection held, however slow the phone's network; then it is stored.
    user = await run_in_threadpool(_authorise, request, token, key, task_id)
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not declared:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, "photo.no_type")
    if declared not in images.TYPES:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, "photo.type", sent=declared)
    data = await request.body()
    return await run_in_threadpool(_store, request, user, task_id, data, declared,
                                   keep_location)  # fmt: skip


def _authorise(request: Request, token: str, key: str, task_id: int) -> User:
    with _database(request).connection() as db:
        user = session_for(db, token, key, request=request)[0]
        _task_for(db, user, task_id, upload=True)
    return user


def _store(
    request: Request, user: User, task_id: int, data: bytes, declared: str, keep_location: bool
) -> Photo:
    if len(data) > MAX_PHOTO_BYTES:  # api.limits refuses it before; this is the rule itself
        raise ApiError(status.HTTP_413_CONTENT_TOO_LARGE, "photo.too_large",
                       mb=MAX_PHOTO_BYTES // (1024 * 1024), size=len(data))  # fmt: skip
    try:
        picture = images.prepare(data, declared, keep_location=keep_location)
    except images.NotAnImage as exc:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.code, **exc.params) from None
    with _database(request).connection() as db, db.transaction():
        _task_for(db, user, task_id, upload=True, lock=True)  # still so, now that it is decoded
        count = db.execute("SELECT count(*) FROM task_photos WHERE task_id = %s", (task_id,))
        (have,) = count.fetchone() or (0,)
        if int(have) >= MAX_PHOTOS_PER_TASK:
            raise ApiError(status.HTTP_409_CONFLICT, "photo.too_many", id=task_id,
                           count=MAX_PHOTOS_PER_TASK)  # fmt: skip
        inserted = db.execute(
            """INSERT INTO task_photos (task_id, uploaded_by, content_type, image, thumbnail,
                                        width, height, size, sha256, location_kept)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (task_id, user.id, picture.content_type, picture.data, picture.thumbnail,
             picture.width, picture.height, len(picture.data), picture.sha256, keep_location),
        ).fetchone()  # fmt: skip
        assert inserted is not None
        photo_id = int(inserted[0])
        audit(db, user, request, "task.photo", str(task_id),
              {"photo": photo_id, "bytes": len(picture.data), "sha256": picture.sha256,
               "content_type": picture.content_type, "location_kept": keep_location})  # fmt: skip
        return _photo(db, task_id, photo_id)


@router.delete(
    "/{task_id}/photos/{photo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a photo its uploader took by mistake (not once it is in a feedback)",
)
def delete_photo(
    task_id: RowId, photo_id: RowId, user: CurrentUser, db: DbDep, request: Request
) -> Response:
    with db.transaction():
        # The task's row is locked (as a feedback and an upload lock it): no feedback attaches
        # the photo while it goes. (The photo's own row is not: FOR UPDATE needs UPDATE.)
        _task_for(db, user, task_id, lock=True)
        row = db.execute(
            "SELECT uploaded_by, sha256 FROM task_photos WHERE task_id = %s AND id = %s",
            (task_id, photo_id),
        ).fetchone()
        if row is None:
            raise ApiError(status.HTTP_404_NOT_FOUND, "photo.missing", id=task_id, photo=photo_id)
        if row[0] != user.id:
            raise ApiError(status.HTTP_403_FORBIDDEN, "photo.not_uploader", photo=photo_id,
                           person=user.id)  # fmt: skip
        attached = db.execute(
            """SELECT EXISTS (SELECT 1 FROM task_events WHERE task_id = %s
                              AND action = 'feedback' AND data->'photos' @> to_jsonb(%s::bigint))""",
            (task_id, photo_id),
        ).fetchone()
        if attached is not None and attached[0]:
            raise ApiError(status.HTTP_409_CONFLICT, "photo.attached", id=task_id, photo=photo_id)
        db.execute("DELETE FROM task_photos WHERE id = %s", (photo_id,))
        audit(db, user, request, "task.photo.delete", str(task_id),
              {"photo": photo_id, "sha256": row[1]})  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _photo(db: Conn, task_id: int, photo_id: int) -> Photo:
    row = db.execute(
        f"""SELECT {_COLUMNS} FROM task_photos p LEFT JOIN people u ON u.id = p.uploaded_by
            WHERE p.task_id = %s AND p.id = %s""",
        (task_id, photo_id),
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "photo.missing", id=task_id, photo=photo_id)
    return as_model(Photo, row)


@router.get("/{task_id}/photos", response_model=list[Photo], summary="The task's photos")
def list_photos(task_id: RowId, user: CurrentUser, db: DbDep) -> list[Photo]:
    _task_for(db, user, task_id)
    rows = db.execute(
        f"""SELECT {_COLUMNS} FROM task_photos p LEFT JOIN people u ON u.id = p.uploaded_by
            WHERE p.task_id = %s ORDER BY p.id""",
        (task_id,),
    ).fetchall()
    return as_models(Photo, rows)


@router.get(
    "/{task_id}/photos/{photo_id}",
    summary="One photo (the picture itself, or its small JPEG thumbnail)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "a picture"}},
)
def get_photo(
    task_id: RowId,
    photo_id: RowId,
    user: CurrentUser,
    db: DbDep,
    size: Annotated[Literal["full", "thumb"], Query(description="thumb: at most 320 px")] = "full",
) -> Response:
    _task_for(db, user, task_id)
    column = "thumbnail" if size == "thumb" else "image"
    row = db.execute(
        f"SELECT content_type, {column} FROM task_photos WHERE task_id = %s AND id = %s",
        (task_id, photo_id),
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "photo.missing", id=task_id, photo=photo_id)
    media = images.JPEG if size == "thumb" else str(row[0])
    ext = "jpg" if media == images.JPEG else "png"
    return Response(bytes(row[1]), media_type=media, headers={
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="task-{task_id}-photo-{photo_id}.{ext}"',
    })  # fmt: skip

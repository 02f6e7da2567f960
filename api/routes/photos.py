"""Photo evidence of a task: the assignee uploads pictures while handling it (then attaches them
to the feedback); the assignee and the area's supervisors (who check it) see them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import images
from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.models import RowId, as_model, as_models
from ingest.tasks import SUPERVISORS, State

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


def _task_for(db: Conn, user: User, task_id: int) -> tuple[str, str | None]:
    """The task's state and assignee, if the person may see its photos (404 / 403 otherwise)."""
    row = db.execute(
        "SELECT state::text, assignee FROM tasks WHERE id = %s AND path <@ %s::ltree",
        (task_id, user.scope_path),
    ).fetchone()
    if row is None:  # outside the person's area looks the same as missing
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    state, assignee = str(row[0]), row[1]
    if user.role not in SUPERVISORS and assignee != user.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"task {task_id}'s photos are for its assignee and the area's supervisors",
        )
    return state, assignee


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
    user: CurrentUser,
    db: DbDep,
    request: Request,
    keep_location: Annotated[
        bool, Query(description="keep the picture's GPS position (EXIF); stripped otherwise")
    ] = False,
) -> Photo:
    # The body is read here (api.limits has capped it), the rest runs off the event loop.
    data = await request.body()
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return await run_in_threadpool(_store, db, user, request, task_id, data, declared,
                                   keep_location)  # fmt: skip


def _uploader_check(db: Conn, user: User, task_id: int, *, lock: bool) -> None:
    """404 outside the area, 403 for anyone but the assignee, 409 unless it is being handled."""
    row = db.execute(
        "SELECT state::text, assignee FROM tasks WHERE id = %s AND path <@ %s::ltree"
        + (" FOR NO KEY UPDATE" if lock else ""),
        (task_id, user.scope_path),
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    if row[1] != user.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only task {task_id}'s assignee adds photos to it, not {user.id}",
        )
    if str(row[0]) != State.HANDLING:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"photos are added while handling a task; task {task_id} is {row[0]}",
        )


def _store(
    db: Conn, user: User, request: Request, task_id: int, data: bytes, declared: str,
    keep_location: bool,
) -> Photo:  # fmt: skip
    _uploader_check(db, user, task_id, lock=False)  # who and when first, then what was sent
    if declared not in images.TYPES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a photo is sent as image/jpeg or image/png, not {declared or 'no content type'}",
        )
    if len(data) > MAX_PHOTO_BYTES:  # api.limits refuses it before; this is the rule itself
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"a photo may be at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB; this one is"
            f" {len(data)} bytes: take it again at a lower resolution",
        )
    try:
        picture = images.prepare(data, declared, keep_location=keep_location)
    except images.NotAnImage as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    with db.transaction():
        _uploader_check(db, user, task_id, lock=True)  # still so, now that it is decoded
        count = db.execute("SELECT count(*) FROM task_photos WHERE task_id = %s", (task_id,))
        (have,) = count.fetchone() or (0,)
        if int(have) >= MAX_PHOTOS_PER_TASK:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"task {task_id} has {MAX_PHOTOS_PER_TASK} photos already, the most it takes",
            )
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


def _photo(db: Conn, task_id: int, photo_id: int) -> Photo:
    row = db.execute(
        f"""SELECT {_COLUMNS} FROM task_photos p LEFT JOIN people u ON u.id = p.uploaded_by
            WHERE p.task_id = %s AND p.id = %s""",
        (task_id, photo_id),
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} has no photo {photo_id}")
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
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} has no photo {photo_id}")
    media = images.JPEG if size == "thumb" else str(row[0])
    ext = "jpg" if media == images.JPEG else "png"
    return Response(bytes(row[1]), media_type=media, headers={
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="task-{task_id}-photo-{photo_id}.{ext}"',
    })  # fmt: skip

"""Notifications: a person's notification centre (the console channel), their preferences, every
delivery of an incident or a task, and the short links messages carry (/t/TOKEN)."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.messages import ApiError
from api.models import RowId, as_models
from notify import links
from notify.prefs import CHANNEL_NAMES, DEFAULT_CHANNELS

router = APIRouter(tags=["notifications"])
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Notification(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description="task.dispatched, task.deadline, task.escalated, incident.red, …")
    severity: str | None
    title: str = Field(description="in the person's language")
    body: str
    link: str | None = Field(description="the short link that opens the task (/t/TOKEN)")
    task_id: int | None
    incident_id: int | None
    read_at: datetime | None


class Inbox(BaseModel):
    unread: int
    items: list[Notification]


class ReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, max_length=1000, description="these (none: nothing is marked)"
    )
    all: bool = Field(default=False, description="mark every notification read")


class ReadResult(BaseModel):
    marked: int
    unread: int


_INBOX = """SELECT id, created_at, kind, severity::text, title, body, link, task_id, incident_id,
                   read_at
            FROM deliveries WHERE person_id = %(me)s AND channel = 'console' AND state = 'sent'"""


def _unread(db: Conn, user: User) -> int:
    row = db.execute(
        "SELECT count(*) FROM deliveries WHERE person_id = %s AND channel = 'console'"
        " AND state = 'sent' AND read_at IS NULL",
        (user.id,),
    ).fetchone()
    return int(row[0]) if row else 0


@router.get("/api/v1/notifications", response_model=Inbox, summary="My notifications")
def inbox(
    user: CurrentUser,
    db: DbDep,
    unread: Annotated[bool, Query(description="only those not read yet")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Inbox:
    rows = db.execute(
        _INBOX + " AND (NOT %(unread)s OR read_at IS NULL) ORDER BY id DESC LIMIT %(limit)s",
        {"me": user.id, "unread": unread, "limit": limit},
    ).fetchall()
    return Inbox(unread=_unread(db, user), items=as_models(Notification, rows))


@router.post(
    "/api/v1/notifications/read", response_model=ReadResult, summary="Mark notifications read"
)
def mark_read(body: ReadRequest, user: CurrentUser, db: DbDep, request: Request) -> ReadResult:
    with db.transaction():
        cur = db.execute(
            """UPDATE deliveries SET read_at = now()
               WHERE person_id = %s AND channel = 'console' AND state = 'sent' AND read_at IS NULL
                 AND (%s OR id = ANY(%s))""",
            (user.id, body.all, body.ids),
        )
        if cur.rowcount:  # marking nothing changes nothing: no row for it
            audit(db, user, request, "notifications.read", user.id,
                  {"all": body.all, "ids": body.ids[:50], "marked": cur.rowcount})  # fmt: skip
    return ReadResult(marked=cur.rowcount, unread=_unread(db, user))


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: str = Field(alias="from", description="HH:MM, the person's time zone",
                       json_schema_extra={"pattern": _HHMM.pattern})  # fmt: skip
    end: str = Field(alias="to", description="HH:MM; before `from` runs past midnight",
                     json_schema_extra={"pattern": _HHMM.pattern})  # fmt: skip

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day like 22:00")
        return value


# The schema names what is accepted, so that a client (and the API's fuzzing) can tell.
ChannelName = Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(CHANNEL_NAMES)})]
TimeZone = Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(available_timezones())})]


class NotifyPrefs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[ChannelName] = Field(
        description="in the order to reach me: console, wecom, dingtalk, sms, voice, email,"
        " webhook (the console's inbox always gets everything)",
        min_length=1,
        max_length=10,
        json_schema_extra={"uniqueItems": True},
    )
    quiet_hours: QuietHours | None = Field(
        default=None, description='{"from": "22:00", "to": "07:00"}: only red then; null: none'
    )
    language: Literal["zh-CN", "en"] = Field(description="of titles and messages")
    timezone: TimeZone = Field(default="Asia/Shanghai", description="of the quiet hours")

    @field_validator("channels")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CHANNEL_NAMES]
        if unknown:
            raise ValueError(
                f"unknown channel {unknown[0]!r}; channels are {', '.join(sorted(CHANNEL_NAMES))}"
            )
        if len(set(value)) != len(value):
            raise ValueError("a channel is named twice")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (for example Asia/Shanghai)") from None
        return value


def _hhmm(t: object) -> str:
    return t.strftime("%H:%M") if isinstance(t, time) else ""


def _prefs(db: Conn, user: User) -> NotifyPrefs:
    row = db.execute(
        """SELECT p.language, n.channels, n.quiet_from, n.quiet_to, n.timezone
           FROM people p LEFT JOIN notify_prefs n ON n.person_id = p.id WHERE p.id = %s""",
        (user.id,),
    ).fetchone()
    assert row is not None  # the signed-in person exists
    language, channels, qf, qt, tz = row
    quiet = QuietHours(**{"from": _hhmm(qf), "to": _hhmm(qt)}) if qf is not None else None
    return NotifyPrefs(
        channels=list(channels) if channels else list(DEFAULT_CHANNELS),
        quiet_hours=quiet, language=language, timezone=tz or "Asia/Shanghai",
    )  # fmt: skip


@router.get("/api/v1/me/notify", response_model=NotifyPrefs, summary="How I am notified")
def get_prefs(user: CurrentUser, db: DbDep) -> NotifyPrefs:
    return _prefs(db, user)


@router.put("/api/v1/me/notify", response_model=NotifyPrefs, summary="Change how I am notified")
def put_prefs(body: NotifyPrefs, user: CurrentUser, db: DbDep, request: Request) -> NotifyPrefs:
    quiet = body.quiet_hours
    with db.transaction():
        db.execute(
            """INSERT INTO notify_prefs (person_id, channels, quiet_from, quiet_to, timezone)
               VALUES (%(me)s, %(ch)s, %(qf)s, %(qt)s, %(tz)s)
               ON CONFLICT (person_id) DO UPDATE SET channels = excluded.channels,
                   quiet_from = excluded.quiet_from, quiet_to = excluded.quiet_to,
                   timezone = excluded.timezone, updated_at = now()""",
            {"me": user.id, "ch": body.channels, "qf": quiet.start if quiet else None,
             "qt": quiet.end if quiet else None, "tz": body.timezone},
        )  # fmt: skip
        db.execute(
            "UPDATE people SET language = %s, language_chosen = true WHERE id = %s",
            (body.language, user.id),
        )
        audit(db, user, request, "notify.prefs", user.id, body.model_dump(by_alias=True))
    return _prefs(db, user)


class Delivery(BaseModel):
    id: int
    person_id: str
    channel: str
    state: str = Field(description="pending, sent, failed, cancelled or digested")
    kind: str
    severity: str | None
    title: str
    attempts: int
    last_error: str | None
    provider_ref: str | None
    created_at: datetime
    tried_at: datetime | None
    sent_at: datetime | None
    next_at: datetime | None = Field(description="when it is tried next (pending only)")
    digest_id: int | None = Field(description="the digest it went out in (digested)")
    digest_state: str | None
    person_name: str = Field(description="who it went to, as people read it")


_DELIVERIES = """SELECT d.id, d.person_id, d.channel, d.state::text, d.kind, d.severity::text,
                        d.title, d.attempts, d.last_error, d.provider_ref, d.created_at,
                        d.tried_at, d.sent_at, CASE WHEN d.state = 'pending' THEN d.next_at END,
                        d.digest_id, g.state::text, p.name
                 FROM deliveries d LEFT JOIN deliveries g ON g.id = d.digest_id
                 JOIN people p ON p.id = d.person_id"""


@router.get(
    "/api/v1/incidents/{incident_id}/deliveries",
    response_model=list[Delivery],
    summary="Every delivery about an incident (and its task) and its outcome",
)
def incident_deliveries(incident_id: RowId, user: CurrentUser, db: DbDep) -> list[Delivery]:
    return _deliveries_of(db, user, "incident", incident_id)


def _deliveries_of(db: Conn, user: User, what: str, rid: int) -> list[Delivery]:
    """The deliveries about one incident or task in the person's area (404 outside it)."""
    table, column = {"incident": ("incidents", "incident_id"), "task": ("tasks", "task_id")}[what]
    inside = db.execute(
        f"SELECT 1 FROM {table} WHERE id = %s AND path <@ %s::ltree", (rid, user.scope_path)
    ).fetchone()
    if inside is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "delivery.missing", kind=what, id=rid)
    rows = db.execute(_DELIVERIES + f" WHERE d.{column} = %s ORDER BY d.id", (rid,))
    return as_models(Delivery, rows.fetchall())


@router.get(
    "/api/v1/tasks/{task_id}/deliveries",
    response_model=list[Delivery],
    summary="Every delivery about a task (its paging) and its outcome",
)
def task_deliveries(task_id: RowId, user: CurrentUser, db: DbDep) -> list[Delivery]:
    return _deliveries_of(db, user, "task", task_id)


@router.get(
    "/t/{token}",
    summary="A message's short link: opens the task in the console",
    response_class=RedirectResponse,
    status_code=status.HTTP_303_SEE_OTHER,
    responses={404: {"description": "not a link, or expired"}},
)
def open_link(
    token: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")], db: DbDep
) -> RedirectResponse:
    """The console's task page; after signing in, its assignee is offered "accept" there."""
    found = links.resolve(db, token)
    if found is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "link.invalid")
    task_id, person_id = found
    return RedirectResponse(
        f"/console/#/task/{task_id}?for={person_id}", status.HTTP_303_SEE_OTHER,
        headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"},
    )  # fmt: skip

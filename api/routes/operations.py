"""Commands to doors and speakers, emergency mode, KPIs, and rejected messages for admins."""

from __future__ import annotations

import uuid
from collections.abc import Set
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, DbDep, User, audit
from api.messages import ApiError
from api.models import AreaPath, AreaQuery, Cursor, Page, VenuePath, as_models, page
from api.routes.venues import area_path
from casework import emergency, kpi, proposals
from casework.tasks import SUPERVISORS, Role
from gateway import messages as m
from gateway.codec import RejectReason
from gateway.topics import ID_PATTERN
from registry.model import TERRITORY_ID

router = APIRouter(prefix="/api", tags=["operations"])


def _require(user: User, roles: Set[Role], what: str) -> None:
    if user.role not in roles:
        raise ApiError(status.HTTP_403_FORBIDDEN, "role.cannot", role=user.role, what=what)


# The longest a dispatcher may unlock a door for; operators and admins up to a day, or until a
# lock command (duration_s null).
DISPATCHER_UNLOCK_MAX_S = 15 * 60
_UNLOCK_MAX_S = {
    Role.ADMIN: 86_400,
    Role.OPERATOR: 86_400,
    Role.DISPATCHER: DISPATCHER_UNLOCK_MAX_S,
}


class DoorCommand(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "device_id": "door-1",
                    "action": "unlock",
                    "duration_s": 30,
                    "reason": "resident locked out, identity checked by phone",
                }
            ]
        },
    )

    device_id: str = Field(pattern=ID_PATTERN)
    action: Literal["unlock", "lock", "lockdown", "release"]
    duration_s: int | None = Field(
        default=10,
        ge=1,
        le=86_400,
        description="for unlock: seconds open (a dispatcher at most 900); null: until a lock "
        "command (operators and admins only)",
    )
    reason: str = Field(
        min_length=1, max_length=500, pattern=r"\S", description="why; kept in the audit log"
    )


class TextMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["text"]
    text: str = Field(min_length=1, max_length=2000, description="spoken by the speakers")
    language: m.SpeechLanguage | None = Field(
        default=None,
        description="the text's language, for speakers that speak it at the edge (zh-CN if absent)",
    )


class ClipMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["clip"]
    clip: str = Field(min_length=1, max_length=128, description="a clip stored on the speakers")


class Broadcast(BaseModel):
    """A message for every speaker of a venue or of a whole area."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "message": {"kind": "text", "text": "Flood warning"},
                    "priority": "emergency",
                    "repeat": 3,
                }
            ]
        },
    )

    message: Annotated[TextMessage | ClipMessage, Field(discriminator="kind")]
    priority: m.SpeakerPriority = m.SpeakerPriority.NOTICE
    repeat: int = Field(default=1, ge=1, le=20)


class CommandState(BaseModel):
    id: uuid.UUID
    device_id: str
    action: dict[str, Any]
    state: str
    detail: str | None
    created_at: datetime
    sent_at: datetime | None
    result_at: datetime | None
    must_deliver: bool = Field(description="retried until the device answers (locks, lockdowns)")
    attempts: int = Field(description="times published")
    superseded_by: uuid.UUID | None = Field(description="a newer door command that replaced it")


def _commands(db: DbDep, ids: list[uuid.UUID]) -> list[CommandState]:
    rows = db.execute(
        """SELECT id, device_id, action, state::text, detail, created_at, sent_at, result_at,
                  must_deliver, attempts, superseded_by
           FROM commands WHERE id = ANY(%s) ORDER BY device_id""",
        (ids,),
    ).fetchall()
    return as_models(CommandState, rows)


@router.post("/commands/door", response_model=list[CommandState], summary="Unlock or lock a door")
def door_command(
    body: DoorCommand, user: CurrentUser, db: DbDep, request: Request
) -> list[CommandState]:
    _require(user, SUPERVISORS, "command doors")
    if body.action == "unlock":
        longest = _UNLOCK_MAX_S[user.role]
        if body.duration_s is None and longest < 86_400:
            raise ApiError(status.HTTP_403_FORBIDDEN, "door.unlock_forever", role=user.role)
        if body.duration_s is not None and body.duration_s > longest:
            raise ApiError(status.HTTP_403_FORBIDDEN, "door.unlock_longest", role=user.role,
                           seconds=longest)  # fmt: skip
    action: m.DoorUnlock | m.DoorLock | m.DoorLockdown
    match body.action:
        case "unlock":
            action = m.DoorUnlock(duration_s=body.duration_s)
        case "lock":
            action = m.DoorLock()
        case "lockdown" | "release":
            action = m.DoorLockdown(active=body.action == "lockdown")
    with db.transaction():
        row = db.execute(
            """SELECT d.id FROM devices d JOIN edge_nodes n ON n.id = d.node_id
               JOIN venues v ON v.id = n.venue_id JOIN territory g ON g.id = v.grid_id
               WHERE d.id = %s AND d.kind = 'door' AND g.path <@ %s::ltree""",
            (body.device_id, user.scope_path),
        ).fetchone()
        if row is None:
            raise ApiError(status.HTTP_404_NOT_FOUND, "door.missing", device=body.device_id)
        cid = emergency.queue_command(
            db, body.device_id, action, issued_by=user.id, reason=body.reason.strip()
        )
        detail: dict[str, Any] = {"command": str(cid), "reason": body.reason.strip()}
        if body.action == "unlock":
            detail["duration_s"] = body.duration_s  # None: until locked
        audit(db, user, request, f"door.{body.action}", body.device_id, detail)
    return _commands(db, [cid])


def _broadcast(
    db: DbDep, user: User, request: Request, body: Broadcast, path: str, venue: str | None
) -> list[CommandState]:
    _require(user, SUPERVISORS, "broadcast")
    text = body.message.text if isinstance(body.message, TextMessage) else None
    clip = body.message.clip if isinstance(body.message, ClipMessage) else None
    language = body.message.language if isinstance(body.message, TextMessage) else None
    play = m.SpeakerPlay(text=text, clip=clip, priority=body.priority, repeat=body.repeat,
                         language=language)  # fmt: skip
    with db.transaction():
        speakers = emergency.devices(db, path, "speaker", venue=venue)
        if not speakers:
            raise ApiError(status.HTTP_404_NOT_FOUND, "speakers.none")
        ids = emergency.queue_commands(db, speakers, play, issued_by=user.id, reason="broadcast")
        audit(db, user, request, "broadcast", venue or path,
              {"speakers": len(ids), "text": text, "clip": clip})  # fmt: skip
    return _commands(db, ids)


@router.post("/areas/{area}/broadcast", response_model=list[CommandState],
             summary="Play a message on every speaker of an area")  # fmt: skip
def broadcast_area(
    area: AreaPath, body: Broadcast, user: CurrentUser, db: DbDep, request: Request
) -> list[CommandState]:
    return _broadcast(db, user, request, body, area_path(db, user, area), None)


@router.post("/venues/{venue_id}/broadcast", response_model=list[CommandState],
             summary="Play a message on every speaker of a venue")  # fmt: skip
def broadcast_venue(
    venue_id: VenuePath, body: Broadcast, user: CurrentUser, db: DbDep, request: Request
) -> list[CommandState]:
    return _broadcast(db, user, request, body, user.scope_path, venue_id)


@router.get("/commands", response_model=list[CommandState], summary="Where commands stand")
def commands(
    user: CurrentUser, db: DbDep, ids: Annotated[list[uuid.UUID], Query()]
) -> list[CommandState]:
    found = _commands(db, ids)
    # Only commands to devices in the person's area.
    allowed = {str(r[0]) for r in db.execute(
        """SELECT d.id FROM devices d JOIN edge_nodes n ON n.id = d.node_id JOIN venues v
           ON v.id = n.venue_id JOIN territory g ON g.id = v.grid_id
           WHERE d.id = ANY(%s) AND g.path <@ %s::ltree""",
        ([c.device_id for c in found], user.scope_path),
    ).fetchall()}  # fmt: skip
    return [c for c in found if c.device_id in allowed]


class EmergencyStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    area: str = Field(pattern=TERRITORY_ID)
    reason: str = Field(min_length=1, max_length=500)
    message: str = Field(default=emergency.DEFAULT_MESSAGE, min_length=1, max_length=2000)


class Emergency(BaseModel):
    id: int
    territory_id: str
    territory_name: str
    reason: str
    message: str
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    ended_by: str | None


def _emergencies(db: DbDep, user: User) -> list[Emergency]:
    rows = db.execute(
        """SELECT e.id, e.territory_id, t.name, e.reason, e.message, e.started_at, e.started_by,
                  e.ended_at, e.ended_by
           FROM emergencies e JOIN territory t ON t.id = e.territory_id
           WHERE e.path <@ %s::ltree OR e.path @> %s::ltree ORDER BY e.id DESC LIMIT 50""",
        (user.scope_path, user.scope_path),
    ).fetchall()
    return as_models(Emergency, rows)


@router.get(
    "/emergencies", response_model=list[Emergency], summary="Emergencies touching your area"
)
def emergencies(user: CurrentUser, db: DbDep) -> list[Emergency]:
    return _emergencies(db, user)


@router.post(
    "/emergencies", response_model=list[Emergency], summary="Switch an area to emergency mode"
)
def start_emergency(
    body: EmergencyStart, user: CurrentUser, db: DbDep, request: Request
) -> list[Emergency]:
    _require(user, {Role.ADMIN, Role.OPERATOR}, "switch emergency mode")
    area_path(db, user, body.area)
    with db.transaction():
        eid = emergency.start(db, body.area, actor=user.id, reason=body.reason,
                              message=body.message, policy=request.app.state.deadlines)  # fmt: skip
        audit(db, user, request, "emergency.start", body.area, {"id": eid, "reason": body.reason})
    return _emergencies(db, user)


@router.post("/emergencies/{area}/end", response_model=list[Emergency], summary="Back to normal")
def end_emergency(
    area: AreaPath, user: CurrentUser, db: DbDep, request: Request
) -> list[Emergency]:
    _require(user, {Role.ADMIN, Role.OPERATOR}, "switch emergency mode")
    area_path(db, user, area)
    with db.transaction():
        eid = emergency.end(db, area, actor=user.id)
        audit(db, user, request, "emergency.end", area, {"id": eid})
    return _emergencies(db, user)


class EmergencyProposal(BaseModel):
    id: int
    territory_id: str
    reason: str
    rule: str
    proposed_at: datetime


@router.get("/emergencies/proposals", response_model=list[EmergencyProposal],
            summary="Emergencies rules proposed, awaiting a person")  # fmt: skip
def emergency_proposals(user: CurrentUser, db: DbDep) -> list[EmergencyProposal]:
    return [
        EmergencyProposal(id=p.id, territory_id=p.territory_id, reason=p.reason, rule=p.rule,
                          proposed_at=p.proposed_at)
        for p in proposals.open_proposals(db, user.scope_path)
    ]  # fmt: skip


ProposalPath = Annotated[int, Path(ge=1, le=2**62)]


@router.post("/emergencies/proposals/{proposal_id}/confirm", response_model=list[Emergency],
             summary="Confirm an emergency a rule proposed: it starts")  # fmt: skip
def confirm_proposal(
    proposal_id: ProposalPath, user: CurrentUser, db: DbDep, request: Request
) -> list[Emergency]:
    return _decide(db, user, request, proposal_id, "confirm")


@router.post("/emergencies/proposals/{proposal_id}/dismiss", response_model=list[Emergency],
             summary="Dismiss an emergency a rule proposed")  # fmt: skip
def dismiss_proposal(
    proposal_id: ProposalPath, user: CurrentUser, db: DbDep, request: Request
) -> list[Emergency]:
    return _decide(db, user, request, proposal_id, "dismiss")


def _decide(
    db: DbDep, user: User, request: Request, proposal_id: int,
    decision: Literal["confirm", "dismiss"],
) -> list[Emergency]:  # fmt: skip
    _require(user, {Role.ADMIN, Role.OPERATOR}, "switch emergency mode")
    found = db.execute(
        "SELECT territory_id FROM emergency_proposals WHERE id = %s", (proposal_id,)
    ).fetchone()
    if found is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "proposal.missing", id=proposal_id)
    area_path(db, user, str(found[0]))  # outside the person's area: 404, before anything else
    with db.transaction():
        try:
            proposal, eid = proposals.decide(
                db, proposal_id, confirm=decision == "confirm", actor=user.id,
                policy=request.app.state.deadlines,
            )  # fmt: skip
        except proposals.ProposalError as exc:
            raise ApiError(status.HTTP_404_NOT_FOUND, exc.code, None, **exc.params) from None
        audit(db, user, request, f"emergency.{decision}", proposal.territory_id,
              {"proposal": proposal_id, "id": eid, "reason": proposal.reason,
               "rule": proposal.rule})  # fmt: skip
    return _emergencies(db, user)


@router.get("/kpi", response_model=list[kpi.Kpi], summary="KPIs of an area and the areas under it")
def kpis(
    user: CurrentUser,
    db: DbDep,
    area: AreaQuery = None,
    days: Annotated[float, Query(gt=0, le=366)] = 30,
) -> list[kpi.Kpi]:
    area_path(db, user, area)
    until = datetime.now(UTC)
    return kpi.report(db, area or user.scope_id, until - timedelta(days=days), until)


@router.get("/kpi/daily", response_model=list[kpi.DailyKpi],
            summary="Tasks created, closed by people (and late), closed by themselves, per day")  # fmt: skip
def kpi_daily(
    user: CurrentUser,
    db: DbDep,
    area: AreaQuery = None,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[kpi.DailyKpi]:
    area_path(db, user, area)
    # Days as the person lives them: their time zone (notification preferences), else the
    # platform's.
    row = db.execute(
        "SELECT timezone FROM notify_prefs WHERE person_id = %s", (user.id,)
    ).fetchone()
    tz = str(row[0]) if row and row[0] else "Asia/Shanghai"
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = "Asia/Shanghai", ZoneInfo("Asia/Shanghai")
    until = datetime.now(zone)
    first = (until - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=zone)
    return kpi.daily(db, area or user.scope_id, since, until, tz=tz)


class Rejected(BaseModel):
    id: int
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    topic: str
    node_id: str | None
    reason: str
    detail: str
    payload_size: int


@router.get(
    "/rejected", response_model=Page[Rejected], summary="Messages the ingest refused (admins)"
)
def rejected(
    user: CurrentUser,
    db: DbDep,
    reason: RejectReason | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[Rejected]:
    _require(user, {Role.ADMIN}, "see rejected messages")
    # Only what came from nodes in the admin's area; what names no known node (a stranger, a
    # spoofed id) could be anyone's, so only an admin of a whole city sees it.
    rows = db.execute(
        """SELECT r.id, r.first_seen, r.last_seen, r.occurrences, r.topic, r.node_id, r.reason,
                  r.detail, r.payload_size
           FROM rejected_messages r LEFT JOIN edge_nodes n ON n.id = r.node_id
           LEFT JOIN venues v ON v.id = n.venue_id LEFT JOIN territory g ON g.id = v.grid_id
           WHERE (g.path <@ %(scope)s::ltree OR (g.path IS NULL AND nlevel(%(scope)s::ltree) = 1))
             AND (%(reason)s::text IS NULL OR r.reason = %(reason)s)
             AND (%(cursor)s::bigint IS NULL OR r.id < %(cursor)s)
           ORDER BY r.id DESC LIMIT %(limit)s""",
        {"scope": user.scope_path, "reason": reason, "cursor": cursor, "limit": limit},
    ).fetchall()
    items = as_models(Rejected, rows)
    return page(items, limit)

"""Admins manage the registry within their own area: areas, venues, edge nodes, devices, people
and duty shifts, one record at a time (list, get, create, update, disable, enable), every change
audited; and a node's secret, issued and shown once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api import records
from api.deps import AdminUser, DbDep, User, audit
from api.errors import InvalidBody, Stale, StaleBody
from api.messages import ApiError
from api.models import AreaQuery
from api.records import AREAS, NODES, PEOPLE, Invalid, Kind, Meta
from api.routes.venues import area_path
from registry import broker_sync, secrets
from registry import model as rm

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
log = logging.getLogger(__name__)


RecordPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", description="the record's id")
]
After = Annotated[str | None, Query(max_length=64, description="next_after of the previous page")]
T = TypeVar("T")


class Listing(BaseModel, Generic[T]):
    items: list[T]
    next_after: str | None = Field(description="pass as `after` for the next page; null at the end")


class Switch(BaseModel):
    """Disable or enable; with the version it was decided on, a stale one is refused."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)


_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": StaleBody, "description": "stale version: the current record is in `current`"},
    422: {"model": InvalidBody, "description": "a field is invalid; `field` names it"},
}


def _found(db: DbDep, kind: Kind, record_id: str, user: User, lock: bool = False) -> Meta:
    found = records.get(db, kind, record_id, user.scope_path, lock=lock)
    if found is None:  # outside the admin's area: as if it did not exist
        raise ApiError(status.HTTP_404_NOT_FOUND, "record.missing", kind=kind.name, id=record_id)
    return found


def _taken(db: DbDep, kind: Kind, record: rm.Record, user: User) -> Invalid:
    rid: str = record.model_dump()["id"]
    seen = records.get(db, kind, rid, user.scope_path)
    if seen is None:
        return Invalid("id", f"a {kind.name} {rid!r} exists already, outside your area: "
                       "ids are unique platform-wide, choose another", "record.taken_elsewhere",
                       kind=kind.name, id=rid)  # fmt: skip
    if isinstance(seen, records.DeviceOut):
        return Invalid("id", f"device {rid!r} is already under node {seen.node!r}: edit that "
                       "record to move it, or choose another id", "record.device_taken", id=rid,
                       node=seen.node)  # fmt: skip
    return Invalid("id", f"a {kind.name} {rid!r} exists already: edit it, or choose another id",
                   "record.taken", kind=kind.name, id=rid)  # fmt: skip


def _check_self(kind: Kind, user: User, before: Meta | None, record: rm.Record) -> None:
    """An admin cannot take away their own access, nor give anyone more than their own."""
    if kind is PEOPLE and isinstance(before, rm.Person) and before.id == user.id:
        assert isinstance(record, rm.Person)
        if record.role != before.role or record.scope != before.scope or record.disabled:
            raise ApiError(status.HTTP_409_CONFLICT, "self.change")
    if kind is AREAS and isinstance(before, rm.Area):
        assert isinstance(record, rm.Area)
        if (record.parent, record.level) != (before.parent, before.level):
            raise Invalid("parent", "an area does not move or change level: add the new one "
                          "and disable this one", "record.area_move")  # fmt: skip
        if record.id == user.scope_id and record.disabled:
            raise ApiError(status.HTTP_409_CONFLICT, "self.area")


def _create(kind: Kind, body: rm.Record, user: User, db: DbDep, request: Request) -> Meta:
    rid: str = body.model_dump()["id"]
    with db.transaction():
        if records.exists(db, kind, rid):
            raise _taken(db, kind, body, user)
        kind.check(db, body, user.scope_path)
        try:
            with db.transaction():
                records.insert(db, kind, body)
        except psycopg.errors.UniqueViolation:  # made at the same moment by someone else
            raise _taken(db, kind, body, user) from None
        secret = _first_secret(db, rid) if kind is NODES else None
        after = _found(db, kind, rid, user)
        log.info("registry %s %s added by %s", kind.name, rid, user.id)
        audit(db, user, request, f"registry.{kind.name}.create", rid,
              {"after": after.model_dump(mode="json", exclude={"updated_at"})})  # fmt: skip
    if kind is NODES:  # registering a node creates its secret, shown this once
        return records.NodeAdded(**after.model_dump(), secret=secret)
    return after


def _first_secret(db: DbDep, node_id: str) -> str | None:
    try:
        with db.transaction():
            return secrets.issue_secret(db, node_id)
    except secrets.SealError as exc:
        log.warning("node %s added without a secret: %s", node_id, exc)
        return None


def _stale(kind: Kind, current: Meta, sent: int) -> Stale:
    return Stale(f"this {kind.name} changed since you read it (you edited version {sent}, it is "
                 f"at version {current.version} now): here it is as it is now; apply your change "
                 "to it and send it again", current, "record.stale", kind=kind.name, sent=sent,
                 version=current.version)  # fmt: skip


def _update(
    kind: Kind, record_id: str, body: records._Update, user: User, db: DbDep, request: Request
) -> Meta:
    sent = body.model_dump(exclude={"version", "disabled"})
    if sent["id"] != record_id:
        raise Invalid("id", f"the body is {sent['id']!r} and the path {record_id!r}: an id "
                      "never changes (add a new record and disable this one)", "record.id_changed",
                      sent=sent["id"], id=record_id)  # fmt: skip
    with db.transaction():
        before = _found(db, kind, record_id, user, lock=True)
        if before.version != body.version:
            raise _stale(kind, before, body.version)
        disabled = before.model_dump()["disabled"] if body.disabled is None else body.disabled
        record = kind.model(**sent, disabled=disabled)
        _check_self(kind, user, before, record)
        if kind is not AREAS:  # an area's parent does not change (checked above)
            kind.check(db, record, user.scope_path)
        records.update(db, kind, record, keep_disabled=body.disabled is None)
        if kind is PEOPLE and disabled != before.model_dump()["disabled"]:
            records.set_disabled(db, kind, record_id, disabled)
        after = _found(db, kind, record_id, user)
        changed = records.changes(before, after)
        if changed:
            log.info("registry %s %s changed by %s: %s", kind.name, record_id, user.id,
                     ", ".join(changed))  # fmt: skip
            audit(db, user, request, f"registry.{kind.name}.update", record_id,
                  {"version": after.version, "changes": changed})  # fmt: skip
    return after


def _switch(
    kind: Kind, record_id: str, body: Switch | None, user: User, db: DbDep, request: Request,
    disabled: bool,
) -> Meta:  # fmt: skip
    with db.transaction():
        before = _found(db, kind, record_id, user, lock=True)
        if body is not None and body.version is not None and body.version != before.version:
            raise _stale(kind, before, body.version)
        if disabled and kind is PEOPLE and record_id == user.id:
            raise ApiError(status.HTTP_409_CONFLICT, "self.disable")
        if disabled and kind is AREAS and record_id == user.scope_id:
            raise ApiError(status.HTTP_409_CONFLICT, "self.area")
        if before.model_dump()["disabled"] == disabled:
            return before  # already so: nothing to do, nothing to audit
        records.set_disabled(db, kind, record_id, disabled)
        after = _found(db, kind, record_id, user)
        what = "disable" if disabled else "enable"
        log.info("registry %s %s %sd by %s", kind.name, record_id, what, user.id)
        audit(db, user, request, f"registry.{kind.name}.{what}", record_id,
              {"version": after.version})  # fmt: skip
    return after


def _filters(kind: Kind) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"},
             "description": f"only those whose {n} is this"} for n in kind.filters]  # fmt: skip


def _typed(fn: Callable[..., Any], **annotations: Any) -> Callable[..., Any]:
    """Give a route made for any kind its kind's models (FastAPI reads them from annotations)."""
    fn.__annotations__.update(annotations)
    return fn


def _routes(kind: Kind) -> None:
    base = f"/{kind.plural}"

    def list_(
        user: AdminUser, db: DbDep, request: Request, area: AreaQuery = None,
        include_disabled: Annotated[bool, Query(description="disabled records too")] = False,
        after: After = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Listing[Any]:  # fmt: skip
        path = area_path(db, user, area)
        filters = {n: v for n, v in request.query_params.items() if n in kind.filters}
        items = records.listing(db, kind, path, filters, include_disabled, after, limit)
        last: str | None = items[-1].model_dump()["id"] if len(items) == limit else None
        return Listing[Any](items=items, next_after=last)

    def get(record_id: RecordPath, user: AdminUser, db: DbDep) -> Meta:
        return _found(db, kind, record_id, user)

    def create(body: Any, user: AdminUser, db: DbDep, request: Request) -> Meta:
        return _create(kind, body, user, db, request)

    def update(
        record_id: RecordPath, body: Any, user: AdminUser, db: DbDep, request: Request
    ) -> Meta:
        return _update(kind, record_id, body, user, db, request)

    def disable(
        record_id: RecordPath, user: AdminUser, db: DbDep, request: Request,
        body: Switch | None = None,
    ) -> Meta:  # fmt: skip
        return _switch(kind, record_id, body, user, db, request, disabled=True)

    def enable(
        record_id: RecordPath, user: AdminUser, db: DbDep, request: Request,
        body: Switch | None = None,
    ) -> Meta:  # fmt: skip
        return _switch(kind, record_id, body, user, db, request, disabled=False)

    out, many = kind.out, Listing[kind.out]  # type: ignore[name-defined]
    name, plural = kind.name, kind.plural
    add = router.add_api_route
    add(base, _typed(list_, **{"return": many}), methods=["GET"], response_model=many,
        summary=f"List {plural} in your area", openapi_extra={"parameters": _filters(kind)},
        name=f"list_{plural}")  # fmt: skip
    add(f"{base}/{{record_id}}", _typed(get, **{"return": out}), methods=["GET"],
        response_model=out, summary=f"Get a {name}", name=f"get_{name}")  # fmt: skip
    added = records.NodeAdded if kind is NODES else out
    add(base, _typed(create, body=kind.model, **{"return": added}), methods=["POST"],
        response_model=added, status_code=201, responses=_ERRORS, name=f"create_{name}",
        summary=f"Add a {name} (in your area; audited)"
        + ("; the answer holds its first secret, shown once" if kind is NODES else ""))  # fmt: skip
    add(f"{base}/{{record_id}}", _typed(update, body=kind.update, **{"return": out}),
        methods=["PUT"], response_model=out, responses=_ERRORS, name=f"update_{name}",
        summary=f"Change a {name}: the whole record, with the version it was read at")  # fmt: skip
    for verb, fn in (("disable", disable), ("enable", enable)):
        add(f"{base}/{{record_id}}/{verb}", _typed(fn, **{"return": out}), methods=["POST"],
            response_model=out, responses=_ERRORS, name=f"{verb}_{name}",
            summary=f"{verb.title()} a {name} (its history stays; audited)")  # fmt: skip


for _kind in records.KINDS:
    _routes(_kind)


class NodeSecret(BaseModel):
    node: str
    secret: str = Field(description="shown this once: give it to the node; only a hash is kept")
    issued_at: datetime
    note: str


@router.post(
    "/nodes/{record_id}/secret",
    response_model=NodeSecret,
    summary="Issue a node a new secret (its first, or a rotation), shown once",
)
def node_secret(
    record_id: RecordPath, user: AdminUser, db: DbDep, request: Request, response: Response
) -> NodeSecret:
    with db.transaction():
        before = _found(db, NODES, record_id, user, lock=True)
        assert isinstance(before, records.NodeOut)
        try:
            secret = secrets.issue_secret(db, record_id)
        except secrets.SealError as exc:
            raise ApiError(status.HTTP_409_CONFLICT, "enrol.refused", detail=str(exc)) from None
        after = _found(db, NODES, record_id, user)
        assert isinstance(after, records.NodeOut) and after.secret_issued_at is not None
        # Never the secret itself: what was done, and whether it replaced one.
        log.info("node %s given a new secret by %s", record_id, user.id)
        audit(db, user, request, "registry.node.secret", record_id,
              {"rotated": before.secret_issued_at is not None, "version": after.version})  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return NodeSecret(
        node=record_id, secret=secret, issued_at=after.secret_issued_at,
        note="shown once: put it in the node's site file now; its session on any earlier "
        "secret is cut and that secret refused",
    )  # fmt: skip


class RefusedConnect(BaseModel):
    client: str = Field(description="the account name tried, or the address it came from")
    node_id: str | None = Field(description="the node it was put down to, if any")
    site: str | None = Field(description="that node's venue")
    reason: str
    count: int
    first_seen: datetime
    last_seen: datetime


@router.get(
    "/broker/refusals",
    response_model=list[RefusedConnect],
    summary="Connects the broker refused (unknown, disabled, old secret), latest first",
)
def broker_refusals(
    user: AdminUser, db: DbDep, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[RefusedConnect]:
    # Those put down to no known node could be anyone's: only an admin of a whole city sees them.
    city = user.scope_path.count(".") == 0
    found = broker_sync.refusals(db, None if city else user.scope_path, limit)
    return [
        RefusedConnect(client=r.client, node_id=r.node_id, site=r.site, reason=r.reason,
                       count=r.count, first_seen=r.first_seen, last_seen=r.last_seen)
        for r in found
    ]  # fmt: skip

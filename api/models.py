"""Response and request models of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.topics import ID_PATTERN
from ingest.tasks import Action
from registry.model import TERRITORY_ID

# Identifiers in paths and queries, checked before they reach the database.
AreaQuery = Annotated[
    str | None, Query(pattern=TERRITORY_ID, description="a territory id inside your area")
]
AreaPath = Annotated[str, Path(pattern=TERRITORY_ID, description="a territory id")]
VenueQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description="a venue id")]
VenuePath = Annotated[str, Path(pattern=ID_PATTERN, description="a venue id")]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a row id")]
Cursor = Annotated[
    int | None, Query(ge=0, le=2**63 - 1, description="next_cursor of the previous page")
]


M = TypeVar("M", bound=BaseModel)


def as_model(model: type[M], row: tuple[Any, ...]) -> M:
    """A response model from a row whose columns are the model's fields, in order."""
    return model(**dict(zip(model.model_fields, row, strict=True)))


def as_models(model: type[M], rows: list[tuple[Any, ...]]) -> list[M]:
    return [as_model(model, r) for r in rows]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")


Language = Literal["zh-CN", "en"]


class Me(BaseModel):
    id: str
    name: str
    role: str
    scope_id: str
    language: Language = Field(description="the console's and the notifications' language")
    timezone: str = Field(description="where times are shown when the thing shown has no venue")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class _HasId(Protocol):
    id: int


H = TypeVar("H", bound=_HasId)


def page(items: list[H], limit: int) -> Page[H]:
    """A page of rows ordered by id, newest first: a full page has a next one."""
    return Page(items=items, next_cursor=items[-1].id if len(items) == limit else None)


class Incident(BaseModel):
    id: int
    rule: str
    severity: str
    status: str
    title: str
    venue_id: str | None = Field(description="none for the platform's own incidents")
    device_id: str | None
    grid_id: str
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    resolved_at: datetime | None
    detail: dict[str, Any]
    silenced_until: datetime | None = Field(
        description="consoles neither sound nor flash for it until then"
    )


class IncidentEvent(BaseModel):
    at: datetime
    kind: str
    actor: str
    note: str
    data: dict[str, Any]


class Task(BaseModel):
    id: int
    incident_id: int
    title: str
    severity: str
    state: str
    assignee: str | None
    grid_id: str
    level_id: str
    deadline_at: datetime | None
    flagged: bool
    escalations: int
    emergency: bool
    created_at: datetime
    updated_at: datetime


class TaskEvent(BaseModel):
    at: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    reason: str
    note: str
    evidence: list[str]


class TaskAction(BaseModel):
    """An action on a task."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "accept"},
                {
                    "action": "feedback",
                    "note": "door closed and checked",
                    "evidence": ["photos/12.jpg"],
                },
            ]
        },
    )

    action: Action
    reason: str = Field(default="", max_length=2000)
    note: str = Field(default="", max_length=4000)
    evidence: list[str] = Field(default_factory=list, max_length=20)
    assignee: str | None = Field(default=None, description="for dispatch")
    extend_s: float | None = Field(default=None, gt=0, le=30 * 86400, description="for extend")


class IncidentAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class Silence(IncidentAction):
    """Silence (shelve) an incident: it stays open, but consoles stop sounding for it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"minutes": 30, "note": "on site"}]})

    minutes: int = Field(ge=0, le=24 * 60, description="how long; 0 lifts the silence")


class TerritoryNode(BaseModel):
    id: str
    parent_id: str | None
    level: str
    name: str
    venues: int
    open_incidents: int

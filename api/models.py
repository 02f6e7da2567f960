"""Response and request models of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Protocol, Self, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import messages
from casework import titles
from casework.tasks import Action
from gateway.topics import ID_PATTERN
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
    language_chosen: bool = Field(
        description="whether the person chose it; until they do, the console follows the browser"
    )
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
    title: str = Field(description="in the request's language (Accept-Language; zh-CN default)")
    title_code: str = Field(description="its rule, or the platform's own code (casework/titles.py)")
    title_params: dict[str, Any] = Field(
        description="what the title names: venue, venue_id, device, device_id, and the code's own"
    )
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

    @model_validator(mode="after")
    def _in_language(self) -> Self:
        """The title in the request's language (api.messages.Language), from its code."""
        self.title = titles.render(self.title_code, self.title_params, messages.current())
        return self


class IncidentEvent(BaseModel):
    at: datetime
    kind: str
    actor: str
    note: str
    data: dict[str, Any]


class HandedBack(BaseModel):
    """The last hand-back of a task: who gave it back, when, and why."""

    by: str
    by_name: str | None = None
    at: datetime
    reason: str


class TaskContext(BaseModel):
    """What a worker's card shows of a task: where (the venue, to navigate to), what happened
    (the incident's rule and device), the picture, who has it, why it was handed back."""

    venue_id: str | None = None
    venue_name: str | None = None
    venue_address: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    timezone: str = "Asia/Shanghai"
    rule: str | None = None
    device_id: str | None = None
    device_name: str | None = None
    snapshot: bool = Field(default=False, description="the incident has a camera picture")
    assignee_name: str | None = None
    grid_name: str | None = None
    level_name: str | None = Field(default=None, description="the level it is escalated to")
    handed_back: HandedBack | None = None
    photos: list[int] = Field(default_factory=list, description="the last feedback's photos")


class Task(BaseModel):
    id: int
    incident_id: int
    title: str = Field(description="in the request's language (Accept-Language; zh-CN default)")
    title_code: str = Field(description="task.<its incident's rule> (casework/titles.py)")
    title_params: dict[str, Any] = Field(
        description="what the title names: venue, venue_id, device, device_id, and the code's own"
    )
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
    context: TaskContext = Field(default_factory=TaskContext)

    @model_validator(mode="after")
    def _in_language(self) -> Self:
        """The title in the request's language (api.messages.Language), from its code."""
        self.title = titles.render(self.title_code, self.title_params, messages.current())
        return self


class Candidate(BaseModel):
    """Someone a task can be sent to."""

    id: str
    name: str
    role: str
    scope_id: str
    scope_name: str
    on_duty: bool = Field(description="on a duty roster or a weekly shift right now")
    open_tasks: int = Field(description="tasks assigned to them that are not closed")


class Candidates(BaseModel):
    """Whom a task can be dispatched or reassigned to, in three groups."""

    grid: list[Candidate] = Field(description="the workers of the task's grid")
    community: list[Candidate] = Field(description="the workers of the community's other grids")
    departments: list[Candidate] = Field(description="the departments the grid can call in")


class TaskEvent(BaseModel):
    at: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    reason: str
    note: str
    evidence: list[str]
    actor_name: str | None = None
    assignee_name: str | None = Field(default=None, description="whom it was sent to")
    data: dict[str, Any] = Field(
        default_factory=dict, description="assignee (dispatch, reassign), from, photos, …"
    )
    photos: list[int] = Field(default_factory=list, description="photo ids of a feedback")


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
    assignee: str | None = Field(default=None, description="for dispatch and reassign")
    photos: list[int] = Field(
        default_factory=list, max_length=20, description="for feedback: ids of the task's photos"
    )
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

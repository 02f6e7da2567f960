"""The registry's records, as a registry file, the API and the console write them.

One model per kind of record, checked field by field here (ids, capacity, opening hours, time
zones, days). What needs the other records (an unknown parent, a duplicate id, a device under
two nodes, a person scoped to a missing area) is checked where the records meet: a whole file
in `registry.document`, one record against the database in the API. Field names are the file's;
`registry.store` maps them to columns.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from casework.tasks import Role
from gateway.messages import DeviceKind
from gateway.topics import ID_PATTERN

TERRITORY_ID = r"^[A-Za-z0-9_]{1,64}$"
PERSON_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


class Level(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    SUBDISTRICT = "subdistrict"
    COMMUNITY = "community"
    GRID = "grid"


PARENT_LEVEL: dict[Level, Level | None] = {
    Level.CITY: None,
    Level.DISTRICT: Level.CITY,
    Level.SUBDISTRICT: Level.DISTRICT,
    Level.COMMUNITY: Level.SUBDISTRICT,
    Level.GRID: Level.COMMUNITY,
}


class VenueKind(StrEnum):
    CITY_CENTRE = "city_centre"
    CLUSTER_CENTRE = "cluster_centre"
    COMMUNITY_CENTRE = "community_centre"
    GRID_STATION = "grid_station"
    BUILDING_CORNER = "building_corner"
    SELF_SERVICE_STATION = "self_service_station"
    SHELTER = "shelter"
    ESTATE = "estate"


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


class Record(BaseModel):
    """A registry record: unknown fields are errors (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    disabled: bool = Field(default=False, description="switched off; its history stays")


Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=500)]


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Asia/Shanghai"
        ) from None
    return value


def check_hhmm(value: str, what: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"{what} {value!r} is not a time HH:MM (00:00 to 24:00)")
    return value


class Area(Record):
    """A node of the territory tree: city > district > subdistrict > community > grid."""

    id: str = Field(pattern=TERRITORY_ID, description="stable id (letters, digits, _)")
    level: Level
    name: Name = Field(description="the name people use, in Chinese")
    parent: str | None = Field(default=None, pattern=TERRITORY_ID, description="parent area id")
    boundary: dict[str, Any] | None = Field(
        default=None, description="GeoJSON geometry (Polygon or MultiPolygon) for maps"
    )

    @model_validator(mode="after")
    def _parent_by_level(self) -> Area:
        if (self.level is Level.CITY) != (self.parent is None):
            raise ValueError(
                "a city has no parent" if self.level is Level.CITY
                else f"a {self.level} needs a parent (a {PARENT_LEVEL[self.level]})"
            )  # fmt: skip
        return self

    @field_validator("boundary")
    @classmethod
    def _geojson(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError("a boundary is a GeoJSON geometry of type Polygon or MultiPolygon")
        if value is not None and not isinstance(value.get("coordinates"), list):
            raise ValueError("a boundary needs its GeoJSON coordinates")
        return value


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


OpeningHours = dict[str, list[tuple[str, str]]]


class Venue(Record):
    """A site with an edge node: a service centre, a station, a shelter, an estate."""

    id: str = Field(pattern=ID_PATTERN, description="stable id; becomes a topic level")
    grid: str = Field(pattern=TERRITORY_ID, description="the grid it sits in")
    name: Name
    kind: VenueKind
    address: Text = ""
    location: Location | None = None
    capacity: int | None = Field(default=None, gt=0, description="people it holds; none: no limit")
    shelter: bool = Field(default=False, description="an emergency shelter (opened in emergencies)")
    open_24h: bool = False
    unstaffed: bool = Field(default=False, description="no staff on site (a 24-hour self-service)")
    opening_hours: OpeningHours = Field(
        default_factory=dict, description='per weekday, e.g. mon: [["08:30", "20:30"]]'
    )
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: OpeningHours) -> OpeningHours:
        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"opening hours: {day!r} is not a weekday ({', '.join(WEEKDAYS)})")
            previous_end = "00:00"
            for start, end in sorted(spans):
                check_hhmm(start, f"opening hours {day}: start")
                check_hhmm(end, f"opening hours {day}: end")
                if end <= start:
                    raise ValueError(f"opening hours {day}: {start}-{end} ends before it starts")
                if start < previous_end:
                    raise ValueError(f"opening hours {day}: {start}-{end} overlaps another span")
                previous_end = end
        return value


class Node(Record):
    """An edge node (one broker account) at a venue."""

    id: str = Field(pattern=ID_PATTERN, description="stable id; its broker account name")
    venue: str = Field(pattern=ID_PATTERN)
    name: Text = ""


class Device(Record):
    """A device read by a node's driver."""

    id: str = Field(pattern=ID_PATTERN, description="unique platform-wide; becomes a topic level")
    node: str = Field(pattern=ID_PATTERN)
    kind: DeviceKind
    name: Text = ""
    model: str | None = Field(default=None, max_length=64)
    zone: str | None = Field(default=None, max_length=64)
    driver: str = Field(default="simulated", min_length=1, max_length=32)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="the driver's settings; a password is named as an edge environment variable",
    )

    @field_validator("settings")
    @classmethod
    def _no_secrets(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """A device password would reach the database, exports and every configuration push:
        the registry names the edge's environment variable instead (`password_env`)."""
        found = sorted(_secret_keys(settings))
        if found:
            raise ValueError(
                f"{', '.join(found)}: the registry keeps no device password; name an environment"
                " variable of the edge agent instead (password_env: DOOR1_PASSWORD) and set it on"
                " the node"
            )
        return settings


_SECRET_WORDS = ("password", "passwd", "secret", "token")


def _secret_keys(value: Any, path: str = "") -> list[str]:
    """Keys under `value` that would hold a secret (any depth); `…_env` names one, allowed."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}{key}"
            if any(w in str(key).lower() for w in _SECRET_WORDS) and not str(key).endswith("_env"):
                found.append(where)
            found += _secret_keys(inner, f"{where}.")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _secret_keys(inner, f"{path}{i}.")
    return found


class Person(Record):
    """Someone who uses the platform, scoped to a subtree."""

    id: str = Field(pattern=PERSON_ID, description="their sign-in name")
    name: Name
    role: Role
    scope: str = Field(pattern=TERRITORY_ID, description="the area they work in")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    wecom_id: str | None = Field(default=None, max_length=64)
    dingtalk_id: str | None = Field(default=None, max_length=64)
    language: Language = Language.ZH_CN


class Shift(Record):
    """A weekly duty shift: who is on duty in a grid, on which days, from when to when."""

    id: str = Field(pattern=PERSON_ID, description="stable id of the shift")
    grid: str = Field(pattern=TERRITORY_ID)
    person: str = Field(pattern=PERSON_ID)
    days: tuple[str, ...] = Field(default=WEEKDAYS, min_length=1)
    starts: str = Field(description="HH:MM local time")
    ends: str = Field(description="HH:MM local time; not after `starts`: runs past midnight")
    timezone: str = "Asia/Shanghai"
    valid_from: date | None = None
    valid_to: date | None = None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for day in value:
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday ({', '.join(WEEKDAYS)})")
        if len(set(value)) != len(value):
            raise ValueError("a day is named twice")
        return tuple(d for d in WEEKDAYS if d in value)

    @model_validator(mode="after")
    def _times(self) -> Shift:
        check_hhmm(self.starts, "starts")
        check_hhmm(self.ends, "ends")
        if self.starts == self.ends and self.starts != "00:00":
            raise ValueError(f"a shift from {self.starts} to {self.ends} has no length")
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


KINDS: dict[str, type[Record]] = {
    "areas": Area,
    "venues": Venue,
    "nodes": Node,
    "devices": Device,
    "people": Person,
    "duty": Shift,
}
"""The sections of a registry file, in the order they are applied (parents first)."""

"""Registering the territory, venues, edge nodes and devices, and reading broker accounts back."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from gateway.broker import NodeAccount, hash_password, new_secret
from gateway.messages import DeviceKind
from gateway.topics import ID_PATTERN
from ingest.tasks import Role

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]

TERRITORY_ID = r"^[A-Za-z0-9_]{1,64}$"


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TerritoryNode(_Model):
    id: str = Field(pattern=TERRITORY_ID)
    level: Level
    name: str = Field(min_length=1, max_length=200)
    parent_id: str | None = Field(default=None, pattern=TERRITORY_ID)


class Venue(_Model):
    id: str = Field(pattern=ID_PATTERN)
    grid_id: str = Field(pattern=TERRITORY_ID)
    name: str = Field(min_length=1, max_length=200)
    kind: VenueKind
    capacity: int | None = Field(default=None, gt=0)
    is_shelter: bool = False
    open_24h: bool = False
    opening_hours: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)
    timezone: str = "Asia/Shanghai"


class Device(_Model):
    id: str = Field(pattern=ID_PATTERN)
    kind: DeviceKind
    name: str = ""
    model: str | None = None
    zone: str | None = None


def add_territory(conn: Conn, node: TerritoryNode) -> None:
    """Insert or update a territory node; its level must sit directly under its parent's."""
    expected_parent = PARENT_LEVEL[node.level]
    if expected_parent is None:
        if node.parent_id is not None:
            raise ValueError(f"a {node.level} has no parent")
        path = node.id
    else:
        row = conn.execute(
            "SELECT level::text, path::text FROM territory WHERE id = %s", (node.parent_id,)
        ).fetchone()
        if row is None:
            raise ValueError(f"parent {node.parent_id!r} of {node.id!r} does not exist")
        if row[0] != expected_parent:
            raise ValueError(f"a {node.level} must sit under a {expected_parent}, not a {row[0]}")
        path = f"{row[1]}.{node.id}"
    conn.execute(
        """INSERT INTO territory (id, parent_id, level, name, path)
           VALUES (%s, %s, %s, %s, %s::ltree)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name""",
        (node.id, node.parent_id, node.level.value, node.name, path),
    )


def add_venue(conn: Conn, venue: Venue) -> None:
    """Insert or update a venue; it must sit in a grid."""
    row = conn.execute(
        "SELECT level::text FROM territory WHERE id = %s", (venue.grid_id,)
    ).fetchone()
    if row is None or row[0] != Level.GRID:
        raise ValueError(f"venue {venue.id!r}: {venue.grid_id!r} is not a grid")
    data: dict[str, Any] = venue.model_dump(mode="json")
    data["opening_hours"] = Jsonb(data["opening_hours"])
    conn.execute(
        """INSERT INTO venues (id, grid_id, name, kind, capacity, is_shelter, open_24h, opening_hours, timezone)
           VALUES (%(id)s, %(grid_id)s, %(name)s, %(kind)s, %(capacity)s, %(is_shelter)s, %(open_24h)s,
                   %(opening_hours)s, %(timezone)s)
           ON CONFLICT (id) DO UPDATE SET grid_id = excluded.grid_id, name = excluded.name,
               kind = excluded.kind, capacity = excluded.capacity, is_shelter = excluded.is_shelter,
               open_24h = excluded.open_24h, opening_hours = excluded.opening_hours,
               timezone = excluded.timezone""",
        data,
    )


def add_node(conn: Conn, node_id: str, venue_id: str, secret: str | None = None) -> str:
    """Register an edge node (or rotate its secret) and return the secret; only its hash is kept."""
    secret = secret or new_secret()
    conn.execute(
        """INSERT INTO edge_nodes (id, venue_id, password_hash) VALUES (%s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET venue_id = excluded.venue_id,
               password_hash = excluded.password_hash""",
        (node_id, venue_id, hash_password(secret)),
    )
    log.info("edge node registered node=%s venue=%s", node_id, venue_id)
    return secret


def add_devices(conn: Conn, node_id: str, devices: list[Device]) -> None:
    """Register devices under a node; a device already owned by another node is refused."""
    with conn.cursor() as cur:
        for d in devices:
            cur.execute(
                """INSERT INTO devices (id, node_id, kind, name, model, zone)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,
                       model = excluded.model, zone = excluded.zone
                   WHERE devices.node_id = excluded.node_id
                   RETURNING id""",
                (d.id, node_id, d.kind.value, d.name, d.model, d.zone),
            )
            if cur.fetchone() is None:
                raise ValueError(f"device {d.id!r} already belongs to another node")


def node_accounts(conn: Conn) -> list[NodeAccount]:
    """Broker accounts of every enabled node."""
    rows = conn.execute(
        "SELECT venue_id, id, password_hash FROM edge_nodes WHERE NOT disabled ORDER BY id"
    ).fetchall()
    return [NodeAccount(site=str(v), node=str(n), password_hash=str(h)) for v, n, h in rows]


class Person(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scope_id: str = Field(pattern=TERRITORY_ID, description="the subtree they work in")
    phone: str | None = None


def add_person(conn: Conn, person: Person) -> None:
    """Insert or update a person; their scope must be a territory node."""
    if conn.execute("SELECT 1 FROM territory WHERE id = %s", (person.scope_id,)).fetchone() is None:
        raise ValueError(f"person {person.id!r}: no territory {person.scope_id!r}")
    conn.execute(
        """INSERT INTO people (id, name, role, scope_id, phone) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role,
               scope_id = excluded.scope_id, phone = excluded.phone""",
        (person.id, person.name, person.role.value, person.scope_id, person.phone),
    )


def add_duty(conn: Conn, grid_id: str, person_id: str, starts: datetime, ends: datetime) -> None:
    """Put a person on duty in a grid for a period."""
    row = conn.execute("SELECT level::text FROM territory WHERE id = %s", (grid_id,)).fetchone()
    if row is None or row[0] != Level.GRID:
        raise ValueError(f"duty: {grid_id!r} is not a grid")
    conn.execute(
        "INSERT INTO duty_roster (grid_id, person_id, starts, ends) VALUES (%s, %s, %s, %s)",
        (grid_id, person_id, starts, ends),
    )

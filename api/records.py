"""The registry's records as the admin API reads and writes them, one at a time, within an area.

One `Kind` per table: how its rows read as the registry file's records (`registry.model`), which
columns a record writes, where its area is (what scopes it), and which references a record must
keep (a venue's grid, a device's node, ...), checked against the database inside the admin's
area. Whole files are planned and applied by `registry.store`; this is the one-record path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Conn
from registry import model as rm

_DAYS = "ARRAY['mon','tue','wed','thu','fri','sat','sun']"


class Invalid(ValueError):
    """A record that does not fit the registry around it; `field` names the field at fault."""

    def __init__(self, field_name: str, message: str, code: str = "", **params: object) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.code = code  # the message's code in api/messages.py, and its parameters
        self.params = params


class Meta(BaseModel):
    """What every record read back carries besides its fields."""

    version: int = Field(description="send it back with an update; a stale one is refused (409)")
    updated_at: datetime


class AreaOut(rm.Area, Meta):
    pass


class VenueOut(rm.Venue, Meta):
    pass


class NodeOut(rm.Node, Meta):
    config_version: int = Field(description="the configuration the node should run")
    running_config_version: int | None = Field(description="the one its last birth reported")
    config_error: str | None = Field(description="why it refused the last configuration sent")
    online: bool | None
    secret_issued_at: datetime | None = Field(description="when its secret was last issued")
    config_behind: bool = Field(description="it runs an older configuration than it should")


class NodeAdded(NodeOut):
    secret: str | None = Field(
        description="its first secret, in this answer only (only a hash is kept); null when the "
        "platform cannot seal secrets yet (no seal key registered: start the ingest once)"
    )


class DeviceOut(rm.Device, Meta):
    venue: str


class PersonOut(rm.Person, Meta):
    pass


class ShiftOut(rm.Shift, Meta):
    pass


class _Update(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    version: int = Field(ge=1, description="the version the change was made against")
    disabled: bool | None = Field(default=None, description="unchanged when left out")


class AreaUpdate(_Update, rm.Area):
    pass


class VenueUpdate(_Update, rm.Venue):
    pass


class NodeUpdate(_Update, rm.Node):
    pass


class DeviceUpdate(_Update, rm.Device):
    pass


class PersonUpdate(_Update, rm.Person):
    pass


class ShiftUpdate(_Update, rm.Shift):
    pass


Columns = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """A kind of registry record: its table, how it reads and writes, what it refers to."""

    name: str  # singular, for messages and audit actions
    plural: str  # in paths
    table: str
    model: type[rm.Record]
    out: type[Meta]
    update: type[_Update]
    select: str  # the Out model's fields in order, FROM ... with the area joined as `a`
    columns: Callable[[Any], Columns]
    check: Callable[[Conn, Any, str], None]
    filters: dict[str, str] = field(default_factory=dict)  # query name -> SQL column
    id_column: str = "id"
    disabled_column: str = "disabled"  # people: `active`, the other way round

    def read(self, conn: Conn, where: str, params: dict[str, Any]) -> list[Meta]:
        cur = conn.execute(self.select + " WHERE " + where, params)
        names = [c.name for c in cur.description or ()]
        return [self.out(**dict(zip(names, r, strict=True))) for r in cur.fetchall()]


def _territory(conn: Conn, area_id: str, scope: str) -> tuple[str, str] | None:
    """The level and path of an area inside `scope`, or None."""
    row = conn.execute(
        "SELECT level::text, path::text FROM territory WHERE id = %s AND path <@ %s::ltree",
        (area_id, scope),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def _grid(conn: Conn, grid_id: str, scope: str, name: str = "grid") -> str:
    found = _territory(conn, grid_id, scope)
    if found is None:
        raise Invalid(name, f"no area {grid_id!r} in your area", "record.no_area", area=grid_id)
    if found[0] != rm.Level.GRID:
        raise Invalid(name, f"{grid_id!r} is a {found[0]}, not a grid", "record.not_grid",
                      area=grid_id, level=found[0])  # fmt: skip
    return found[1]


def _exists_in(conn: Conn, query: str, value: str, scope: str) -> bool:
    return conn.execute(query, (value, scope)).fetchone() is not None


def _check_area(conn: Conn, area: rm.Area, scope: str) -> None:
    if area.parent is None:
        raise Invalid("parent", "a new city is added with a registry file by the platform's owner",
                      "record.new_city")  # fmt: skip
    found = _territory(conn, area.parent, scope)
    if found is None:
        raise Invalid("parent", f"no area {area.parent!r} in your area", "record.no_area",
                      area=area.parent)  # fmt: skip
    wanted = rm.PARENT_LEVEL[area.level]
    if found[0] != wanted:
        raise Invalid("parent", f"a {area.level} sits under a {wanted}, and {area.parent!r} "
                      f"is a {found[0]}", "record.parent_level", level=area.level, wanted=wanted,
                      parent=area.parent, found=found[0])  # fmt: skip


def _check_venue(conn: Conn, venue: rm.Venue, scope: str) -> None:
    _grid(conn, venue.grid, scope)


_VENUE_IN = """SELECT 1 FROM venues v JOIN territory a ON a.id = v.grid_id
               WHERE v.id = %s AND a.path <@ %s::ltree"""
_NODE_IN = """SELECT 1 FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
              JOIN territory a ON a.id = v.grid_id WHERE n.id = %s AND a.path <@ %s::ltree"""


def _check_node(conn: Conn, node: rm.Node, scope: str) -> None:
    if not _exists_in(conn, _VENUE_IN, node.venue, scope):
        raise Invalid("venue", f"no venue {node.venue!r} in your area", "record.no_venue",
                      venue=node.venue)  # fmt: skip


def _check_device(conn: Conn, device: rm.Device, scope: str) -> None:
    if not _exists_in(conn, _NODE_IN, device.node, scope):
        raise Invalid("node", f"no edge node {device.node!r} in your area", "record.no_node",
                      node=device.node)  # fmt: skip


def _check_person(conn: Conn, person: rm.Person, scope: str) -> None:
    if _territory(conn, person.scope, scope) is None:
        raise Invalid("scope", f"no area {person.scope!r} in your area: a person can be given "
                      "only your area or one under it", "record.scope", area=person.scope)  # fmt: skip


def _check_shift(conn: Conn, shift: rm.Shift, scope: str) -> None:
    grid_path = _grid(conn, shift.grid, scope)
    row = conn.execute(
        """SELECT p.role::text, a.path::text, a.path @> %s::ltree FROM people p
           JOIN territory a ON a.id = p.scope_id WHERE p.id = %s AND a.path <@ %s::ltree""",
        (grid_path, shift.person, scope),
    ).fetchone()
    if row is None:
        raise Invalid("person", f"no person {shift.person!r} in your area", "record.no_person",
                      person=shift.person)  # fmt: skip
    if row[0] not in ("grid_worker", "department"):
        raise Invalid("person", f"{shift.person!r} is a {row[0]}: duty shifts are for grid "
                      "workers and departments, who are dispatched tasks", "record.shift_role",
                      person=shift.person, role=row[0])  # fmt: skip
    if not row[2]:
        works = str(row[1]).rsplit(".", 1)[-1]
        raise Invalid("person", f"{shift.person!r} works in {works!r},"
                      f" which does not include grid {shift.grid!r}", "record.shift_grid",
                      person=shift.person, area=works, grid=shift.grid)  # fmt: skip


def _area_columns(a: rm.Area) -> Columns:
    return {"id": a.id, "parent_id": a.parent, "level": a.level.value, "name": a.name,
            "boundary": Jsonb(a.boundary) if a.boundary is not None else None,
            "disabled": a.disabled}  # fmt: skip


def _venue_columns(v: rm.Venue) -> Columns:
    return {
        "id": v.id, "grid_id": v.grid, "name": v.name, "kind": v.kind.value,
        "address": v.address, "latitude": v.location.lat if v.location else None,
        "longitude": v.location.lon if v.location else None, "capacity": v.capacity,
        "is_shelter": v.shelter, "open_24h": v.open_24h, "unstaffed": v.unstaffed,
        "opening_hours": Jsonb(v.opening_hours), "timezone": v.timezone, "disabled": v.disabled,
    }  # fmt: skip


def _node_columns(n: rm.Node) -> Columns:
    return {"id": n.id, "venue_id": n.venue, "name": n.name, "disabled": n.disabled}


def _device_columns(d: rm.Device) -> Columns:
    return {"id": d.id, "node_id": d.node, "kind": d.kind.value, "name": d.name,
            "model": d.model, "zone": d.zone, "driver": d.driver, "settings": Jsonb(d.settings),
            "disabled": d.disabled}  # fmt: skip


def _person_columns(p: rm.Person) -> Columns:
    return {"id": p.id, "name": p.name, "role": p.role.value, "scope_id": p.scope,
            "phone": p.phone, "email": p.email, "wecom_id": p.wecom_id,
            "dingtalk_id": p.dingtalk_id, "language": p.language.value,
            "active": not p.disabled}  # fmt: skip


def _shift_columns(s: rm.Shift) -> Columns:
    return {"id": s.id, "grid_id": s.grid, "person_id": s.person,
            "days": [rm.WEEKDAYS.index(d) + 1 for d in s.days], "starts": s.starts,
            "ends": s.ends, "timezone": s.timezone, "valid_from": s.valid_from,
            "valid_to": s.valid_to, "disabled": s.disabled}  # fmt: skip


AREAS = Kind(
    "area", "areas", "territory", rm.Area, AreaOut, AreaUpdate,
    """SELECT a.id, a.level::text AS level, a.name, a.parent_id AS parent, a.boundary,
              a.disabled, a.version, a.updated_at FROM territory a""",
    _area_columns, _check_area, {"parent": "a.parent_id", "level": "a.level::text"},
)  # fmt: skip
VENUES = Kind(
    "venue", "venues", "venues", rm.Venue, VenueOut, VenueUpdate,
    """SELECT v.id, v.grid_id AS grid, v.name, v.kind::text AS kind, v.address,
              CASE WHEN v.latitude IS NOT NULL
                   THEN jsonb_build_object('lat', v.latitude, 'lon', v.longitude) END AS location,
              v.capacity, v.is_shelter AS shelter, v.open_24h, v.unstaffed, v.opening_hours,
              v.timezone, v.disabled, v.version, v.updated_at
       FROM venues v JOIN territory a ON a.id = v.grid_id""",
    _venue_columns, _check_venue, {"grid": "v.grid_id"},
)  # fmt: skip
NODES = Kind(
    "node", "nodes", "edge_nodes", rm.Node, NodeOut, NodeUpdate,
    """SELECT n.id, n.venue_id AS venue, n.name, n.disabled, n.version, n.updated_at,
              n.config_version, p.config_version AS running_config_version, p.config_error,
              p.online, n.secret_issued_at,
              coalesce(p.config_version < n.config_version, false) AS config_behind
       FROM edge_nodes n JOIN venues v ON v.id = n.venue_id JOIN territory a ON a.id = v.grid_id
       LEFT JOIN node_presence p ON p.node_id = n.id""",
    _node_columns, _check_node, {"venue": "n.venue_id"},
)  # fmt: skip
DEVICES = Kind(
    "device", "devices", "devices", rm.Device, DeviceOut, DeviceUpdate,
    """SELECT d.id, d.node_id AS node, d.kind::text AS kind, d.name, d.model, d.zone, d.driver,
              d.settings, d.disabled, d.version, d.updated_at, n.venue_id AS venue
       FROM devices d JOIN edge_nodes n ON n.id = d.node_id JOIN venues v ON v.id = n.venue_id
       JOIN territory a ON a.id = v.grid_id""",
    _device_columns, _check_device, {"node": "d.node_id", "venue": "n.venue_id",
                                     "kind": "d.kind::text"},
)  # fmt: skip
PEOPLE = Kind(
    "person", "people", "people", rm.Person, PersonOut, PersonUpdate,
    """SELECT p.id, p.name, p.role::text AS role, p.scope_id AS scope, p.phone, p.email,
              p.wecom_id, p.dingtalk_id, p.language, NOT p.active AS disabled, p.version,
              p.updated_at
       FROM people p JOIN territory a ON a.id = p.scope_id""",
    _person_columns, _check_person, {"scope": "p.scope_id", "role": "p.role::text"},
    disabled_column="active",
)  # fmt: skip
SHIFTS = Kind(
    "shift", "duty", "duty_shifts", rm.Shift, ShiftOut, ShiftUpdate,
    f"""SELECT s.id, s.grid_id AS grid, s.person_id AS person,
               ARRAY(SELECT ({_DAYS})[d] FROM unnest(s.days) AS d) AS days,
               to_char(s.starts, 'HH24:MI') AS starts, to_char(s.ends, 'HH24:MI') AS ends,
               s.timezone,
               s.valid_from, s.valid_to, s.disabled, s.version, s.updated_at
        FROM duty_shifts s JOIN territory a ON a.id = s.grid_id""",
    _shift_columns, _check_shift, {"grid": "s.grid_id", "person": "s.person_id"},
)  # fmt: skip

KINDS = (AREAS, VENUES, NODES, DEVICES, PEOPLE, SHIFTS)
_ALIAS = {"territory": "a", "venues": "v", "edge_nodes": "n", "devices": "d", "people": "p",
          "duty_shifts": "s"}  # fmt: skip


def alias(kind: Kind) -> str:
    return _ALIAS[kind.table]


def get(conn: Conn, kind: Kind, record_id: str, scope: str, lock: bool = False) -> Meta | None:
    """The record with this id inside `scope`, or None (outside it is as if it did not exist)."""
    lock_clause = f" FOR UPDATE OF {alias(kind)}" if lock else ""
    found = kind.read(conn, f"{alias(kind)}.id = %(id)s AND a.path <@ %(scope)s::ltree"
                      + lock_clause, {"id": record_id, "scope": scope})  # fmt: skip
    return found[0] if found else None


def listing(
    conn: Conn,
    kind: Kind,
    scope: str,
    filters: dict[str, str],
    include_disabled: bool,
    after: str | None,
    limit: int,
) -> list[Meta]:
    """Records inside `scope` (an area path), by id, from after `after`."""
    where = ["a.path <@ %(scope)s::ltree"]
    params: dict[str, Any] = {"scope": scope, "after": after, "limit": limit}
    for name, value in filters.items():
        where.append(f"{kind.filters[name]} = %({name})s")
        params[name] = value
    if not include_disabled:
        on = f"{alias(kind)}.{kind.disabled_column}"
        where.append(on if kind.disabled_column == "active" else f"NOT {on}")
    if after is not None:
        where.append(f"{alias(kind)}.id > %(after)s")
    return kind.read(conn, " AND ".join(where) + f" ORDER BY {alias(kind)}.id LIMIT %(limit)s",
                     params)  # fmt: skip


def exists(conn: Conn, kind: Kind, record_id: str) -> bool:
    query = sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(kind.table))
    return conn.execute(query, (record_id,)).fetchone() is not None


def insert(conn: Conn, kind: Kind, record: rm.Record) -> None:
    columns = kind.columns(record)
    if kind is AREAS:
        assert isinstance(record, rm.Area) and record.parent is not None
        parent = conn.execute("SELECT path::text FROM territory WHERE id = %s",
                              (record.parent,)).fetchone()  # fmt: skip
        assert parent is not None  # checked
        columns["path"] = f"{parent[0]}.{record.id}"
    names = list(columns)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(kind.table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder(n) for n in names),
    )
    conn.execute(query, columns)


def update(conn: Conn, kind: Kind, record: rm.Record, keep_disabled: bool) -> None:
    """Write a record's columns over its row (its id and, for people, `active` stay: disabling
    someone goes through `ingest.people.set_active`, which ends their tokens)."""
    columns = kind.columns(record)
    columns.pop("id")
    columns.pop("path", None)
    if keep_disabled or kind is PEOPLE:
        columns.pop(kind.disabled_column)
    query = sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(
        sql.Identifier(kind.table),
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in columns
        ),
    )
    conn.execute(query, {**columns, "id": record.model_dump()["id"]})


def set_disabled(conn: Conn, kind: Kind, record_id: str, disabled: bool) -> None:
    if kind is PEOPLE:
        from ingest import people

        people.set_active(conn, record_id, not disabled)
        return
    query = sql.SQL("UPDATE {} SET disabled = %s WHERE id = %s").format(sql.Identifier(kind.table))
    conn.execute(query, (disabled, record_id))


def record_of(kind: Kind, out: Meta) -> rm.Record:
    """The registry record inside what was read back (without version and the rest)."""
    fields = kind.model.model_fields
    return kind.model(**{k: v for k, v in out.model_dump().items() if k in fields})


def changes(before: BaseModel | None, after: BaseModel) -> dict[str, dict[str, Any]]:
    """The fields that differ, as {field: {"before": ..., "after": ...}} (for the audit log)."""
    new = after.model_dump(mode="json", exclude={"version", "updated_at"})
    old = before.model_dump(mode="json", exclude={"version", "updated_at"}) if before else {}
    return {k: {"before": old.get(k), "after": v} for k, v in new.items() if old.get(k) != v}

"""The registry in the database: read it as a document, plan a file against it, apply the plan.

`plan` compares a document with the live registry record by record and field by field; `apply`
writes the plan in bulk (COPY into temporary tables, then one INSERT and one UPDATE per kind)
inside the caller's transaction, with one audit row per changed record. Nothing is deleted: a
record left out of a file is untouched, or with `prune` disabled (people: switched off, which
ends their tokens). Node secrets are never read or written here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from registry import document
from registry.document import Document, Records
from registry.model import (
    KINDS,
    WEEKDAYS,
    Area,
    Device,
    Location,
    Node,
    Person,
    Record,
    Shift,
    Venue,
)

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

SINGULAR = {
    "areas": "area",
    "venues": "venue",
    "nodes": "node",
    "devices": "device",
    "people": "person",
    "duty": "shift",
}


class Action(StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    DISABLED = "disabled"
    ENABLED = "enabled"


class FieldChange(BaseModel):
    """One field of a record, before and after (as the file writes it)."""

    old: Any = None
    new: Any = None


class Change(BaseModel):
    """What happens to one record; an added record's values are `Plan.record(kind, id)`."""

    kind: str = Field(description="the section: areas, venues, nodes, devices, people, duty")
    id: str
    action: Action
    fields: dict[str, FieldChange] = Field(
        default_factory=dict, description="changed fields, old and new (empty when added)"
    )


class Plan(BaseModel):
    """The changes a document makes to the live registry, in the order they are applied."""

    changes: list[Change] = Field(default_factory=list)
    prune: bool = False
    scope: str | None = None
    _doc: Document = PrivateAttr(default_factory=Document)
    _paths: dict[str, str] = PrivateAttr(default_factory=dict)  # every area's path
    _moved: list[str] = PrivateAttr(default_factory=list)  # registered areas whose path moves

    @property
    def empty(self) -> bool:
        return not self.changes

    def record(self, kind: str, rid: str) -> Record | None:
        """The record as the file has it (for added, changed, and enabled or disabled by the file)."""
        return self._doc.records[kind].get(rid)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind, how many records each action touches."""
        out: dict[str, dict[str, int]] = {}
        for (kind, action), n in Counter((c.kind, c.action.value) for c in self.changes).items():
            out.setdefault(kind, {})[action] = n
        return out


# --- reading ------------------------------------------------------------------------------------

_READ = {
    "areas": "SELECT id, level::text, name, parent_id, boundary, disabled, path::text "
    "FROM territory ORDER BY path",
    "venues": "SELECT id, grid_id, name, kind::text, address, latitude, longitude, capacity, "
    "is_shelter, open_24h, unstaffed, opening_hours, timezone, disabled FROM venues ORDER BY id",
    "nodes": "SELECT id, venue_id, name, disabled FROM edge_nodes ORDER BY id",
    "devices": "SELECT id, node_id, kind::text, name, model, zone, driver, settings, disabled "
    "FROM devices ORDER BY id",
    "people": "SELECT id, name, role::text, scope_id, phone, email, wecom_id, dingtalk_id, "
    "language, active FROM people ORDER BY id",
    "duty": "SELECT id, grid_id, person_id, days, to_char(starts, 'HH24:MI'), "
    "to_char(ends, 'HH24:MI'), timezone, valid_from, valid_to, disabled FROM duty_shifts ORDER BY id",
}


def _area(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "level": r[1],
        "name": r[2],
        "parent": r[3],
        "boundary": r[4],
        "disabled": r[5],
    }


def _venue(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "grid": r[1],
        "name": r[2],
        "kind": r[3],
        "address": r[4],
        "location": None if r[5] is None else {"lat": r[5], "lon": r[6]},
        "capacity": r[7],
        "shelter": r[8],
        "open_24h": r[9],
        "unstaffed": r[10],
        "opening_hours": r[11],
        "timezone": r[12],
        "disabled": r[13],
    }


def _node(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": r[0], "venue": r[1], "name": r[2], "disabled": r[3]}


def _device(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "node": r[1],
        "kind": r[2],
        "name": r[3],
        "model": r[4],
        "zone": r[5],
        "driver": r[6],
        "settings": r[7],
        "disabled": r[8],
    }


def _person(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "name": r[1],
        "role": r[2],
        "scope": r[3],
        "phone": r[4],
        "email": r[5],
        "wecom_id": r[6],
        "dingtalk_id": r[7],
        "language": r[8],
        "disabled": not r[9],
    }


def _shift(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "grid": r[1],
        "person": r[2],
        "days": [WEEKDAYS[d - 1] for d in r[3]],
        "starts": r[4],
        "ends": r[5],
        "timezone": r[6],
        "valid_from": r[7],
        "valid_to": r[8],
        "disabled": r[9],
    }


_FROM_ROW: dict[str, Callable[[Sequence[Any]], dict[str, Any]]] = {
    "areas": _area,
    "venues": _venue,
    "nodes": _node,
    "devices": _device,
    "people": _person,
    "duty": _shift,
}


def read(conn: Conn) -> Document:
    """The live registry as a document (disabled records too; never a secret)."""
    doc = Document(filename="the registry")
    for kind, record, _ in _live(conn):
        doc.add(kind, record)
    return doc


def _live(conn: Conn) -> Iterator[tuple[str, Record, str | None]]:
    """Every registered record, kind by kind (parents first), streamed from a server-side
    cursor so that a province's registry is never held twice; an area comes with its path."""
    with conn.transaction():
        for kind, query in _READ.items():
            model, convert = KINDS[kind], _FROM_ROW[kind]
            with conn.cursor(name=f"registry_read_{kind}") as cur:
                cur.itersize = 5000
                cur.execute(query)
                for row in cur:
                    data = convert(row)
                    try:
                        record = model.model_validate(data)
                    except ValidationError as exc:
                        # Registered before the file's checks existed: kept as it is, so
                        # export shows it and a file can correct it.
                        log.warning(
                            "registry record does not pass today's checks kind=%s id=%s: %s",
                            kind,
                            data["id"],
                            exc.errors()[0]["msg"],
                        )
                        record = model.model_construct(**data)
                    yield kind, record, str(row[6]) if kind == "areas" else None


# --- planning -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A field value as the file writes it (JSON)."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Location):
        return value.model_dump()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, date):
        return value.isoformat()
    return value


def _diff(old: Record, new: Record) -> dict[str, FieldChange]:
    if old.__dict__ == new.__dict__:
        return {}
    return {
        name: FieldChange(old=_plain(a), new=_plain(b))
        for name in type(new).model_fields
        if (a := getattr(old, name)) != (b := getattr(new, name))
    }


def area_paths(areas: dict[str, Area]) -> dict[str, str]:
    """Each area's ltree path (ids from the city down)."""
    paths: dict[str, str] = {}

    def path(rid: str) -> str:
        if rid not in paths:
            parent = areas[rid].parent
            paths[rid] = rid if parent is None else f"{path(parent)}.{rid}"
        return paths[rid]

    for rid in areas:
        path(rid)
    return paths


def plan(conn: Conn, doc: Document, *, prune: bool = False, scope: str | None = None) -> Plan:
    """What applying `doc` would change. References may resolve to registered records the file
    does not list, unless `prune` (then the file is the whole registry, within `scope`). With
    `scope` (an area id), every record of the file must lie in that subtree and only records
    there are pruned. Raises RegistryFileError naming every problem, with its file and line."""
    # Of the live registry only what the checks and the plan need is kept: every area, the
    # records the file does not list, and the old versions of those it changes.
    registered: Records = {kind: {} for kind in KINDS}
    seen: dict[str, set[str]] = {kind: set() for kind in KINDS}
    diffs: dict[str, dict[str, dict[str, FieldChange]]] = {kind: {} for kind in KINDS}
    live_paths: dict[str, str] = {}
    for kind, old, path in _live(conn):
        rid = str(getattr(old, "id"))  # noqa: B009
        new = doc.records[kind].get(rid)
        if path is not None:
            live_paths[rid] = path
            registered[kind][rid] = old
        if new is None:
            registered[kind][rid] = old
            continue
        seen[kind].add(rid)
        if kind == "people" and "language" not in new.model_fields_set:
            # A file that names no language leaves a registered person's as it is: it may be
            # their own choice (the console's switch), which a re-applied file must not undo.
            new = new.model_copy(update={"language": getattr(old, "language")})  # noqa: B009
            doc.records[kind][rid] = new
        fields = _diff(old, new)
        if fields:
            diffs[kind][rid] = fields
            registered[kind][rid] = old
    document.check(doc, registered, prune=prune, scope=scope)
    result = Plan(prune=prune, scope=scope)
    result._doc = doc
    for kind in KINDS:
        for rid, record in doc.records[kind].items():
            if rid not in seen[kind]:
                result.changes.append(Change(kind=kind, id=rid, action=Action.ADDED))
                continue
            changed = diffs[kind].get(rid)
            if not changed:
                continue
            action = Action.CHANGED
            if "disabled" in changed:
                action = Action.DISABLED if record.disabled else Action.ENABLED
            result.changes.append(Change(kind=kind, id=rid, action=action, fields=changed))
    if prune:
        known: Records = {k: {**registered[k], **doc.records[k]} for k in KINDS}
        areas = cast(dict[str, Area], known["areas"])
        for kind in KINDS:
            for rid, old in registered[kind].items():
                if rid in doc.records[kind] or old.disabled or (kind == "areas" and rid == scope):
                    continue  # the area a scoped file is for is its root, never pruned by it
                if scope is not None and not document.within(
                    document.area_of(kind, old, known), scope, areas
                ):
                    continue
                result.changes.append(
                    Change(
                        kind=kind,
                        id=rid,
                        action=Action.DISABLED,
                        fields={"disabled": FieldChange(old=False, new=True)},
                    )
                )
    # An area that moved takes its subtree's paths with it.
    result._paths = area_paths({**cast(dict[str, Area], registered["areas"]), **doc.areas})
    result._moved = [
        rid for rid, path in result._paths.items() if rid in live_paths and live_paths[rid] != path
    ]
    return result


# --- applying -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # the id first
    row: Callable[[Any, dict[str, str]], tuple[Any, ...]]
    jsonb: tuple[str, ...] = ()


def _area_row(a: Area, paths: dict[str, str]) -> tuple[Any, ...]:
    return (
        a.id,
        a.parent,
        a.level.value,
        a.name,
        paths[a.id],
        None if a.boundary is None else Jsonb(a.boundary),
        a.disabled,
    )


def _venue_row(v: Venue, _: dict[str, str]) -> tuple[Any, ...]:
    lat, lon = (v.location.lat, v.location.lon) if v.location else (None, None)
    return (
        v.id,
        v.grid,
        v.name,
        v.kind.value,
        v.address,
        lat,
        lon,
        v.capacity,
        v.shelter,
        v.open_24h,
        v.unstaffed,
        Jsonb(_plain(v.opening_hours)),
        v.timezone,
        v.disabled,
    )


def _node_row(n: Node, _: dict[str, str]) -> tuple[Any, ...]:
    return (n.id, n.venue, n.name, n.disabled)


def _device_row(d: Device, _: dict[str, str]) -> tuple[Any, ...]:
    return (
        d.id,
        d.node,
        d.kind.value,
        d.name,
        d.model,
        d.zone,
        d.driver,
        Jsonb(d.settings),
        d.disabled,
    )


def _person_row(p: Person, _: dict[str, str]) -> tuple[Any, ...]:
    return (
        p.id,
        p.name,
        p.role.value,
        p.scope,
        p.phone,
        p.email,
        p.wecom_id,
        p.dingtalk_id,
        p.language.value,
        not p.disabled,
    )


def _shift_row(s: Shift, _: dict[str, str]) -> tuple[Any, ...]:
    return (
        s.id,
        s.grid,
        s.person,
        [WEEKDAYS.index(d) + 1 for d in s.days],
        s.starts,
        s.ends,
        s.timezone,
        s.valid_from,
        s.valid_to,
        s.disabled,
    )


TABLES: dict[str, _Table] = {
    "areas": _Table(
        "territory", ("id", "parent_id", "level", "name", "path", "boundary", "disabled"), _area_row
    ),
    "venues": _Table(
        "venues",
        (
            "id",
            "grid_id",
            "name",
            "kind",
            "address",
            "latitude",
            "longitude",
            "capacity",
            "is_shelter",
            "open_24h",
            "unstaffed",
            "opening_hours",
            "timezone",
            "disabled",
        ),
        _venue_row,
    ),
    "nodes": _Table("edge_nodes", ("id", "venue_id", "name", "disabled"), _node_row),
    "devices": _Table(
        "devices",
        ("id", "node_id", "kind", "name", "model", "zone", "driver", "settings", "disabled"),
        _device_row,
    ),
    "people": _Table(
        "people",
        (
            "id",
            "name",
            "role",
            "scope_id",
            "phone",
            "email",
            "wecom_id",
            "dingtalk_id",
            "language",
            "active",
        ),
        _person_row,
    ),
    "duty": _Table(
        "duty_shifts",
        (
            "id",
            "grid_id",
            "person_id",
            "days",
            "starts",
            "ends",
            "timezone",
            "valid_from",
            "valid_to",
            "disabled",
        ),
        _shift_row,
    ),
}
"""Where each section is kept: the table, its columns and how a record becomes a row."""


def apply(conn: Conn, plan: Plan, actor: str, *, client: str = "", audit: bool = True) -> None:
    """Write the plan in one transaction (a savepoint inside the caller's, if it has one), with
    one audit row per changed record from `actor` (and `client`, the audit log's client).
    `audit=False` is for throwaway test and benchmark databases only."""
    unbacked = [c for c in plan.changes
                if c.action is not Action.DISABLED and plan.record(c.kind, c.id) is None]  # fmt: skip
    if unbacked:
        raise ValueError(
            f"this plan does not hold the records it adds or changes ({unbacked[0].kind} "
            f"{unbacked[0].id}, …): a plan read back from JSON cannot be applied; plan the file "
            "again and apply that plan, in the same transaction"
        )
    with conn.transaction():
        by_kind: dict[str, list[Change]] = {}
        for change in plan.changes:
            by_kind.setdefault(change.kind, []).append(change)
        for kind in KINDS:  # parents first
            changes = by_kind.get(kind, [])
            written = [c for c in changes if plan.record(c.kind, c.id) is not None]
            pruned = [c.id for c in changes if plan.record(c.kind, c.id) is None]
            if kind == "areas":
                _write_areas(conn, plan, written)
            elif written:
                _write(conn, TABLES[kind], plan, written, {})
            if pruned:
                _disable(conn, kind, pruned)
        if audit:
            _audit(conn, plan, actor, client)
    log.info(
        "registry applied changes=%d by=%s %s",
        len(plan.changes),
        actor,
        " ".join(f"{k}:{dict(v)}" for k, v in plan.counts().items()),
    )


def _write_areas(conn: Conn, plan: Plan, written: list[Change]) -> None:
    table = TABLES["areas"]
    _write(conn, table, plan, written, plan._paths)
    # Areas the file does not list whose path moved with a parent.
    listed = {c.id for c in written}
    moved = [(plan._paths[rid], rid) for rid in plan._moved if rid not in listed]
    if moved:
        with conn.cursor() as cur:
            cur.executemany("UPDATE territory SET path = %s::ltree WHERE id = %s", moved)


def _write(
    conn: Conn, table: _Table, plan: Plan, changes: list[Change], paths: dict[str, str]
) -> None:
    tmp = sql.Identifier(f"registry_load_{table.name}")
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    target = sql.Identifier(table.name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tmp))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, true AS new_ FROM {} WITH NO DATA"
        ).format(tmp, cols, target)
    )
    with conn.cursor() as cur:
        copy_cols = sql.SQL(", ").join(map(sql.Identifier, (*table.columns, "new_")))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(tmp, copy_cols)) as copy:
            for c in changes:
                record = plan.record(c.kind, c.id)
                copy.write_row((*table.row(record, paths), c.action is Action.ADDED))
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE new_").format(
                target, cols, cols, tmp
            )
        )
        sets: list[sql.Composable] = [
            sql.SQL("{} = t.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in table.columns[1:]
        ]
        if table.name == "people":  # switched off: their tokens end (ingest.people.set_active)
            sets.append(
                sql.SQL(
                    "valid_after = CASE WHEN x.active AND NOT t.active "
                    "THEN clock_timestamp() ELSE x.valid_after END"
                )
            )
        cur.execute(
            sql.SQL("UPDATE {} x SET {} FROM {} t WHERE x.id = t.id AND NOT t.new_").format(
                target, sql.SQL(", ").join(sets), tmp
            )
        )
    conn.execute(sql.SQL("DROP TABLE {}").format(tmp))


def _disable(conn: Conn, kind: str, ids: list[str]) -> None:
    if kind == "people":  # as ingest.people.set_active does: their tokens end at once
        conn.execute(
            """UPDATE people SET active = false, valid_after = clock_timestamp()
               WHERE id = ANY(%s) AND active""",
            (ids,),
        )
        return
    conn.execute(
        sql.SQL("UPDATE {} SET disabled = true WHERE id = ANY(%s)").format(
            sql.Identifier(TABLES[kind].name)
        ),
        (ids,),
    )


def _audit(conn: Conn, plan: Plan, actor: str, client: str) -> None:
    if not plan.changes:
        return
    with conn.cursor() as cur:
        query = "COPY audit_log (person_id, action, target, detail, client) FROM STDIN"
        with cur.copy(query) as copy:
            for c in plan.changes:
                if c.action is Action.ADDED:
                    record = plan.record(c.kind, c.id)
                    assert record is not None
                    detail: dict[str, Any] = {
                        "record": _plain(record.model_dump(exclude_defaults=True))
                    }
                else:
                    detail = {"fields": {k: [f.old, f.new] for k, f in c.fields.items()}}
                if plan.scope:
                    detail["scope"] = plan.scope
                copy.write_row(
                    (
                        actor,
                        f"registry.{c.action.value}",
                        f"{SINGULAR[c.kind]}:{c.id}",
                        Jsonb(detail),
                        client,
                    )
                )


# --- for people -------------------------------------------------------------------------------


def summary(plan: Plan) -> str:
    """`3 added, 1 changed, 0 disabled, 0 enabled` over the whole plan."""
    totals = Counter(c.action for c in plan.changes)
    return ", ".join(f"{totals.get(a, 0)} {a.value}" for a in Action)


def format_plan(plan: Plan, *, limit: int | None = 200) -> str:
    """The plan for people: counts per kind, then each change with its fields (the first
    `limit` changes; None: all)."""
    if plan.empty:
        return "no changes: the registry already matches the file"
    lines = [f"plan: {summary(plan)}" + (" (pruning)" if plan.prune else "")]
    for kind, counts in plan.counts().items():
        lines.append(f"  {kind:8} " + ", ".join(f"{n} {a}" for a, n in counts.items()))
    lines.append("")
    marks = {Action.ADDED: "+", Action.CHANGED: "~", Action.DISABLED: "-", Action.ENABLED: "^"}
    shown = plan.changes if limit is None else plan.changes[:limit]
    for c in shown:
        head = f"{marks[c.action]} {SINGULAR[c.kind]} {c.id} {c.action.value}"
        if c.action is Action.ADDED:
            record = plan.record(c.kind, c.id)
            values = _plain(record.model_dump(exclude_defaults=True)) if record else {}
            values.pop("id", None)
            lines.append(head + ": " + ", ".join(f"{k}={_show(v)}" for k, v in values.items()))
            continue
        lines.append(head)
        for name, f in c.fields.items():
            lines.append(f"    {name}: {_show(f.old)} → {_show(f.new)}")
    if limit is not None and len(plan.changes) > limit:
        lines.append(f"... and {len(plan.changes) - limit} more changes")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def put(
    conn: Conn, records: Sequence[Record], actor: str, *, client: str = "", audit: bool = True
) -> Plan:
    """Add or change a few records (a partial registry: nothing is pruned) as a registry file
    would, with the same checks and audit; the plan that was applied."""
    doc = Document(filename="<command line>")
    for record in records:
        kind = next(k for k, model in KINDS.items() if isinstance(record, model))
        doc.add(kind, record)
    applied = plan(conn, doc)
    apply(conn, applied, actor, client=client, audit=audit)
    return applied

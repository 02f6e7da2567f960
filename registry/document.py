"""Reading a registry file: YAML with CSV for the long sections, every record and field with its line.

A file is `version: 1` and the sections of `registry.model.KINDS`, each a list of records; the
long ones (devices, people, duty) may instead name a CSV file beside it (`devices: {csv:
devices.csv}`). Every problem is collected (up to MAX_ERRORS) and raised as one
`RegistryFileError` whose lines read `city.yaml:42: venues[3] (v0001) capacity: must be greater
than 0`. What needs the database as well as the file (an unknown parent that may be registered
already, the scope of an upload) is checked by `check`, which `registry.store.plan` calls.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

try:
    from yaml import CSafeLoader as _SafeBase  # libyaml: a province's file in seconds
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeBase  # type: ignore[assignment]

from gateway.topics import ID_PATTERN
from registry.model import (
    KINDS,
    PARENT_LEVEL,
    PERSON_ID,
    TERRITORY_ID,
    Area,
    Device,
    Level,
    Node,
    Person,
    Record,
    Shift,
    Venue,
)

FORMAT_VERSION = 1
MAX_ERRORS = 100
CSV_SECTIONS = ("devices", "people", "duty")
# CSV cells holding JSON, and cells holding a comma-separated list.
JSON_FIELDS = frozenset({"settings", "opening_hours", "location", "boundary"})
LIST_FIELDS = frozenset({"days"})

Records = dict[str, dict[str, Record]]
"""Section → id → record, in the order given."""


class RegistryFileError(ValueError):
    """A registry file that cannot be applied; `errors` has one line per problem."""

    def __init__(self, errors: list[str], more: int = 0) -> None:
        self.errors = errors
        self.more = more
        tail = [f"... and {more} more problems"] if more else []
        super().__init__("\n".join(errors + tail))


@dataclass(frozen=True, slots=True)
class Where:
    """Where a record is written: file, line, place in its section, and each field's line."""

    file: str
    line: int
    index: int
    fields: dict[str, int] | None = None  # None: every field on the record's line (CSV)


@dataclass(slots=True)
class Document:
    """A registry: its records by section, and (read from a file) where each one is written."""

    records: Records = field(default_factory=lambda: {kind: {} for kind in KINDS})
    where: dict[tuple[str, str], Where] = field(default_factory=dict)
    filename: str = "<registry>"

    def section(self, kind: str) -> dict[str, Record]:
        return self.records[kind]

    @property
    def areas(self) -> dict[str, Area]:
        return cast(dict[str, Area], self.records["areas"])

    @property
    def venues(self) -> dict[str, Venue]:
        return cast(dict[str, Venue], self.records["venues"])

    @property
    def nodes(self) -> dict[str, Node]:
        return cast(dict[str, Node], self.records["nodes"])

    @property
    def devices(self) -> dict[str, Device]:
        return cast(dict[str, Device], self.records["devices"])

    @property
    def people(self) -> dict[str, Person]:
        return cast(dict[str, Person], self.records["people"])

    @property
    def duty(self) -> dict[str, Shift]:
        return cast(dict[str, Shift], self.records["duty"])

    def add(self, kind: str, record: Record, where: Where | None = None) -> None:
        rid = str(getattr(record, "id"))  # noqa: B009 - every record kind has an id
        self.records[kind][rid] = record
        if where is not None:
            self.where[(kind, rid)] = where

    def count(self) -> int:
        return sum(len(s) for s in self.records.values())

    def locate(self, kind: str, rid: str, field_name: str | None = None) -> str:
        """`file:line: kind[i] (id) field` for a message about a record (or one of its fields)."""
        w = self.where.get((kind, rid))
        what = f"{kind}[{w.index}] ({rid})" if w else f"{kind} ({rid})"
        if field_name:
            what += f" {field_name}"
        if w is None:
            return f"{self.filename}: {what}"
        line = w.fields.get(field_name, w.line) if field_name and w.fields else w.line
        return f"{w.file}:{line}: {what}"


class Problems:
    """The problems found so far, capped at MAX_ERRORS (the rest are only counted)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise RegistryFileError(self.errors, self.more)


# --- YAML: the YAML 1.2 core scalars, so 20:30 stays a time and `no` stays a word ---------------


class _Loader(_SafeBase):
    """Safe YAML, with only true/false as booleans and plain decimal numbers: YAML 1.1 would read
    20:30 as the number 1230 (base 60) and a field `on:` as True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+)$"
    ),
    list("-+0123456789."),
)


def load(path: Path | str) -> Document:
    """Read a registry file (and the CSV files it names, relative to it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RegistryFileError([f"{path.name}: not UTF-8 text; save it as UTF-8"]) from None
    except OSError as exc:
        raise RegistryFileError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    return load_text(text, path.name, folder=path.parent)


def load_text(text: str, filename: str, *, folder: Path | None = None) -> Document:
    """Read a registry file given as text (an upload). CSV sections are read from `folder`; an
    upload has none, so its sections are all in the YAML."""
    problems = Problems()
    doc = Document(filename=filename)
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            reason = " ".join(str(exc.problem or exc.context or "not YAML").split())
            raise RegistryFileError([f"{filename}{line}: not valid YAML: {reason}"]) from None
        except yaml.YAMLError as exc:
            raise RegistryFileError([f"{filename}: not valid YAML: {exc}"]) from None
        if root is None:
            raise RegistryFileError([f"{filename}: the file is empty; start it with `version: 1`"])
        if not isinstance(root, yaml.MappingNode):
            raise RegistryFileError(
                [
                    f"{filename}:{_line(root)}: a registry file is a mapping: version: 1, then the "
                    f"sections {', '.join(KINDS)}"
                ]
            )
        _read_root(loader, root, doc, problems, folder)
    finally:
        loader.dispose()
    problems.raise_if_any()
    return doc


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _read_root(
    loader: _Loader, root: yaml.MappingNode, doc: Document, problems: Problems, folder: Path | None
) -> None:
    name = doc.filename
    version: Any = None
    seen: dict[str, int] = {}
    for key_node, value_node in root.value:
        key = loader.construct_object(key_node, deep=True)
        where = f"{name}:{_line(key_node)}"
        if not isinstance(key, str):
            problems.add(f"{where}: {key!r} is not a section name")
            continue
        if key in seen:
            problems.add(f"{where}: section {key} is given twice (first at line {seen[key]})")
            continue
        seen[key] = _line(key_node)
        if key == "version":
            version = loader.construct_object(value_node, deep=True)
        elif key not in KINDS:
            problems.add(
                f"{where}: unknown section {key!r}: the sections are version, {', '.join(KINDS)}"
            )
        elif isinstance(value_node, yaml.SequenceNode):
            _read_yaml_section(loader, key, value_node, doc, problems)
        elif isinstance(value_node, yaml.MappingNode) and key in CSV_SECTIONS:
            spec = loader.construct_object(value_node, deep=True)
            if set(spec) != {"csv"} or not isinstance(spec["csv"], str):
                problems.add(f"{where}: {key}: give a list of records, or {{csv: FILE.csv}}")
            elif folder is None:
                problems.add(
                    f"{where}: {key}: an uploaded file cannot name a CSV file; put the "
                    "records in the YAML"
                )
            else:
                _read_csv_section(folder / spec["csv"], key, doc, problems)
        elif isinstance(value_node, yaml.ScalarNode) and value_node.value in ("", "~", "null"):
            pass  # an empty section
        else:
            also = " (or {csv: FILE.csv})" if key in CSV_SECTIONS else ""
            problems.add(f"{where}: {key}: a section is a list of records{also}")
    if version is None:
        problems.add(f"{name}:1: no `version: 1` at the top of the file")
    elif version != FORMAT_VERSION:
        problems.add(
            f"{name}:{seen['version']}: version {version!r} is not one this gridwatch "
            f"reads (it reads version {FORMAT_VERSION})"
        )


def _read_yaml_section(
    loader: _Loader, kind: str, seq: yaml.SequenceNode, doc: Document, problems: Problems
) -> None:
    for index, item in enumerate(seq.value):
        here = f"{doc.filename}:{_line(item)}: {kind}[{index}]"
        if not isinstance(item, yaml.MappingNode):
            problems.add(f"{here}: a record is a mapping of fields (name: value)")
            continue
        data: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in item.value:
            key = str(loader.construct_object(key_node, deep=True))
            if key in data:
                problems.add(
                    f"{doc.filename}:{_line(key_node)}: {kind}[{index}] {key}: given "
                    f"twice in one record (first at line {lines[key]})"
                )
                continue
            data[key] = loader.construct_object(value_node, deep=True)
            lines[key] = _line(key_node)
        _add_record(doc, problems, kind, data, Where(doc.filename, _line(item), index, lines))


def _read_csv_section(path: Path, kind: str, doc: Document, problems: Problems) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError:
        problems.add(f"{path.name}: not UTF-8 text; save it as CSV UTF-8")
        return
    except OSError as exc:
        problems.add(f"{path.name}: cannot be read ({exc.strerror or exc}); {kind} names it")
        return
    fields = KINDS[kind].model_fields
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        problems.add(f"{path.name}:1: empty; the first line names the columns")
        return
    for column in header:
        if column not in fields:
            problems.add(
                f"{path.name}:1: unknown column {column!r}: the columns of {kind} are "
                f"{', '.join(fields)}"
            )
    if problems:
        return
    index = 0
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        here = f"{path.name}:{start}: {kind}[{index}]"
        if len(row) > len(header):
            problems.add(f"{here}: {len(row)} cells for {len(header)} columns")
            index += 1
            continue
        data: dict[str, Any] = {}
        bad = False
        for column, raw in zip(header, row, strict=False):
            cell = raw.strip()
            if not cell:
                continue  # an empty cell: the field is absent
            if column in JSON_FIELDS:
                try:
                    data[column] = json.loads(cell)
                except json.JSONDecodeError as exc:
                    problems.add(f'{here} {column}: not JSON ({exc.msg}), e.g. {{"port": 80}}')
                    bad = True
            elif column in LIST_FIELDS:
                data[column] = [part.strip() for part in cell.split(",") if part.strip()]
            else:
                data[column] = cell
        if not bad:
            _add_record(doc, problems, kind, data, Where(path.name, start, index))
        index += 1


def _add_record(
    doc: Document, problems: Problems, kind: str, data: dict[str, Any], where: Where
) -> None:
    model = KINDS[kind]
    rid = data.get("id")
    label = f"{kind}[{where.index}]" + (f" ({rid})" if isinstance(rid, str | int) else "")
    try:
        record = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            name = str(loc[0]) if loc else None
            line = where.fields.get(name, where.line) if name and where.fields else where.line
            path = ".".join(str(p) for p in loc)
            problems.add(
                f"{where.file}:{line}: {label}{' ' + path if path else ''}: {_message(error)}"
            )
        return
    rid = str(getattr(record, "id"))  # noqa: B009
    first = doc.where.get((kind, rid))
    if first is not None:
        other = doc.records[kind][rid]
        if kind == "devices" and cast(Device, other).node != cast(Device, record).node:
            problems.add(
                f"{where.file}:{where.line}: {label}: device {rid} is listed under two nodes, "
                f"{cast(Device, other).node} ({first.file}:{first.line}) and "
                f"{cast(Device, record).node}; a device belongs to one node"
            )
        else:
            problems.add(
                f"{where.file}:{where.line}: {label}: duplicate id {rid} in {kind} "
                f"(first at {first.file}:{first.line})"
            )
        return
    doc.add(kind, record, where)


_PATTERNS = {
    ID_PATTERN: "1 to 64 letters, digits, _ or -, starting with a letter or digit (it becomes "
    "an MQTT topic level, so no / + # or spaces)",
    TERRITORY_ID: "1 to 64 letters, digits or _",
    PERSON_ID: "1 to 64 letters, digits, _ . or -, starting with a letter or digit",
}


def _message(error: Mapping[str, Any]) -> str:
    """A pydantic error as a sentence for the person who wrote the file."""
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field (check its spelling)"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{given!r} is not valid: use {_PATTERNS.get(pattern, 'the pattern ' + pattern)}"
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be").replace("String should", "must")
    msg = msg.replace("Value should", "must").replace("List should", "must")
    if kind in ("enum", "literal_error", "bool_parsing", "int_parsing", "float_parsing"):
        msg += f" (got {given!r})"
    return msg


# --- checks that need every record (the file's, and with them the database's) ------------------


def check(
    doc: Document,
    registered: Records | None = None,
    *,
    prune: bool = False,
    scope: str | None = None,
) -> None:
    """Cross-record checks: parents, grids, venues, nodes, people and scopes must exist (in the
    file, or without `prune` already registered) and be of the right level; with `scope`, every
    record must lie in that area's subtree. Raises RegistryFileError with every problem."""
    problems = Problems()
    known: Records = {
        kind: (
            dict(doc.records[kind])
            if prune or registered is None
            else {**registered.get(kind, {}), **doc.records[kind]}
        )
        for kind in KINDS
    }
    if prune and scope is not None and registered is not None:
        # A scoped file is the whole of its subtree, not of the registry: it may name the area
        # it is scoped to and the areas above it without listing them.
        areas_before = cast(dict[str, Area], registered.get("areas", {}))
        for above in ancestors(scope, areas_before):
            if above in areas_before:
                known["areas"].setdefault(above, areas_before[above])
    areas = cast(dict[str, Area], known["areas"])
    where_else = "" if prune or registered is None else " or the registry"
    hint = " in the file" + where_else

    def need_area(kind: str, rid: str, name: str, ref: str, level: Level | None) -> None:
        area = areas.get(ref)
        if area is None:
            problems.add(f"{doc.locate(kind, rid, name)}: no area {ref!r}{hint}")
        elif level is not None and area.level is not level:
            problems.add(f"{doc.locate(kind, rid, name)}: {ref} is a {area.level}, not a {level}")

    for rid, a in doc.areas.items():
        if a.parent is None:
            continue
        parent = areas.get(a.parent)
        wanted = PARENT_LEVEL[a.level]
        if parent is None:
            problems.add(f"{doc.locate('areas', rid, 'parent')}: unknown parent {a.parent!r}{hint}")
        elif parent.level is not wanted:
            problems.add(
                f"{doc.locate('areas', rid, 'parent')}: a {a.level} sits under a "
                f"{wanted}, and {a.parent} is a {parent.level}"
            )
    _check_cycles(doc, areas, problems)
    for rid, v in doc.venues.items():
        need_area("venues", rid, "grid", v.grid, Level.GRID)
    for rid, n in doc.nodes.items():
        if n.venue not in known["venues"]:
            problems.add(f"{doc.locate('nodes', rid, 'venue')}: no venue {n.venue!r}{hint}")
    for rid, d in doc.devices.items():
        if d.node not in known["nodes"]:
            problems.add(f"{doc.locate('devices', rid, 'node')}: no node {d.node!r}{hint}")
    for rid, p in doc.people.items():
        need_area("people", rid, "scope", p.scope, None)
    for rid, s in doc.duty.items():
        need_area("duty", rid, "grid", s.grid, Level.GRID)
        if s.person not in known["people"]:
            problems.add(f"{doc.locate('duty', rid, 'person')}: no person {s.person!r}{hint}")
    if scope is not None and not problems:
        # Where a record lies is read from the whole tree, the file's and the registry's.
        everything = {k: {**(registered or {}).get(k, {}), **doc.records[k]} for k in KINDS}
        _check_scope(doc, everything, registered or {}, scope, problems)
    problems.raise_if_any()


def _check_cycles(doc: Document, areas: Mapping[str, Area], problems: Problems) -> None:
    for rid in doc.areas:
        seen = {rid}
        parent = areas[rid].parent
        while parent is not None and parent in areas:
            if parent in seen:
                problems.add(
                    f"{doc.locate('areas', rid, 'parent')}: the areas' parents go round in a circle"
                )
                break
            seen.add(parent)
            parent = areas[parent].parent


def area_of(kind: str, record: Record, known: Records) -> str | None:
    """The area a record belongs to: an area itself, a venue's or shift's grid, a node's venue's
    grid, a device's node's, a person's scope (None when a link is missing)."""
    if isinstance(record, Area):
        return record.id
    if isinstance(record, Venue | Shift):
        return record.grid
    if isinstance(record, Person):
        return record.scope
    if isinstance(record, Device):
        node = known["nodes"].get(record.node)
        return area_of("nodes", node, known) if node is not None else None
    if isinstance(record, Node):
        venue = known["venues"].get(record.venue)
        return cast(Venue, venue).grid if venue is not None else None
    return None


def ancestors(area_id: str, areas: Mapping[str, Area]) -> Iterator[str]:
    """The area and its parents up to the city."""
    seen: set[str] = set()
    current: str | None = area_id
    while current is not None and current not in seen:
        seen.add(current)
        yield current
        area = areas.get(current)
        current = area.parent if area is not None else None


def within(area_id: str | None, scope: str, areas: Mapping[str, Area]) -> bool:
    return area_id is not None and scope in ancestors(area_id, areas)


def _check_scope(
    doc: Document, known: Records, registered: Records, scope: str, problems: Problems
) -> None:
    areas = cast(dict[str, Area], known["areas"])
    if scope not in areas:
        problems.add(f"{doc.filename}: the scope {scope!r} is not an area of the registry")
        return
    # Where records were before: as registered, or, for those the file lists unchanged (the
    # plan keeps no copy of those), as the file has them, which is the same.
    was: Records = {k: {**doc.records[k], **registered.get(k, {})} for k in doc.records}
    was_areas = cast(dict[str, Area], registered.get("areas", {}))
    for kind, records in doc.records.items():
        for rid, record in records.items():
            if isinstance(record, Area) and rid == scope:
                before = was_areas.get(rid)
                if before is not None and before.parent != record.parent:
                    problems.add(
                        f"{doc.locate(kind, rid, 'parent')}: you cannot move {scope}, "
                        "the area you manage"
                    )
                continue
            if not within(area_of(kind, record, known), scope, areas):
                problems.add(
                    f"{doc.locate(kind, rid)}: outside {scope}, the area this upload may change"
                )
                continue
            old = registered.get(kind, {}).get(rid)
            if old is not None and not within(area_of(kind, old, was), scope, was_areas):
                problems.add(
                    f"{doc.locate(kind, rid)}: {rid} is registered outside {scope}; "
                    "it cannot be taken over from there"
                )


def dump(doc: Document) -> dict[str, Any]:
    """The document as the YAML file's data (defaults left out), sections in order."""
    out: dict[str, Any] = {"version": FORMAT_VERSION}
    for kind, records in doc.records.items():
        out[kind] = [r.model_dump(mode="json", exclude_defaults=True) for r in records.values()]
    return out


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(dict(data), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Dumps short lists (opening hours, days) inline, the rest in blocks."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(x, dict) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def csv_text(kind: str, rows: Iterable[Record]) -> str:
    """A section as CSV: a column per field, JSON cells for settings, `mon,tue` for days."""
    columns = list(KINDS[kind].model_fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in rows:
        data = record.model_dump(mode="json", exclude_defaults=True)
        writer.writerow([_cell(c, data.get(c)) for c in columns])
    return out.getvalue()


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in LIST_FIELDS:
        return ",".join(value)
    if column in JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

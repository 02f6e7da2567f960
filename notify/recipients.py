"""Who an event's policy names, from the duty roster and the territory tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from casework import tasks
from notify.policy import Who

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    severity: str | None
    territory_id: str | None
    path: str | None
    task_id: int | None
    incident_id: int | None
    person_id: str | None
    params: dict[str, object]
    at: datetime


def resolve(conn: Conn, who: Who, event: Event) -> list[str]:
    """The people (ids) `who` stands for at this event, in a stable order."""
    if who is Who.ASSIGNEE:
        if event.person_id is not None:
            return [event.person_id]
        return dispatchers(conn, event.territory_id, event.at)
    if who is Who.ISSUER:
        return [event.person_id] if event.person_id is not None else []
    if who is Who.ON_DUTY:
        worker = _on_duty(conn, event.territory_id, event.at)
        return [worker] if worker else dispatchers(conn, event.territory_id, event.at)
    if who is Who.DISPATCHERS:
        return dispatchers(conn, event.territory_id, event.at)
    role = "operator" if who is Who.OPERATORS else "admin"
    return _covering(conn, role, event.path)


def _on_duty(conn: Conn, territory_id: str | None, at: datetime) -> str | None:
    if territory_id is None:
        return None
    row = conn.execute(
        "SELECT level::text FROM territory WHERE id = %s", (territory_id,)
    ).fetchone()
    if row is None or str(row[0]) != "grid":
        return None
    return tasks.on_duty(conn, territory_id, at)


def dispatchers(conn: Conn, territory_id: str | None, at: datetime) -> list[str]:
    """The dispatchers of this level on duty now (all of them when none keeps a roster); when
    the level has none, those of the level above, up to the city."""
    level = territory_id
    while level is not None:
        found = conn.execute(
            """SELECT p.id,
                      EXISTS (SELECT 1 FROM duty_roster r WHERE r.person_id = p.id)
                      OR EXISTS (SELECT 1 FROM duty_shifts s WHERE s.person_id = p.id
                                 AND NOT s.disabled) AS rostered,
                      EXISTS (SELECT 1 FROM duty_roster r WHERE r.person_id = p.id
                              AND r.starts <= %(at)s AND %(at)s < r.ends)
                      OR EXISTS (SELECT 1 FROM duty_shifts s WHERE s.person_id = p.id AND """
            + tasks.shift_covers("%(at)s")
            + """) AS on_duty
               FROM people p WHERE p.scope_id = %(level)s AND p.role = 'dispatcher' AND p.active
               ORDER BY p.id""",
            {"level": level, "at": at},
        ).fetchall()
        people = [str(r[0]) for r in found]
        if any(bool(r[1]) for r in found):  # a roster is kept here: only who is on it now
            people = [str(r[0]) for r in found if r[2]]
        if people:
            return people
        row = conn.execute("SELECT parent_id FROM territory WHERE id = %s", (level,)).fetchone()
        level = str(row[0]) if row is not None and row[0] is not None else None
    return []


def _covering(conn: Conn, role: str, path: str | None) -> list[str]:
    """Active people of `role` whose area holds `path` (the whole city's when path is None)."""
    rows = conn.execute(
        """SELECT p.id FROM people p JOIN territory t ON t.id = p.scope_id
           WHERE p.role = %s::person_role AND p.active
             AND (CASE WHEN %s::ltree IS NULL THEN t.parent_id IS NULL
                       ELSE t.path @> %s::ltree END)
           ORDER BY p.id""",
        (role, path, path),
    ).fetchall()
    return [str(r[0]) for r in rows]

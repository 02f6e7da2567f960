"""Operator commands until the web console exists: tasks, emergency mode, KPIs (JSON out)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from ingest import emergency, kpi, tasks


def _connect(args: argparse.Namespace) -> psycopg.Connection[tuple[object, ...]]:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


def _print(rows: Any) -> None:
    print(json.dumps(rows, indent=1, default=str, ensure_ascii=False))


def task_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = conn.execute(
            """SELECT t.id, t.state::text, t.severity::text, t.title, t.assignee, t.level_id,
                      t.deadline_at, t.flagged, t.escalations, t.emergency, i.id AS incident
               FROM tasks t JOIN incidents i ON i.id = t.incident_id
               WHERE t.path <@ (SELECT path FROM territory WHERE id = %s)
                 AND (%s::text IS NULL OR t.assignee = %s)
                 AND (t.state <> 'closed' OR %s)
               ORDER BY t.id DESC LIMIT %s""",
            (args.area, args.assignee, args.assignee, args.all, args.limit),
        )
        cols = [c.name for c in rows.description or []]
        _print([dict(zip(cols, r, strict=True)) for r in rows.fetchall()])
    return 0


def task_show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        events = conn.execute(
            """SELECT at, action, from_state::text, to_state::text, actor, reason, note, evidence, data
               FROM task_events WHERE task_id = %s ORDER BY id""",
            (args.task,),
        )
        cols = [c.name for c in events.description or []]
        _print([dict(zip(cols, r, strict=True)) for r in events.fetchall()])
    return 0


def task_act(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        state = tasks.act(
            conn, args.task, tasks.Action(args.action), args.actor, reason=args.reason,
            note=args.note, evidence=args.evidence, assignee=args.assignee,
            extend_s=args.extend_s,
        )  # fmt: skip
    print(f"task {args.task}: {args.action} -> {state}")
    return 0


def emergency_start(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        eid = emergency.start(
            conn, args.area, actor=args.actor, reason=args.reason,
            message=args.message or emergency.DEFAULT_MESSAGE,
        )  # fmt: skip
    print(f"emergency {eid} on for {args.area}")
    return 0


def emergency_end(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        eid = emergency.end(conn, args.area, actor=args.actor)
    print(f"emergency {eid} over for {args.area}")
    return 0


def kpi_report(args: argparse.Namespace) -> int:
    until = datetime.now(UTC)
    with _connect(args) as conn:
        rows = kpi.report(conn, args.area, until - timedelta(days=args.days), until)
    _print([r.model_dump() for r in rows])
    return 0


def add_commands(sub: Any, add: Any) -> None:
    """The `task`, `emergency` and `kpi` subcommands."""
    task = sub.add_parser("task", help="Grid tasks.", description="Grid tasks.")
    tsub = task.add_subparsers(dest="task_command", required=True, metavar="COMMAND")
    ls = add(tsub, "list", task_list, "List tasks in an area (open ones unless --all).")
    ls.add_argument("--area", required=True, help="territory id: everything under it")
    ls.add_argument("--assignee", default=None, help="only this person's tasks (an inbox)")
    ls.add_argument("--all", action="store_true", help="closed ones too")
    ls.add_argument("--limit", type=int, default=100)
    show = add(tsub, "show", task_show, "A task's timeline: every action, who, when and why.")
    show.add_argument("task", type=int)
    act = add(tsub, "act", task_act, "Take an action on a task as a person.")
    act.add_argument("task", type=int)
    act.add_argument("action", choices=[a.value for a in tasks.Action])
    act.add_argument("--as", dest="actor", required=True, help="the person acting")
    act.add_argument("--reason", default="")
    act.add_argument("--note", default="")
    act.add_argument("--evidence", action="append", default=[], help="a photo or file reference")
    act.add_argument("--assignee", default=None, help="for dispatch")
    act.add_argument("--extend-s", type=float, default=None, help="for extend")

    em = sub.add_parser("emergency", help="Emergency mode.", description="Emergency mode.")
    esub = em.add_subparsers(dest="emergency_command", required=True, metavar="COMMAND")
    on = add(esub, "start", emergency_start,
             "Switch an area to emergency mode: broadcast, shelters unlocked, tighter deadlines.")  # fmt: skip
    on.add_argument("area", help="territory id")
    on.add_argument("--as", dest="actor", required=True)
    on.add_argument("--reason", required=True)
    on.add_argument("--message", default=None, help="what the speakers say")
    off = add(esub, "end", emergency_end, "Return an area to normal; everything is reverted.")
    off.add_argument("area")
    off.add_argument("--as", dest="actor", required=True)

    k = add(sub, "kpi", kpi_report, "KPIs of an area and each area directly under it (JSON).")
    k.add_argument("area", help="territory id")
    k.add_argument("--days", type=float, default=30)
    for p in (ls, show, act, on, off, k):
        p.add_argument("--database-url", help="defaults to GRIDWATCH_DATABASE_URL")

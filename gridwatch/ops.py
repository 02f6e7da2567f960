"""Operator commands until the web console exists: tasks, emergency mode, KPIs (JSON out)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.security import hash_password
from ingest import emergency, kpi, provision, rules, tasks


def _connect(args: argparse.Namespace) -> psycopg.Connection[tuple[object, ...]]:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


def _print(rows: Any) -> None:
    print(json.dumps(rows, indent=1, default=str, ensure_ascii=False))


def _print_rows(cursor: psycopg.Cursor[tuple[object, ...]]) -> None:
    cols = [c.name for c in cursor.description or []]
    _print([dict(zip(cols, r, strict=True)) for r in cursor.fetchall()])


def _policy() -> tasks.DeadlinePolicy:
    """The deadlines the ingest uses (GRIDWATCH_DEADLINES__*)."""
    from ingest.settings import deadline_policy

    return deadline_policy()


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
        _print_rows(rows)
    return 0


def task_show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        events = conn.execute(
            """SELECT at, action, from_state::text, to_state::text, actor, reason, note, evidence, data
               FROM task_events WHERE task_id = %s ORDER BY id""",
            (args.task,),
        )
        _print_rows(events)
    return 0


def task_act(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        state = tasks.act(
            conn, args.task, tasks.Action(args.action), args.actor, reason=args.reason,
            note=args.note, evidence=args.evidence, assignee=args.assignee,
            extend_s=args.extend_s, policy=_policy(),
        )  # fmt: skip
    print(f"task {args.task}: {args.action} -> {state}")
    return 0


def emergency_start(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        eid = emergency.start(
            conn, args.area, actor=args.actor, reason=args.reason,
            message=args.message or emergency.DEFAULT_MESSAGE, policy=_policy(),
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


def rules_set(args: argparse.Namespace) -> int:
    settings = json.loads(args.settings)
    rule = rules.Rule(args.rule)
    rules.RuleSettings.model_validate(rules.DEFAULTS[rule].model_dump() | settings)  # fail now
    with _connect(args) as conn:
        conn.execute(
            """INSERT INTO rule_overrides (venue_kind, venue_id, rule, settings)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (venue_kind, venue_id, rule) DO UPDATE SET settings = excluded.settings""",
            (args.venue_kind, args.venue, rule.value, Jsonb(settings)),
        )
    print(f"rule {rule} set for {args.venue or args.venue_kind}; workers pick it up within 30 s")
    return 0


def rules_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        overrides = conn.execute(
            "SELECT venue_kind::text, venue_id, rule, settings FROM rule_overrides ORDER BY id"
        ).fetchall()
    _print({
        "defaults": {r.value: s.model_dump() for r, s in rules.DEFAULTS.items()},
        "overrides": [dict(zip(("venue_kind", "venue", "rule", "settings"), o, strict=True))
                      for o in overrides],
    })  # fmt: skip
    return 0


def maintenance_add(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        conn.execute(
            """INSERT INTO maintenance_windows (venue_id, device_id, starts, ends, reason, created_by)
               VALUES (%s, %s, now(), now() + make_interval(secs => %s), %s, %s)""",
            (args.venue, args.device, args.hours * 3600, args.reason, args.actor),
        )
    print(f"{args.venue or args.device} silenced for {args.hours:g} h")
    return 0


def person_add(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        provision.add_person(conn, provision.Person(
            id=args.id, name=args.name, role=tasks.Role(args.role), scope_id=args.scope,
            phone=args.phone,
        ))  # fmt: skip
        if args.password_stdin:
            conn.execute(
                "UPDATE people SET password_hash = %s WHERE id = %s",
                (hash_password(sys.stdin.readline().rstrip("\n")), args.id),
            )
        if args.on_duty_hours:
            now = datetime.now(UTC)
            provision.add_duty(
                conn, args.scope, args.id, now, now + timedelta(hours=args.on_duty_hours)
            )
    print(f"person {args.id} ({args.role}) in {args.scope}")
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

    ru = sub.add_parser("rules", help="Incident rules.", description="Incident rules.")
    rsub = ru.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    rl = add(rsub, "list", rules_list, "The built-in rule settings and every override (JSON).")
    rs = add(rsub, "set", rules_set, "Override a rule's settings for a venue kind or one venue.")
    rs.add_argument("rule", choices=[r.value for r in rules.Rule])
    target = rs.add_mutually_exclusive_group(required=True)
    target.add_argument("--venue-kind", default=None)
    target.add_argument("--venue", default=None)
    rs.add_argument("--settings", required=True,
                    help='JSON, e.g. \'{"for_s": 300, "severity": "red"}\'; see `rules list`')  # fmt: skip

    mw = add(sub, "maintenance", maintenance_add, "Silence a venue or a device for some hours.")
    what = mw.add_mutually_exclusive_group(required=True)
    what.add_argument("--venue", default=None)
    what.add_argument("--device", default=None)
    mw.add_argument("--hours", type=float, required=True)
    mw.add_argument("--reason", required=True)
    mw.add_argument("--as", dest="actor", required=True)

    pa = add(sub, "person", person_add, "Add or update a person, optionally on duty in a grid.")
    pa.add_argument("id")
    pa.add_argument("--name", required=True)
    pa.add_argument("--role", required=True, choices=[r.value for r in tasks.Role])
    pa.add_argument("--scope", required=True, help="territory id of the subtree they work in")
    pa.add_argument("--phone", default=None)
    pa.add_argument("--on-duty-hours", type=float, default=0, help="put on duty in the grid now")
    pa.add_argument(
        "--password-stdin",
        action="store_true",
        help="set their password from the first line of stdin",
    )
    from gridwatch.cli import add_database_options

    for p in (ls, show, act, on, off, k, rl, rs, mw, pa):
        add_database_options(p)

"""Operator commands until the web console exists: tasks, emergency mode, KPIs (JSON out).

Every action is written to the audit log in its own transaction, as the `--as` person from the
client `cli:<OS user>`; a refused one is written too, with why.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.security import hash_password
from casework import emergency, kpi, rules, tasks
from ingest import audit, people
from registry import store
from registry.model import Person


def _connect(args: argparse.Namespace) -> psycopg.Connection[tuple[object, ...]]:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


Conn = psycopg.Connection[tuple[object, ...]]


def cli_client() -> str:
    """The audit log's client for the command line: `cli:` and the OS user running it (from the
    process's user id, not from the environment, which anyone can set)."""
    return f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def _audit(conn: Conn, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    audit.write(conn, actor, action, target, detail, cli_client())


@contextmanager
def _acting(
    args: argparse.Namespace,
    action: str,
    target: str,
    detail: dict[str, Any],
    *,
    known: bool = True,
) -> Iterator[Conn]:
    """One transaction for an action and its audit row; `detail` may be added to until the end.
    A refused action (a ValueError: not allowed, not found) is recorded as refused and re-raised.
    With `known`, the `--as` person must be an active person."""
    with _connect(args) as conn:
        try:
            with conn.transaction():
                if known:
                    tasks.person(conn, args.actor)
                yield conn
                _audit(conn, args.actor, action, target, detail)
        except ValueError as exc:
            _audit(conn, args.actor, action, target, detail | {"refused": str(exc)})
            conn.commit()
            raise


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
    detail: dict[str, Any] = {"reason": args.reason, "note": args.note}
    with _acting(args, f"task.{args.action}", str(args.task), detail) as conn:
        state = tasks.act(
            conn, args.task, tasks.Action(args.action), args.actor, reason=args.reason,
            note=args.note, evidence=args.evidence, assignee=args.assignee,
            extend_s=args.extend_s, policy=_policy(),
        )  # fmt: skip
        detail["state"] = state.value
    print(f"task {args.task}: {args.action} -> {state}")
    return 0


def emergency_start(args: argparse.Namespace) -> int:
    detail: dict[str, Any] = {"reason": args.reason}
    with _acting(args, "emergency.start", args.area, detail) as conn:
        eid = emergency.start(
            conn, args.area, actor=args.actor, reason=args.reason,
            message=args.message or emergency.DEFAULT_MESSAGE, policy=_policy(),
        )  # fmt: skip
        detail["id"] = eid
    print(f"emergency {eid} on for {args.area}")
    return 0


def emergency_end(args: argparse.Namespace) -> int:
    detail: dict[str, Any] = {}
    with _acting(args, "emergency.end", args.area, detail) as conn:
        eid = emergency.end(conn, args.area, actor=args.actor)
        detail["id"] = eid
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
    target = f"venue:{args.venue}" if args.venue else f"venue_kind:{args.venue_kind}"
    with _acting(args, "rules.set", target, {"rule": rule.value, "settings": settings}) as conn:
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
    target = f"venue:{args.venue}" if args.venue else f"device:{args.device}"
    detail = {"hours": args.hours, "reason": args.reason}
    with _acting(args, "maintenance.add", target, detail) as conn:
        conn.execute(
            """INSERT INTO maintenance_windows (venue_id, device_id, starts, ends, reason, created_by)
               VALUES (%s, %s, now(), now() + make_interval(secs => %s), %s, %s)""",
            (args.venue, args.device, args.hours * 3600, args.reason, args.actor),
        )
    print(f"{args.venue or args.device} silenced for {args.hours:g} h")
    return 0


def person_add(args: argparse.Namespace) -> int:
    detail: dict[str, Any] = {"role": args.role, "scope": args.scope,
                              "password_set": args.password_stdin, "on_duty_hours": args.on_duty_hours}  # fmt: skip
    # The first person of a new territory is added by someone who is not a person yet.
    with _acting(args, "person.add", args.id, detail, known=False) as conn:
        # What the command line does not set (contact points, language) stays as it was.
        kept = conn.execute(
            "SELECT email, wecom_id, dingtalk_id, language FROM people WHERE id = %s", (args.id,)
        ).fetchone()
        contacts = dict(zip(("email", "wecom_id", "dingtalk_id", "language"), kept or (),
                            strict=False))  # fmt: skip
        person = Person(id=args.id, name=args.name, role=tasks.Role(args.role), scope=args.scope,
                        phone=args.phone, **{k: v for k, v in contacts.items() if v is not None})  # fmt: skip
        store.put(conn, [person], args.actor, audit=False)  # audited as person.add
        if args.password_stdin:  # a new password: their earlier tokens count no more
            people.set_password_hash(
                conn, args.id, hash_password(sys.stdin.readline().rstrip("\n"))
            )
        if args.on_duty_hours:
            now = datetime.now(UTC)
            grid = conn.execute(
                "SELECT 1 FROM territory WHERE id = %s AND level = 'grid'", (args.scope,)
            ).fetchone()
            if grid is None:
                raise ValueError(f"--on-duty-hours: {args.scope!r} is not a grid; duty is per grid")
            conn.execute(
                "INSERT INTO duty_roster (grid_id, person_id, starts, ends) VALUES (%s, %s, %s, %s)",
                (args.scope, args.id, now, now + timedelta(hours=args.on_duty_hours)),
            )
    print(f"person {args.id} ({args.role}) in {args.scope}")
    return 0


def person_switch(args: argparse.Namespace) -> int:
    on = args.person_command == "enable"
    with _connect(args) as conn:
        if conn.execute("SELECT 1 FROM people WHERE id = %s", (args.actor,)).fetchone() is None:
            raise ValueError(f"--as {args.actor!r}: no such person; name the person acting")
        if not people.set_active(conn, args.id, on):
            raise ValueError(f"no person {args.id!r}; `gridwatch person add` creates one")
        _audit(conn, args.actor, f"person.{args.person_command}", args.id, {})
    print(f"person {args.id} {'enabled' if on else 'disabled: every token of theirs is refused'}")
    return 0


def notify_policies(args: argparse.Namespace) -> int:
    """Every notification policy in force: the built-in ones and the overrides stored."""
    from notify import policy

    with _connect(args) as conn:
        stored = policy.Policies.load(conn).overrides
    keys = sorted(set(policy.DEFAULTS) | set(stored), key=lambda k: (k[0], k[1] or ""))
    _print([
        {"kind": kind, "severity": severity or "any", "stored": (kind, severity) in stored,
         "rules": [r.model_dump(mode="json") for r in
                   stored.get((kind, severity), policy.DEFAULTS.get((kind, severity), []))]}
        for kind, severity in keys
    ])  # fmt: skip
    return 0


def notify_policy_set(args: argparse.Namespace) -> int:
    """Store a policy for an event kind (and severity): who hears it, on which channels."""
    from notify import policy

    try:
        raw = json.loads(args.rules)
    except json.JSONDecodeError as exc:
        raise ValueError(f"rules: not JSON ({exc.msg}, column {exc.colno}); for example "
                         '\'[{"who": "assignee", "channels": "all"}]\'') from None  # fmt: skip
    rules = policy.parse(args.kind, args.severity, raw)
    target = f"{args.kind}/{args.severity or 'any'}"
    dumped = [r.model_dump(mode="json") for r in rules]
    with _acting(args, "notify.policy.set", target, {"rules": dumped}) as conn:
        conn.execute(
            """INSERT INTO notify_policies (kind, severity, rules) VALUES (%s, %s, %s)
               ON CONFLICT (kind, severity) DO UPDATE SET rules = excluded.rules""",
            (args.kind, args.severity, Jsonb(dumped)),
        )
    print(f"notify policy {target}: " + json.dumps(dumped, ensure_ascii=False))
    return 0


def notify_policy_reset(args: argparse.Namespace) -> int:
    """Drop a stored policy: the built-in one applies again."""
    target = f"{args.kind}/{args.severity or 'any'}"
    with _acting(args, "notify.policy.reset", target, {}) as conn:
        gone = conn.execute(
            "DELETE FROM notify_policies WHERE kind = %s AND severity IS NOT DISTINCT FROM %s"
            " RETURNING kind", (args.kind, args.severity),
        ).fetchone()  # fmt: skip
        if gone is None:
            raise ValueError(f"no stored notify policy {target}; `gridwatch notify policies` "
                             "lists them")  # fmt: skip
    print(f"notify policy {target}: the built-in one applies again")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    expect = audit.parse_head(args.expect) if args.expect else None
    with _connect(args) as conn:
        verdict = audit.verify(conn, expect)
    for problem in verdict.problems:
        print(f"audit log: {problem}", file=sys.stderr)
    if not verdict.intact:
        print(f"audit log broken: {len(verdict.problems)} problem(s) in {verdict.rows} rows")
        return 1
    print(f"audit log intact: {verdict.rows} rows; head {verdict.head} (write it down; "
          "check it later with --expect)")  # fmt: skip
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
    act.add_argument("--assignee", default=None, help="for dispatch and reassign")
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
    rs.add_argument("--as", dest="actor", required=True, help="the person making the change")
    rs.add_argument("--settings", required=True,
                    help='JSON, e.g. \'{"for_s": 300, "severity": "red"}\'; see `rules list`')  # fmt: skip

    mw = add(sub, "maintenance", maintenance_add, "Silence a venue or a device for some hours.")
    what = mw.add_mutually_exclusive_group(required=True)
    what.add_argument("--venue", default=None)
    what.add_argument("--device", default=None)
    mw.add_argument("--hours", type=float, required=True)
    mw.add_argument("--reason", required=True)
    mw.add_argument("--as", dest="actor", required=True)

    pe = sub.add_parser("person", help="People.", description="People: add, disable, enable.")
    psub = pe.add_subparsers(dest="person_command", required=True, metavar="COMMAND")
    pa = add(psub, "add", person_add, "Add or update a person, optionally on duty in a grid.")
    pa.add_argument("id")
    pa.add_argument("--name", required=True)
    pa.add_argument("--role", required=True, choices=[r.value for r in tasks.Role])
    pa.add_argument("--scope", required=True, help="territory id of the subtree they work in")
    pa.add_argument("--phone", default=None)
    pa.add_argument("--as", dest="actor", required=True, help="who is adding them (audit log)")
    pa.add_argument("--on-duty-hours", type=float, default=0, help="put on duty in the grid now")
    pa.add_argument(
        "--password-stdin",
        action="store_true",
        help="set their password from the first line of stdin (their earlier tokens end)",
    )
    switches = []
    for verb, what in (("disable", "Disable a person: no sign-in, every token of theirs refused."),
                       ("enable", "Enable a disabled person again; they sign in afresh.")):  # fmt: skip
        ps = add(psub, verb, person_switch, what)
        ps.add_argument("id")
        ps.add_argument("--as", dest="actor", required=True, help="the person acting (audited)")
        switches.append(ps)
    nt = sub.add_parser("notify", help="Notification policies.",
                        description="Who hears about which events, on which channels.")  # fmt: skip
    nsub = nt.add_subparsers(dest="notify_command", required=True, metavar="COMMAND")
    nl = add(nsub, "policies", notify_policies, "List the policies in force (built-in and stored).")
    policy_args = []
    for verb, fn, what in (
        ("set", notify_policy_set, "Store a policy for an event kind (audited)."),
        ("reset", notify_policy_reset, "Drop a stored policy; the built-in one applies (audited)."),
    ):
        np = add(nsub, f"policy-{verb}", fn, what)
        np.add_argument("kind", help="the event kind, e.g. task.escalated (see `policies`)")
        np.add_argument("--severity", default=None, choices=["red", "yellow", "green"],
                        help="only for this severity (default: any)")  # fmt: skip
        if verb == "set":
            np.add_argument("rules", help='JSON, e.g. \'[{"who": "dispatchers", "channels": '
                            '"all"}, {"who": "assignee", "channels": ["voice"]}]\'')  # fmt: skip
        np.add_argument("--as", dest="actor", required=True, help="the person acting (audited)")
        policy_args.append(np)
    au = sub.add_parser("audit", help="The audit log.", description="The audit log.")
    asub = au.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    av = add(asub, "verify", audit_verify,
             "Check the audit log's hash chain: no row edited, removed or inserted since written "
             "(as the schema owner, who alone may read it).")  # fmt: skip
    av.add_argument("--expect", default=None,
                    help="a head printed by an earlier run (SEQ:HASH): it must still be there")  # fmt: skip
    from gridwatch.cli import add_database_options

    for p in (ls, show, act, on, off, k, rl, rs, mw, pa, av, nl, *switches, *policy_args):
        add_database_options(p)

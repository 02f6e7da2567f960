"""`gridwatch registry plan|apply|export`: the registry as a file (docs/registry.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from registry import document, store
from registry.document import RegistryFileError

EXIT_BAD_FILE = 2
PLAN_LINES = 500  # changes printed in full; the counts always cover all of them


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


def _errors(exc: RegistryFileError) -> int:
    for line in exc.errors:
        print(line, file=sys.stderr)
    if exc.more:
        print(f"... and {exc.more} more problems", file=sys.stderr)
    n = len(exc.errors) + exc.more
    print(
        f"gridwatch registry: {n} problem{'s' if n != 1 else ''}; nothing was applied",
        file=sys.stderr,
    )
    return EXIT_BAD_FILE


def _plan(args: argparse.Namespace, conn: psycopg.Connection[Any]) -> store.Plan:
    doc = document.load(args.file)
    return store.plan(conn, doc, prune=args.prune, scope=args.scope)


def run_plan(args: argparse.Namespace) -> int:
    try:
        with _connect(args) as conn:
            plan = _plan(args, conn)
    except RegistryFileError as exc:
        return _errors(exc)
    print(store.format_plan(plan, limit=None if args.all else PLAN_LINES))
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from gridwatch.ops import cli_client

    try:
        with _connect(args) as conn, conn.transaction():
            plan = _plan(args, conn)
            print(store.format_plan(plan, limit=None if args.all else PLAN_LINES), flush=True)
            store.apply(conn, plan, args.actor or cli_client(), client=cli_client())
    except RegistryFileError as exc:
        return _errors(exc)
    if not plan.empty:
        print(f"applied: {store.summary(plan)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        doc = store.read(conn)
    out = Path(args.output) if args.output else None
    data = document.dump(doc)
    if args.csv:
        folder = Path(args.csv)
        folder.mkdir(parents=True, exist_ok=True)
        base = out.parent if out else Path.cwd()
        for kind in document.CSV_SECTIONS:
            path = folder / f"{kind}.csv"
            path.write_text(document.csv_text(kind, doc.section(kind).values()), encoding="utf-8")
            data[kind] = {"csv": os.path.relpath(path.resolve(), base.resolve())}
    text = document.dump_yaml(data)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}: {doc.count()} records", file=sys.stderr)
    return 0


Add = Callable[..., argparse.ArgumentParser]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    from gridwatch.cli import add_database_options

    reg = sub.add_parser(
        "registry",
        help="The registry as a file: territory, venues, nodes, devices, people, duty.",
        description="The registry as a file (docs/registry.md).",
    )
    rsub = reg.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    plan = add(rsub, "plan", run_plan, "Print what applying a registry file would change.")
    apply = add(
        rsub,
        "apply",
        run_apply,
        "Apply a registry file in one transaction (prints the plan first).",
    )
    for p in (plan, apply):
        p.add_argument("file", help="the registry file (YAML; CSV files it names beside it)")
        p.add_argument(
            "--prune",
            action="store_true",
            help="the file is the whole registry: disable what it leaves out",
        )
        p.add_argument(
            "--scope",
            default=None,
            help="an area id: every record must lie in its subtree (and only records "
            "there are pruned)",
        )
        p.add_argument(
            "--all",
            action="store_true",
            help=f"print every change (default: the first {PLAN_LINES})",
        )
        add_database_options(p)
    apply.add_argument(
        "--as",
        dest="actor",
        default=None,
        help="who applies it, for the audit log (default: cli:OS-USER)",
    )
    export = add(rsub, "export", run_export, "Write the live registry as a registry file.")
    export.add_argument("--output", default=None, help="the YAML file (default: standard output)")
    export.add_argument(
        "--csv", default=None, help="write devices, people and duty as CSV files in this folder"
    )
    add_database_options(export)

"""`gridwatch node ...`: an edge node's site file, enrolment code, secret, switch and status.

Every change is audited (as `--as`, by default the OS user, from the client `cli:<OS user>`).
A secret is shown once and kept nowhere in the clear.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

from gridwatch.enrolment import write_site_file
from gridwatch.ops import cli_client
from ingest import audit
from registry import enrol, nodeconfig
from registry.secrets import issue_secret

Conn = psycopg.Connection[tuple[Any, ...]]


def _connect(args: argparse.Namespace) -> Conn:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or cli_client())


def _audit(conn: Conn, args: argparse.Namespace, action: str, node: str,
           detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    audit.write(conn, _actor(args), action, node, detail, cli_client())


def site_file(args: argparse.Namespace) -> int:
    out = Path(args.output or f"{args.node}.site.yaml")
    with _connect(args) as conn, conn.transaction():
        enrol.enabled_node(conn, args.node)
        secret = issue_secret(conn, args.node)
        site = enrol.site_file(conn, args.node, secret, enrol.EdgeBrokerSettings())
        _audit(conn, args, "node.site_file", args.node,
               {"config_version": site["config_version"], "new_secret": True})  # fmt: skip
        write_site_file(out, site)  # inside the transaction: no file, no new secret
    print(f"wrote {out} (0600) for node {args.node}: it holds a NEW secret, the old one stops"
          f" working; copy it to the node and run `gridwatch edge --config {out.name}`")  # fmt: skip
    return 0


def enrolment_code(args: argparse.Namespace) -> int:
    with _connect(args) as conn, conn.transaction():
        code = enrol.create_code(conn, args.node, _actor(args), args.hours, client=cli_client())
    print(f"enrolment code for node {args.node} (valid {args.hours:g} h, once): {code}")
    print(f"on the node: gridwatch edge --enrol {code} --platform https://PLATFORM")
    return 0


def rotate(args: argparse.Namespace) -> int:
    with _connect(args) as conn, conn.transaction():
        enrol.enabled_node(conn, args.node)
        secret = issue_secret(conn, args.node)
        _audit(conn, args, "node.rotate", args.node)
    print(f"new secret for node {args.node} (shown once; the old one stops working within a"
          " second): put it in the node's site file as broker.password", file=sys.stderr)  # fmt: skip
    print(secret)
    return 0


def switch(args: argparse.Namespace) -> int:
    on = args.node_command == "enable"
    with _connect(args) as conn, conn.transaction():
        row = conn.execute(
            "UPDATE edge_nodes SET disabled = %s WHERE id = %s RETURNING id", (not on, args.node)
        ).fetchone()
        if row is None:
            raise ValueError(f"no edge node {args.node!r}: register it first (gridwatch registry"
                             " apply)")  # fmt: skip
        _audit(conn, args, "node.enable" if on else "node.disable", args.node)
    print(f"node {args.node} {'enabled' if on else 'disabled: its broker session is cut'}")
    return 0


def show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        row = conn.execute(
            """SELECT n.id, n.venue_id, n.name, n.disabled, n.secret_issued_at, p.online,
                      p.last_seen, p.software
               FROM edge_nodes n LEFT JOIN node_presence p ON p.node_id = n.id
               WHERE n.id = %s""",
            (args.node,),
        ).fetchone()
        if row is None:
            raise ValueError(f"no edge node {args.node!r}")
        state = nodeconfig.state(conn, args.node)
        devices = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT disabled), count(*) FROM devices WHERE node_id = %s",
            (args.node,),
        ).fetchone()
    assert devices is not None
    node, venue, name, disabled, issued, online, seen, software = row
    print(json.dumps({
        "node": node, "venue": venue, "name": name,
        "status": "disabled" if disabled else "online" if online else "offline"
        if online is not None else "never seen",
        "last_seen": seen, "software": software, "secret_issued_at": issued,
        "devices": {"enabled": devices[0], "all": devices[1]},
        "config": {"wanted": state.wanted, "published": state.published,
                   "running": state.running, "outdated": state.outdated, "error": state.error},
    }, indent=1, default=str, ensure_ascii=False))  # fmt: skip
    return 0

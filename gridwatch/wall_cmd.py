"""`gridwatch wall ...`: view-only tokens for control-room walls (make one, list, revoke).

A token is printed once and kept nowhere in the clear; making and revoking are audited (as
`--as`, by default the OS user, from the client `cli:<OS user>`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import psycopg

from api import wall_tokens
from gridwatch.ops import cli_client

Conn = psycopg.Connection[tuple[Any, ...]]


def _connect(args: argparse.Namespace) -> Conn:
    from gridwatch.cli import database_url

    return psycopg.connect(database_url(args))


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or cli_client())


def token(args: argparse.Namespace) -> int:
    with _connect(args) as conn, conn.transaction():
        secret, record = wall_tokens.issue(conn, args.area, args.name or "", _actor(args),
                                           valid_days=args.days, client=cli_client())  # fmt: skip
    until = (
        "until revoked"
        if record.expires_at is None
        else f"until {record.expires_at:%Y-%m-%d %H:%M %Z}"
    )
    print(f"wall token {record.id} for {record.area_name} ({record.area_id}), valid {until};"
          " shown once. On the wall's screen open:", file=sys.stderr)  # fmt: skip
    print(f"  https://PLATFORM/console/wall.html#token={secret}", file=sys.stderr)
    print(secret)
    return 0


def listing(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = (conn.execute("SELECT path::text FROM territory WHERE id = %s", (args.area,))
                if args.area else conn.execute("SELECT path::text FROM territory"
                                               " WHERE parent_id IS NULL")).fetchall()  # fmt: skip
        paths = [str(r[0]) for r in rows]
        if args.area and not paths:
            raise ValueError(f"no area {args.area!r}")
        records = [t for path in paths for t in wall_tokens.listing(conn, path)]
    now = datetime.now(UTC)
    for r in records:
        print(f"{r.id}\t{r.area_id}\t{r.name or '-'}\t{token_state(r, now)}\t"
              f"last used {_used(r)}")  # fmt: skip
    return 0


def token_state(r: wall_tokens.WallToken, now: datetime) -> str:
    """How `gridwatch wall list` says a token stands: revoked, expired (on when), valid (until
    when, or for good)."""
    if r.revoked_at is not None:
        return "revoked"
    if r.expires_at is None:
        return "valid"
    if r.expires_at <= now:
        return f"expired {r.expires_at:%Y-%m-%d}"
    return f"expires {r.expires_at:%Y-%m-%d}"


def _used(r: wall_tokens.WallToken) -> str:
    return f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never"


def revoke(args: argparse.Namespace) -> int:
    with _connect(args) as conn, conn.transaction():
        if wall_tokens.get(conn, args.id) is None:
            raise ValueError(f"no wall token {args.id}: `gridwatch wall list` shows them")
        done = wall_tokens.revoke(conn, args.id, _actor(args), client=cli_client())
    print(f"wall token {args.id} " + ("revoked: its wall stops at its next refresh" if done
                                      else "was revoked already"))  # fmt: skip
    return 0

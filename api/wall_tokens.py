"""View-only wall tokens: what a control room's big screen signs in with.

A token reads the wall of one area (and of the areas under it) and nothing else: it is not a
signed access token, so every other route refuses it as it refuses any unknown bearer. It is
256 random bits after a `gwwall_` prefix, shown once when made; only its SHA-256 is stored (a
fast hash is enough for a secret nobody can guess). It may expire or run until revoked; making
and revoking one are audited, by the API (admins, within their area) and the command line.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ingest import audit

Conn = psycopg.Connection[Any]

PREFIX = "gwwall_"
MAX_NAME = 100
MAX_VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class WallToken:
    """A wall token's record (never the token itself)."""

    id: int
    area_id: str
    area_name: str
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class WallScope:
    """What a presented wall token may read: its area and everything under it."""

    token_id: int
    area_id: str
    area_path: str


def looks_like(token: str) -> bool:
    """Whether a bearer is a wall token (rather than a person's signed access token)."""
    return token.startswith(PREFIX)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def issue(
    conn: Conn, area_id: str, name: str, actor: str, *, valid_days: float | None = None,
    client: str = "",
) -> tuple[str, WallToken]:  # fmt: skip
    """A new token for `area_id` (shown once) and its record; audited in the caller's
    transaction. ValueError for an unknown or disabled area, or a bad name or period."""
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ValueError(f"a wall token's name has at most {MAX_NAME} characters")
    if valid_days is not None and not 0 < valid_days <= MAX_VALID_DAYS:
        raise ValueError(f"a wall token is valid for more than 0 and at most {MAX_VALID_DAYS} days")
    area = conn.execute(
        "SELECT name FROM territory WHERE id = %s AND NOT disabled", (area_id,)
    ).fetchone()
    if area is None:
        raise ValueError(f"no area {area_id!r} (or it is disabled): name an area of the territory")
    token = PREFIX + secrets.token_urlsafe(32)
    expires = None if valid_days is None else timedelta(days=valid_days)
    row = conn.execute(
        """INSERT INTO wall_tokens (area_id, name, token_hash, created_by, expires_at)
           VALUES (%s, %s, %s, %s, now() + %s) RETURNING id""",
        (area_id, name, digest(token), actor, expires),
    ).fetchone()
    assert row is not None
    token_id = int(row[0])
    audit.write(conn, actor, "wall.token.issue", f"wall-token:{token_id}",
           {"area": area_id, "name": name, "valid_days": valid_days}, client)  # fmt: skip
    made = get(conn, token_id)
    assert made is not None
    return token, made


def revoke(conn: Conn, token_id: int, actor: str, *, client: str = "") -> bool:
    """Make a token count no more; False when it was revoked already. Audited."""
    row = conn.execute(
        """UPDATE wall_tokens SET revoked_at = now(), revoked_by = %s
           WHERE id = %s AND revoked_at IS NULL RETURNING area_id""",
        (actor, token_id),
    ).fetchone()
    if row is None:
        return False
    audit.write(
        conn, actor, "wall.token.revoke", f"wall-token:{token_id}", {"area": row[0]}, client
    )
    return True


_RECORD = """SELECT w.id, w.area_id, t.name, w.name, w.created_by, w.created_at, w.expires_at,
                    w.revoked_at, w.last_used_at
             FROM wall_tokens w JOIN territory t ON t.id = w.area_id"""


def get(conn: Conn, token_id: int) -> WallToken | None:
    row = conn.execute(_RECORD + " WHERE w.id = %s", (token_id,)).fetchone()
    return None if row is None else WallToken(*row)


def listing(conn: Conn, scope_path: str) -> list[WallToken]:
    """Every wall token of an area inside `scope_path`, newest first (revoked ones too)."""
    rows = conn.execute(
        _RECORD + " WHERE t.path <@ %s::ltree ORDER BY w.id DESC", (scope_path,)
    ).fetchall()
    return [WallToken(*r) for r in rows]


def scope_of(conn: Conn, token: str) -> WallScope | None:
    """The area a presented token may read, while it counts (not revoked, not expired, its area
    not disabled); None otherwise. Marks it used, at most once a minute."""
    row = conn.execute(
        """SELECT w.id, w.area_id, t.path::text, w.last_used_at IS NULL
                  OR w.last_used_at < now() - interval '1 minute'
           FROM wall_tokens w JOIN territory t ON t.id = w.area_id
           WHERE w.token_hash = %s AND w.revoked_at IS NULL
             AND (w.expires_at IS NULL OR w.expires_at > now()) AND NOT t.disabled""",
        (digest(token),),
    ).fetchone()
    if row is None:
        return None
    if row[3]:
        conn.execute("UPDATE wall_tokens SET last_used_at = now() WHERE id = %s", (row[0],))
    return WallScope(int(row[0]), str(row[1]), str(row[2]))

"""Sessions in the database: whether a token still stands for its person, sign-out, and
single-use live tickets.

A token counts while it is unexpired, its person is active, it was issued after the person's
`valid_after` (moved by a password change and by disabling), and its session (the access token
it is, or came from) is not in `revoked_tokens`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from api.security import Claims

Conn = psycopg.Connection[tuple[Any, ...]]

# The person behind a session, if the session still counts: id, name, role, scope, scope path.
_PERSON = """SELECT p.id, p.name, p.role::text, p.scope_id, t.path::text
             FROM people p JOIN territory t ON t.id = p.scope_id
             WHERE p.id = %s AND p.active AND p.valid_after <= to_timestamp(%s)
               AND NOT EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = %s)"""


def person_row(db: Conn, claims: Claims) -> tuple[Any, ...] | None:
    """The person's row while the token's session still counts, else None."""
    return db.execute(_PERSON, (claims.sub, claims.iat, claims.session)).fetchone()


def now(db: Conn) -> float:
    """The database's clock (seconds since the epoch): tokens' issue times come from it."""
    row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def revoke(db: Conn, jti: str, person_id: str, expires_at: datetime) -> bool:
    """Make a token count no more; False if it was revoked already. Prunes expired rows."""
    db.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
    row = db.execute(
        """INSERT INTO revoked_tokens (jti, person_id, expires_at) VALUES (%s, %s, %s)
           ON CONFLICT (jti) DO NOTHING RETURNING jti""",
        (jti, person_id, expires_at),
    ).fetchone()
    return row is not None

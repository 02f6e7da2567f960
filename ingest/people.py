"""Switching people off and on, and setting their password: each moves when their earlier tokens
stop counting (`people.valid_after`), so the API refuses those tokens at once."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def set_active(conn: Conn, person_id: str, active: bool) -> bool:
    """Disable or enable a person; False if there is no such person. Disabling ends every token
    they hold; enabling does not bring those back."""
    row = conn.execute(
        """UPDATE people SET active = %s,
               valid_after = CASE WHEN %s THEN valid_after ELSE clock_timestamp() END
           WHERE id = %s RETURNING id""",
        (active, active, person_id),
    ).fetchone()
    return row is not None


def set_password_hash(conn: Conn, person_id: str, password_hash: str) -> bool:
    """A new password (already hashed); the person's earlier tokens count no more."""
    row = conn.execute(
        """UPDATE people SET password_hash = %s, valid_after = clock_timestamp()
           WHERE id = %s RETURNING id""",
        (password_hash, person_id),
    ).fetchone()
    return row is not None

"""The key that signs tokens: GRIDWATCH_API_SECRET, or else one random key kept in the database.

With no secret configured, the first API process makes a random key and stores it; every
replica started after it reads the same one, so a token from one replica is good at all of them.
Nothing signs with a built-in default.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from api.database import Database, DatabaseUnavailable
from api.security import new_signing_key
from api.settings import ApiSettings

log = logging.getLogger(__name__)


def signing_key(settings: ApiSettings, conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """The key this process signs and checks tokens with; says at start-up where it comes from."""
    if settings.api_secret is not None:
        log.info("signing tokens with the key from GRIDWATCH_API_SECRET")
        return settings.api_secret.get_secret_value()
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO api_signing_key (secret) VALUES (%s) ON CONFLICT (id) DO NOTHING",
                (new_signing_key(),),
            )
            row = conn.execute("SELECT secret, created_at FROM api_signing_key").fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise RuntimeError(
            "the database has no api_signing_key table: run `gridwatch db migrate` first"
        ) from exc
    assert row is not None
    log.info(
        "GRIDWATCH_API_SECRET is not set: signing tokens with the random key kept in the "
        "database since %s (table api_signing_key, shared by every replica)",
        row[1].isoformat(timespec="seconds"),
    )
    return str(row[0])


def load_at_start(app: Any) -> None:
    """Read the key when the API starts, so it says at once where its key comes from; a
    database that is down then delays this to the first request that needs it (503 until)."""
    try:
        current(app)
    except DatabaseUnavailable as exc:
        log.warning("signing key not read at start (%s): read when the database is back", exc)


def current(app: Any) -> str:
    """The signing key of this process, read once."""
    key: str | None = app.state.signing_key
    if key is None:
        db: Database = app.state.db
        with db.connection() as conn:
            key = signing_key(app.state.settings, conn)
        app.state.signing_key = key
    return key

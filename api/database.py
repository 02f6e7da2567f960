"""The API's database: a pool whose connections are checked before use, and outages told apart
from bugs (a request that cannot reach the database, or finds it read-only, answers 503)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

# While an outage is known, a request waits this long for a connection, not the full wait: the
# API answers 503 at once instead of holding every request until its timeout.
_OUTAGE_WAIT_S = 0.2
# How long the pool keeps retrying a lost connection before it gives up (a waiting request then
# starts a fresh attempt at once, so recovery is not delayed by a long back-off).
_RECONNECT_S = 5.0

# Whether a session opened now could write. A session takes `default_transaction_read_only` from
# ALTER DATABASE / ALTER ROLE when it starts and keeps it after they are reset, so the catalog,
# not the session, says what a new session would get (most specific setting first).
_READ_ONLY_NOW = """
SELECT CASE
  WHEN pg_is_in_recovery() THEN 'in recovery'
  WHEN coalesce(
         (SELECT split_part(c, '=', 2)::bool
          FROM pg_db_role_setting s, unnest(s.setconfig) AS c
          WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
            AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))
            AND split_part(c, '=', 1) = 'default_transaction_read_only'
          ORDER BY (s.setrole <> 0)::int * 2 + (s.setdatabase <> 0)::int DESC LIMIT 1),
         (SELECT setting::bool FROM pg_settings WHERE name = 'default_transaction_read_only'
            AND source NOT IN ('database', 'user', 'database user')),
         false) THEN 'read-only'
END
"""


# The list endpoints' queries take optional filters as `(%(x)s IS NULL OR col = %(x)s)`, so one
# statement serves every combination. psycopg prepares a statement after five runs, and the
# server then may switch it to a generic plan made without the values, one that must serve
# every combination: for the incident list, a scan of every incident in scope (4 ms became
# 21 ms once the open-red filter had used it). Every API session plans each run with its values.
PLAN_CACHE_MODE = "force_custom_plan"


def configure(conn: Conn) -> None:
    """Set up a new pooled connection: custom plans for every statement, prepared or not."""
    conn.execute(f"SET plan_cache_mode = {PLAN_CACHE_MODE}")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or cannot take writes just now; `reason` says which."""

    def __init__(self, reason: str, code: str = "db.unreachable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # its message in api/messages.py


def write_blocker(conn: Conn) -> str | None:
    """Why a write would fail now ('in recovery', 'read-only'), or None if it would not."""
    row = conn.execute(_READ_ONLY_NOW).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _reports_read_only(conn: Conn) -> bool:
    # PostgreSQL 14+ reports both to the client when a session starts: no round trip needed.
    status = conn.info.parameter_status
    return "on" in (status("default_transaction_read_only"), status("in_hot_standby"))


def check(conn: Conn) -> None:
    """The check before a pooled connection is used: alive, and not stale read-only."""
    conn.execute("")  # a dead connection (server restarted, backend terminated) raises here
    if _reports_read_only(conn) and write_blocker(conn) is None:
        # Opened while the database was read-only, which it is no more: replace it.
        raise psycopg.OperationalError(
            "opened while the database was read-only, which it is no more"
        )


class Database:
    """The connection pool and what the API has seen of the database's health."""

    def __init__(self, dsn: str, size: int, wait_s: float) -> None:
        self.wait_s = wait_s
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "connect_timeout": 5},
            configure=configure,
            reconnect_timeout=_RECONNECT_S,
            open=False,
        )
        self._outage_since: float | None = None

    def open(self) -> None:
        self.pool.open()  # without waiting: the API starts, and answers 503, without a database

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self, wait_s: float | None = None) -> Iterator[Conn]:
        """A checked connection; DatabaseUnavailable if none comes, or the database goes away."""
        wait = self.wait_s if wait_s is None else wait_s
        if self._outage_since is not None:
            wait = min(wait, _OUTAGE_WAIT_S)
        conn = self._checked(wait)
        if self._outage_since is not None:
            log.info("database reachable again after %.1f s", time.monotonic() - self._outage_since)
            self._outage_since = None
        try:
            yield conn
        except psycopg.OperationalError as exc:
            self._outage("database connection lost: %s", str(exc).strip())
            raise DatabaseUnavailable("the database connection was lost", "db.lost") from None
        except psycopg.errors.ReadOnlySqlTransaction:
            raise DatabaseUnavailable("the database is read-only", "db.read_only") from None
        finally:
            self.pool.putconn(conn)

    def _checked(self, wait: float) -> Conn:
        # Checked here rather than by the pool's `check`, which sleeps with back-off after each
        # bad connection: after a restart every idle connection is dead, and they are dropped
        # at once, each replaced by a fresh one.
        deadline = time.monotonic() + wait
        for _ in range(self.pool.max_size + 1):
            try:
                conn = self.pool.getconn(timeout=max(deadline - time.monotonic(), 0.01))
            except PoolTimeout:
                self._outage("no database connection came within %.1f s", wait)
                raise DatabaseUnavailable(
                    "the database cannot be reached", "db.unreachable"
                ) from None
            try:
                check(conn)
            except psycopg.Error as exc:
                log.info("dropping a pooled database connection: %s", str(exc).strip())
                conn.close()
                self.pool.putconn(conn)  # closed: the pool discards it and opens another
                continue
            return conn
        self._outage("no working database connection among %d tried", self.pool.max_size + 1)
        raise DatabaseUnavailable("the database cannot be reached", "db.unreachable")

    def _outage(self, message: str, *args: object) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(message, *args)

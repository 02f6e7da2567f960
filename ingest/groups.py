"""Ingest groups: the territory one broker and its workers carry.

A province runs one broker per district (or per few districts), each with its own ingest group,
all storing into one database. A group has a name (GRIDWATCH_INGEST_GROUP) and carries areas of
the territory (GRIDWATCH_INGEST_AREAS, territory ids; none: the whole territory). Its leader does
the broker-side work for the nodes under those areas only: their commands and configurations,
their broker accounts, the group's worker slots, their silent devices. A message from a node
outside the areas is refused: it belongs on another group's broker. Work on the database alone
(timers, notifications, retention) is done by one leader of all the groups (ingest.leader).

A worker starting claims its group's areas in `ingest_groups` (migration 020). Areas the
territory does not have, areas of one group inside one another, and areas another group that is
running carries already are refused with a sentence saying what to change.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
DEFAULT_GROUP = "main"
GROUP_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
AREA_PATTERN = r"^[A-Za-z0-9_]{1,64}$"  # a territory id (migration 001)
_CLAIM_LOCK = 0x67726967  # "grig": claims are made one at a time


class GroupError(ValueError):
    """A group configured so that it cannot start; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Scope:
    """The territory one ingest group carries."""

    group: str = DEFAULT_GROUP
    areas: tuple[str, ...] = ()  # territory ids, as configured
    paths: tuple[str, ...] = ()  # their ltree paths; none: the whole territory

    @property
    def whole(self) -> bool:
        return not self.paths

    def param(self) -> list[str] | None:
        """The one parameter of a `within()` condition."""
        return list(self.paths) if self.paths else None

    def covers(self, path: str) -> bool:
        """Whether a territory path lies in this group's areas."""
        return self.whole or any(_inside(path, p) for p in self.paths)

    def describe(self) -> str:
        return "the whole territory" if self.whole else ", ".join(self.areas)

    @property
    def lock_key(self) -> int:
        """The advisory lock of this group's leader (one per group, a 63-bit hash of its name)."""
        digest = hashlib.blake2b(f"gridwatch-ingest-group:{self.group}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)


WHOLE = Scope()


def within(column: str) -> str:
    """SQL that is true when the ltree `column` lies in a scope's areas; its one parameter is
    `Scope.param()` (NULL: the whole territory)."""
    return f"COALESCE({column} <@ %s::ltree[], true)"


def _inside(path: str, area: str) -> bool:
    return path == area or path.startswith(area + ".")


def claim(conn: Conn, group: str, areas: Sequence[str], live_s: float) -> Scope:
    """Record that `group` carries `areas` (territory ids; none: all of it) and return its scope.
    Raises GroupError for an area the territory lacks, two areas of the group inside one another,
    or an area that another group heard from in the last `live_s` seconds carries."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
        found = {
            str(i): str(p)
            for i, p in conn.execute(
                "SELECT id, path::text FROM territory WHERE id = ANY(%s)", (list(areas),)
            ).fetchall()
        }
        unknown = [a for a in areas if a not in found]
        if unknown:
            raise GroupError(
                f"GRIDWATCH_INGEST_AREAS of ingest group {group!r} names {', '.join(unknown)},"
                " which the territory does not have: give territory ids as the registry file"
                " lists them (its `areas`), or register those areas first"
            )
        for a, b in itertools.permutations(areas, 2):
            if _inside(found[b], found[a]):
                raise GroupError(
                    f"GRIDWATCH_INGEST_AREAS of ingest group {group!r} lists {a!r} and {b!r},"
                    f" which lies inside {a!r}: list only {a!r}"
                )
        scope = Scope(group, tuple(areas), tuple(found[a] for a in areas))
        others = conn.execute(
            """SELECT name, areas, paths::text[], extract(epoch FROM now() - heartbeat_at)::float8
               FROM ingest_groups
               WHERE name <> %s AND heartbeat_at > now() - make_interval(secs => %s)
               ORDER BY name""",
            (group, live_s),
        ).fetchall()
        for name, their_areas, their_paths, ago in others:
            theirs = Scope(str(name), tuple(their_areas), tuple(their_paths))  # type: ignore[arg-type]
            clash = overlap(scope, theirs)
            if clash is not None:
                raise GroupError(
                    f"ingest group {group!r} would carry {clash}, which ingest group {name!r}"
                    f" carries already (its areas: {theirs.describe()}; a worker of it was heard"
                    f" from {float(str(ago)):.0f} s ago): one area belongs to one group. Take it"
                    f" out of one group's GRIDWATCH_INGEST_AREAS (and restart that group first"
                    f" when moving it); a stopped group's claim lapses after"
                    f" GRIDWATCH_SLOT_STALE_S"
                )
        conn.execute(
            """INSERT INTO ingest_groups (name, areas, paths, heartbeat_at)
               VALUES (%s, %s, %s::ltree[], now())
               ON CONFLICT (name) DO UPDATE SET areas = excluded.areas, paths = excluded.paths,
                   heartbeat_at = now()""",
            (group, list(scope.areas), list(scope.paths)),
        )
    log.info("ingest group claimed group=%s areas=%s", group, scope.describe())
    return scope


def overlap(a: Scope, b: Scope) -> str | None:
    """What two groups would both carry, in words; None when nothing."""
    if a.whole or b.whole:
        return "the whole territory" if a.whole and b.whole else (
            b.describe() if a.whole else a.describe()
        )  # fmt: skip
    pairs = itertools.product(
        zip(a.areas, a.paths, strict=True), zip(b.areas, b.paths, strict=True)
    )
    for (ai, ap), (bi, bp) in pairs:
        if _inside(bp, ap):
            return repr(bi) if ai == bi else f"{bi!r} (inside {ai!r})"
        if _inside(ap, bp):
            return f"{ai!r} (inside {bi!r})"
    return None


def beat(conn: Conn, group: str) -> None:
    """A worker of the group is alive: its claim holds."""
    conn.execute("UPDATE ingest_groups SET heartbeat_at = now() WHERE name = %s", (group,))


def report_broker(conn: Conn, group: str, *, down: bool) -> None:
    """Whether the group's leader reaches its broker (other groups' leaders read it)."""
    conn.execute(
        """UPDATE ingest_groups SET broker_down_since = CASE WHEN %s
               THEN coalesce(broker_down_since, now()) END
           WHERE name = %s""",
        (down, group),
    )


def brokers_down(conn: Conn, *, besides: str, live_s: float) -> list[str]:
    """The other running groups whose leader cannot reach its broker."""
    rows = conn.execute(
        """SELECT name FROM ingest_groups
           WHERE name <> %s AND broker_down_since IS NOT NULL
             AND heartbeat_at > now() - make_interval(secs => %s) ORDER BY name""",
        (besides, live_s),
    ).fetchall()
    return [str(r[0]) for r in rows]

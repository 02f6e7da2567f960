"""Refused broker connects, counted from the broker's log file and shown to admins.

Mosquitto 2.0.11 logs a refused CONNECT (bad user name or password, unknown or disabled account)
as "Client <unknown> disconnected, not authorised." without the account name: it drops the
client id before it logs. What the log does give is the address of each new connection ("New
connection from ADDR:PORT on port N.") and the account of every accepted one ("New client
connected from ADDR:PORT as ID (..., u'USER')."). So a refusal is paired with the connection
that was opened just before it and not accepted, and counted per source address; it is put down
to a node when that address has been seen for one node account only (a venue's router usually
is one node). The leader tails the file (it must be on the ingest leader's host or a shared
volume: `log_dest file` in the broker configuration) and follows it across rotation.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Counter

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

REFUSED = Counter(
    "gridwatch_broker_refused_connects_total",
    "Connects the broker refused (bad credentials, unknown or disabled account), from its log",
)

_NEW = re.compile(r"New connection from (?P<addr>\S+):(?P<port>\d+) on port \d+\.$")
_OK = re.compile(r"New client connected from (?P<addr>\S+):(?P<port>\d+) as \S+ .*u'(?P<user>[^']*)'\)\.$")  # fmt: skip
_GONE = re.compile(r"Client <unknown> (closed its connection|disconnected due to .*|has exceeded timeout, disconnecting)\.$")  # fmt: skip
_REFUSED = re.compile(r"Client (?P<who>\S+) disconnected, not authorised\.$")
_TS = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d): (?P<msg>.*)$")
REASON = "not authorised (bad user name or password, or an unknown or disabled account)"
_PENDING_MAX = 10_000  # opened connections not yet accepted or refused that are remembered


@dataclass(frozen=True, slots=True)
class Refusal:
    """Refused connects from one client (an account, or a source address)."""

    client: str
    node_id: str | None
    reason: str
    count: int
    first_seen: datetime
    last_seen: datetime
    site: str | None = None


class RefusalLog:
    """Follows the broker's log file and adds its refusals to `broker_refusals`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._offset = 0
        self._partial = ""
        self._pending: OrderedDict[str, None] = OrderedDict()  # "addr:port" not yet decided
        self._users: dict[str, set[str]] = {}  # address -> accounts seen connecting from it
        self._missing_said = False

    def read(self, conn: Conn) -> int:
        """Read what the broker wrote since the last call; how many refusals it held."""
        lines = self._new_lines()
        found: dict[str, tuple[str | None, int, str | None]] = {}
        for line in lines:
            m = _TS.match(line)
            ts, msg = (m["ts"], m["msg"]) if m else (None, line)
            if (hit := _NEW.search(msg)) is not None:
                self._pending[f"{hit['addr']}:{hit['port']}"] = None
                while len(self._pending) > _PENDING_MAX:
                    self._pending.popitem(last=False)
            elif (hit := _OK.search(msg)) is not None:
                self._pending.pop(f"{hit['addr']}:{hit['port']}", None)
                self._users.setdefault(hit["addr"], set()).add(hit["user"])
            elif (hit := _REFUSED.search(msg)) is not None:
                client = hit["who"]
                if client == "<unknown>":
                    # The oldest connection not yet decided: a client sends CONNECT as soon as
                    # its connection is open, and the broker handles them in turn.
                    client = self._oldest_address()
                user = client if client in self._known_users() else None
                if user is None:
                    seen = self._users.get(client, set())
                    user = next(iter(seen)) if len(seen) == 1 else None
                prev = found.get(client, (user, 0, ts))
                found[client] = (user, prev[1] + 1, ts)
            elif _GONE.search(msg) is not None:
                self._oldest_address()
        if found:
            self._store(conn, found)
        return sum(n for _, n, _ in found.values())

    def _oldest_address(self) -> str:
        if not self._pending:
            return "unknown"
        return self._pending.popitem(last=False)[0].rsplit(":", 1)[0]

    def _known_users(self) -> set[str]:
        return {u for us in self._users.values() for u in us}

    def _new_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_said:
                log.warning("broker log %s not found: refused connects are not counted until it"
                            " appears (GRIDWATCH_BROKER_LOG_FILE)", self.path)  # fmt: skip
                self._missing_said = True
            return []
        self._missing_said = False
        if self._inode is None:
            # First look: start at the end (what was refused before this leader is not recounted).
            self._inode, self._offset = st.st_ino, st.st_size
            return []
        if st.st_ino != self._inode or st.st_size < self._offset:  # rotated or truncated
            self._inode, self._offset, self._partial = st.st_ino, 0, ""
        if st.st_size == self._offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read(min(st.st_size - self._offset, 64 * 1024 * 1024))
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the rest
        return lines

    @staticmethod
    def _store(conn: Conn, found: dict[str, tuple[str | None, int, str | None]]) -> None:
        for client, (user, n, _ts) in found.items():
            REFUSED.inc(n)
            conn.execute(
                """INSERT INTO broker_refusals (client, node_id, reason, count)
                   VALUES (%(client)s, (SELECT id FROM edge_nodes WHERE id = %(user)s),
                           %(reason)s, %(n)s)
                   ON CONFLICT (client) DO UPDATE SET count = broker_refusals.count + excluded.count,
                       last_seen = now(), reason = excluded.reason,
                       node_id = coalesce(excluded.node_id, broker_refusals.node_id)""",
                {"client": client, "user": user, "reason": REASON, "n": n},
            )
            log.warning("broker refused connects client=%s node=%s count=%d", client,
                        user or "-", n)  # fmt: skip


def refusals(conn: Conn, scope_path: str | None = None, limit: int = 500) -> list[Refusal]:
    """Refused connects, latest first. `scope_path`: an admin's territory path (ltree); then
    only refusals put down to nodes in that subtree. None: all, also those of no known node
    (which only admins of a whole city should see)."""
    rows = conn.execute(
        """SELECT r.client, r.node_id, r.reason, r.count, r.first_seen, r.last_seen, n.venue_id
           FROM broker_refusals r
           LEFT JOIN edge_nodes n ON n.id = r.node_id
           LEFT JOIN venues v ON v.id = n.venue_id
           LEFT JOIN territory t ON t.id = v.grid_id
           WHERE %(scope)s::ltree IS NULL OR t.path <@ %(scope)s::ltree
           ORDER BY r.last_seen DESC LIMIT %(limit)s""",
        {"scope": scope_path, "limit": limit},
    ).fetchall()
    return [
        Refusal(str(c), str(n) if n else None, str(r), int(k), f, last, str(s) if s else None)
        for c, n, r, k, f, last, s in rows
    ]

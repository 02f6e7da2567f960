"""The audit log: writing a row (`write`, the one helper the API, the command line and the
registry use) and its hash chain (migration 010): an edited, removed or inserted row breaks it.

The database renders each row's fields (audit_log_fields); the hashes are recomputed here, not
taken from the database's own function."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = bytes(32)  # the previous hash of the first row
_HEAD_RE = re.compile(r"^(\d+):([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit row as the chain sees it: its place, fields (as text) and stored hashes."""

    id: int
    seq: int
    fields: tuple[str, ...]
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int
    head: str  # "SEQ:HASH" of the last row, to write down and check against later
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def write(
    conn: psycopg.Connection[Any],
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    client: str = "",
) -> None:
    """One row of the audit log, in the caller's transaction: who (`actor`) did what
    (`action`, e.g. "wall.token.issue") to what (`target`), with what (`detail`), from where
    (`client`: "cli:USER", or the API's client address)."""
    conn.execute(
        "INSERT INTO audit_log (person_id, action, target, detail, client) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target, Jsonb(detail or {}), client),
    )


def entry_hash(prev: bytes, fields: Sequence[str]) -> bytes:
    """sha256 of the previous hash and each field written as "LENGTH:BYTES" (UTF-8)."""
    digest = hashlib.sha256(prev)
    for field in fields:
        raw = field.encode()
        digest.update(f"{len(raw)}:".encode() + raw)
    return digest.digest()


def parse_head(text: str) -> tuple[int, bytes]:
    """A head written down earlier ("SEQ:HASH", as `audit verify` prints it)."""
    match = _HEAD_RE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"--expect {text!r} is not SEQ:HASH as `gridwatch audit verify` prints it")
    return int(match[1]), bytes.fromhex(match[2])


def check(entries: Iterable[Entry], expect: tuple[int, bytes] | None = None) -> Verdict:
    """Walk the chain in order of `seq`; every break is a problem, named by its row."""
    problems: list[str] = []
    prev, seq, count, seen = GENESIS, 0, 0, None
    for e in entries:
        count += 1
        if e.seq != seq + 1:
            problems.append(f"rows {seq + 1}..{e.seq - 1} are missing (before id {e.id})")
        if e.prev_hash != prev:
            problems.append(f"row {e.seq} (id {e.id}) does not follow the row before it")
        if entry_hash(e.prev_hash, e.fields) != e.hash:
            problems.append(f"row {e.seq} (id {e.id}) was changed after it was written")
        prev, seq = e.hash, e.seq
        if expect is not None and e.seq == expect[0]:
            seen = e.hash
    if expect is not None:
        if seen is None:
            problems.append(f"row {expect[0]}, the head written down, is gone")
        elif seen != expect[1]:
            problems.append(f"row {expect[0]} is not the row written down")
    return Verdict(count, f"{seq}:{prev.hex()}", problems)


def verify(
    conn: psycopg.Connection[tuple[object, ...]], expect: tuple[int, bytes] | None = None
) -> Verdict:
    """Check the audit log of the database (needs SELECT on audit_log: the owner's)."""
    cur = conn.execute(
        "SELECT id, seq, audit_log_fields(a), prev_hash, hash FROM audit_log a ORDER BY seq"
    )
    rows: Iterable[tuple[Any, ...]] = cur
    entries = (Entry(int(r[0]), int(r[1]), tuple(r[2]), bytes(r[3]), bytes(r[4])) for r in rows)
    return check(entries, expect)

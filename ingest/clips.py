"""Event clips: the parts of a camera alert's video (`camera.clip`) joined into one clip.

Parts are stored like any series (once per message id, and once per clip and part whatever
message brought them: migrations/029). In the transaction that stored a part, its clip is looked
at under a lock of its own (so two workers holding different parts of one clip take turns, and
the second sees the first's): when every part is there, and they agree on what the clip is, the
clip is joined, checked against its length, digest and the platform's size cap, stored in
`camera_clips` and its parts deleted. A clip whose parts disagree or which is too large is
refused with its reason, as any message that cannot be stored, and its parts deleted.

Everything is scoped by node: a clip id is the node's own, so parts from elsewhere never meet it.
A node may hold at most `max_incomplete` clips waiting for parts; a part of one more is refused
(so a node cannot fill the database with parts that never join). A stored clip's `ts`, which
retention goes by, is bounded by the platform's clock.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg

from gateway.codec import Inbound, RejectReason
from gateway.messages import CameraClip

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]

# What every part of one clip repeats; parts that differ in any of it are not one clip.
_WHAT = "device_id, alert_id, parts, mime, width, height, fps, started_at, ended_at, size, sha256"


class _Part(Protocol):
    """A stored message (ingest.writer.Accepted)."""

    @property
    def inbound(self) -> Inbound: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ClipRefused:
    """A clip that cannot be stored, named by one of its parts."""

    topic: str
    payload: bytes
    reason: RejectReason
    detail: str


DEFAULT_MAX_INCOMPLETE = 32  # clips one node may have waiting for parts (x 2 MB at most each)


def assemble(
    conn: Conn, parts: Sequence[_Part], max_bytes: int, stored: Counter[str],
    max_incomplete: int = DEFAULT_MAX_INCOMPLETE,
) -> list[ClipRefused]:  # fmt: skip
    """Join the clips these just-stored parts complete (inside the caller's transaction); the
    clips refused, with why. `stored` counts the clips stored."""
    by_clip: dict[tuple[str, uuid.UUID], _Part] = {}
    for p in parts:
        assert isinstance(p.inbound.message, CameraClip)
        by_clip.setdefault((p.inbound.topic.node, p.inbound.message.clip_id), p)
    refused: list[ClipRefused] = []
    for node, clip_id in sorted(by_clip):  # one order for every worker: no deadlock
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 29))", (f"{node}/{clip_id}",)
        )
        why = _join(conn, node, clip_id, max_bytes, max_incomplete, stored)
        if why is not None:
            reason, detail = why
            p = by_clip[(node, clip_id)]
            log.warning("clip refused clip=%s reason=%s: %s", clip_id, reason.value, detail)
            refused.append(ClipRefused(str(p.inbound.topic), p.payload, reason, detail))
    return refused


def _join(
    conn: Conn, node: str, clip_id: uuid.UUID, max_bytes: int, max_incomplete: int,
    stored: Counter[str],
) -> tuple[RejectReason, str] | None:  # fmt: skip
    """Store the clip if all its parts are here; why it is refused, or None."""
    row = conn.execute(
        f"""SELECT count(*), count(DISTINCT ({_WHAT})), min(parts), min(size),
                   EXISTS (SELECT 1 FROM camera_clips WHERE clip_id = %(id)s AND node_id = %(n)s)
            FROM camera_clip_parts WHERE clip_id = %(id)s AND node_id = %(n)s""",
        {"id": clip_id, "n": node},
    ).fetchone()
    assert row is not None
    have, versions, parts, size, done = row
    assert isinstance(have, int) and isinstance(versions, int)
    why: tuple[RejectReason, str] | None = None
    if done:
        pass  # a part sent again after its clip was joined: nothing more to do
    elif versions > 1:
        why = (RejectReason.CONFLICT,
               f"the parts of clip {clip_id} disagree about what the clip is (its camera, alert,"
               " size, digest, times or format); none of it is kept")  # fmt: skip
    elif isinstance(size, int) and size > max_bytes:
        why = (RejectReason.OVERSIZED,
               f"clip {clip_id} is {size} bytes, over the platform's cap of {max_bytes}; set"
               " clips.max_bytes in the camera's settings to at most that")  # fmt: skip
    elif have < int(str(parts)):
        waiting = _incomplete(conn, node)
        if waiting <= max_incomplete:
            return None  # more parts to come
        why = (RejectReason.IMPLAUSIBLE,
               f"node {node} has {waiting} clips waiting for parts, over the platform's cap of"
               f" {max_incomplete} (GRIDWATCH_CLIP_MAX_INCOMPLETE); clip {clip_id} is not kept")  # fmt: skip
    else:
        why = _store(conn, node, clip_id)
        if why is None:
            stored["camera_clips"] += 1
    conn.execute(
        "DELETE FROM camera_clip_parts WHERE clip_id = %s AND node_id = %s", (clip_id, node)
    )
    return why


def _incomplete(conn: Conn, node: str) -> int:
    """How many clips of the node wait for parts (this one included)."""
    row = conn.execute(
        "SELECT count(DISTINCT clip_id) FROM camera_clip_parts WHERE node_id = %s", (node,)
    ).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def _store(conn: Conn, node: str, clip_id: uuid.UUID) -> tuple[RejectReason, str] | None:
    """Join a complete clip's parts and store it if they make the clip they describe."""
    row = conn.execute(
        f"""SELECT string_agg(data, ''::bytea ORDER BY part), NULL, {_WHAT}
            FROM camera_clip_parts WHERE clip_id = %s AND node_id = %s GROUP BY {_WHAT}""",
        (clip_id, node),
    ).fetchone()
    assert row is not None
    data = row[0]
    assert isinstance(data, bytes)
    _, device, alert, _, mime, width, height, fps, start, end, size, sha256 = row[1:]
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        return (RejectReason.CONFLICT,
                f"clip {clip_id}'s parts join to {len(data)} bytes that are not the clip they"
                " describe (its size and SHA-256); none of it is kept")  # fmt: skip
    # Retention goes by `ts`: the node's time of the first frame, but never later than now, so a
    # clock that runs ahead cannot keep a video of people past the platform's 30 days.
    conn.execute(
        """INSERT INTO camera_clips (ts, started_at, clip_id, node_id, device_id, alert_id, mime,
                                     width, height, fps, ended_at, size, data)
           VALUES (least(%(start)s::timestamptz, now()), %(start)s, %(id)s, %(node)s, %(device)s,
                   %(alert)s, %(mime)s, %(w)s, %(h)s, %(fps)s, %(end)s, %(size)s, %(data)s)
           ON CONFLICT DO NOTHING""",
        {"start": start, "id": clip_id, "node": node, "device": device, "alert": alert,
         "mime": mime, "w": width, "h": height, "fps": fps, "end": end, "size": size,
         "data": data},
    )  # fmt: skip
    log.info("clip stored clip=%s device=%s alert=%s bytes=%d", clip_id, device, alert, size)
    return None

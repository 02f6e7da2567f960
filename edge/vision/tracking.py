"""Tracking moving objects from frame to frame: a constant-velocity Kalman filter per track and
one global assignment of blobs to tracks per frame.

Greedy nearest-neighbour matching swaps people who cross paths and loses a person whom a merged
blob stood in for. Here each track predicts where its foot will be; blobs are assigned to the
predictions all at once (the Hungarian method, SciPy's `linear_sum_assignment`), by distance
and likeness of size, within a gate around each prediction. A blob that also holds the
prediction of another track (two people passing each other, seen as one) updates neither: both
coast on their own motion until they part, so each keeps its identity and crosses a line once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.vision.motion import Blob

Point = tuple[float, float]

# Noise of the motion model, in frame fractions per frame (5 fps; a walker moves ~0.025).
_R = 0.006**2  # where a blob puts a foot: a few pixels either way
_Q_POS = 0.002**2
_Q_VEL = 0.004**2  # a walker changes speed or turns this much a frame
_V0 = 0.03**2  # a new track's velocity is unknown up to about a brisk walk
_GATE_GROWTH = 2  # a track unseen for a while may be found up to twice as far, no further
_GATE_SIGMA = 4.0  # a blob further than this many deviations from the prediction is another's
_SIZE_WEIGHT = 0.5  # cost of a blob twice or half the track's height, in gates
_COAST_DAMP = 0.9  # an object lost from view is assumed to slow down
_FAR = 1e6  # the cost of a pair beyond the gate: never assigned
_HISTORY = 8  # observations of shape kept for classifying a track
_SIZES = 24  # observations of size kept for how many people a blob holds


class ObjectKind(StrEnum):
    """What a track is judged to be (edge/vision/people.py decides)."""

    UNKNOWN = "unknown"
    PERSON = "person"
    ANIMAL = "animal"
    VEHICLE = "vehicle"
    OBJECT = "object"  # stationary and not a person: left behind


@dataclass(slots=True)
class Track:
    """One object followed over frames: its last blob, its filtered foot and velocity, and what
    the zones and the classifier remember about it."""

    id: int
    blob: Blob
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    # The covariance of (position, velocity), the same for both axes (same noise on each).
    p00: float = _R
    p01: float = 0.0
    p11: float = _V0
    hits: int = 1
    missed: int = 0
    occluded: int = 0  # frames coasting inside another track's blob
    seen: bool = True  # a blob of its own this frame
    kind: ObjectKind = ObjectKind.UNKNOWN
    votes: deque[ObjectKind] = field(default_factory=lambda: deque(maxlen=_HISTORY))
    # (foot row, height, area, width) of its blob in full view, analysis px but the row
    sizes: deque[tuple[float, int, int, int]] = field(default_factory=lambda: deque(maxlen=_SIZES))
    anchor: Point | None = None  # where it has been standing still since `still_since`
    still_since: float | None = None
    person_area: float = 0.0  # its blob's area when it last looked like a person
    moving_area: float = 0.0  # its blob's area when it last moved
    left_at: float | None = None  # an object: when nothing else was near it any more
    roamed: bool = False  # it moved after it appeared (a bag put down never does)
    checked: bool | None = None  # the person check's answer (False until it sees a person)
    checks: int = 0  # times the person check looked…
    checked_hits: int = 0  # …and the track's hits at the last look
    drifted: bool = False  # it moved with the snowfall at some time (people.py)
    crossed_tall: bool = False  # a person's height at its row when it last crossed a line
    sampled_at: float = -math.inf  # last calibration sample taken from it
    zone_since: dict[str, float] = field(default_factory=dict)  # zone name → entered at
    # counting line → the side the track was last counted on (or came from), where it was last
    # seen there, and whether it has been clearly on it since
    line_side: dict[str, tuple[float, Point, bool]] = field(default_factory=dict)
    crossings: list[tuple[str, int]] = field(default_factory=list)  # not yet tallied (±1)
    tallied: list[tuple[str, int]] = field(default_factory=list)  # crossings counted…
    counted_as: int = 1  # …for this many people each

    @property
    def foot(self) -> Point:
        return (self.x, self.y)

    @property
    def confirmed(self) -> bool:
        return self.hits >= 2

    @property
    def speed(self) -> float:
        """Frame fractions per frame."""
        return math.hypot(self.vx, self.vy)

    def predict(self) -> None:
        self.x += self.vx
        self.y += self.vy
        self.p00 += 2 * self.p01 + self.p11 + _Q_POS
        self.p01 += self.p11
        self.p11 += _Q_VEL

    def correct(self, blob: Blob) -> None:
        s = self.p00 + _R
        k0, k1 = self.p00 / s, self.p01 / s
        ex, ey = blob.foot[0] - self.x, blob.foot[1] - self.y
        self.x, self.y = self.x + k0 * ex, self.y + k0 * ey
        self.vx, self.vy = self.vx + k1 * ex, self.vy + k1 * ey
        self.p11 -= k1 * self.p01
        self.p00, self.p01 = (1 - k0) * self.p00, (1 - k0) * self.p01
        self.blob = blob

    def spread(self) -> float:
        """The standard deviation of where its next blob's foot may be."""
        return math.sqrt(self.p00 + _R)


def _within(p: Point, b: Blob, width: int, height: int) -> bool:
    """Whether the foot point p falls in blob b's box (a little widened), in frame fractions."""
    x, y = p[0] * width, p[1] * height
    return b.x - 2 <= x <= b.x + b.w + 2 and b.y <= y <= b.y + b.h + 3


class Tracker:
    """Kalman prediction, global assignment with gating, coasting through merges."""

    def __init__(self, max_step: float, max_missed: int, width: int, height: int) -> None:
        self.max_step = max_step  # in frame fractions per frame
        self.max_missed = max_missed
        self.max_hidden = 2 * max_missed  # frames a track may coast inside another's blob
        self.size = (width, height)  # the analysis size blobs are measured in
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, blobs: list[Blob]) -> list[Track]:
        """Match this frame's blobs; the confirmed tracks seen or coasting through a merge."""
        tracks = self.tracks
        for tr in tracks:
            tr.predict()
        matched = self._assign(tracks, blobs) if tracks and blobs else {}
        used = set(matched.values())
        # A track left without a blob whose prediction falls in a matched blob is hidden by (or
        # merged with) that other object: the merged blob corrects neither of them.
        shared: set[int] = set()
        hidden: set[int] = set()
        for i, tr in enumerate(tracks):
            if i in matched or not tr.confirmed or tr.occluded >= self.max_hidden:
                continue
            j = next((j for j in used if _within(tr.foot, blobs[j], *self.size)), None)
            if j is not None:
                shared.add(j)
                hidden.add(i)
        for i, tr in enumerate(tracks):
            j = matched.get(i)
            if j is not None and (j not in shared or tr.occluded >= self.max_hidden):
                tr.correct(blobs[j])
                tr.hits, tr.missed, tr.occluded, tr.seen = tr.hits + 1, 0, 0, True
                continue
            tr.seen = False
            if j is not None or i in hidden:
                tr.occluded += 1  # neither seen nor lost: it walks on behind the other
            else:
                tr.missed += 1
                tr.vx, tr.vy = tr.vx * _COAST_DAMP, tr.vy * _COAST_DAMP
        self.tracks = [tr for tr in tracks if tr.missed <= self.max_missed]
        for j, b in enumerate(blobs):
            if j not in used:
                self.tracks.append(Track(self._next_id, b, *b.foot))
                self._next_id += 1
        return [tr for tr in self.tracks if tr.confirmed and tr.missed == 0]

    def _assign(self, tracks: list[Track], blobs: list[Blob]) -> dict[int, int]:
        """Blob for each track, all at once: cheapest total cost, nothing beyond a gate."""
        if len(tracks) == 1 or len(blobs) == 1:  # the usual case: no need for the solver
            return self._assign_one(tracks, blobs)
        at = np.array([(tr.x, tr.y, tr.blob.h, tr.spread(), tr.missed + tr.occluded)
                       for tr in tracks])  # fmt: skip
        bs = np.array([(b.foot[0], b.foot[1], b.h) for b in blobs])
        limit = self.max_step * np.minimum(1 + at[:, 4], _GATE_GROWTH)
        gate = np.minimum(limit, np.maximum(0.3 * self.max_step, _GATE_SIGMA * at[:, 3]))[:, None]
        d = np.hypot(at[:, 0:1] - bs[None, :, 0], at[:, 1:2] - bs[None, :, 1])
        size = np.abs(np.log(np.maximum(bs[None, :, 2], 1) / np.maximum(at[:, 2:3], 1)))
        cost = np.where(d <= gate, d / gate + _SIZE_WEIGHT * size / math.log(2), _FAR)
        rows, cols = linear_sum_assignment(cost)
        return {int(i): int(j) for i, j in zip(rows, cols, strict=True) if cost[i, j] < _FAR}

    def _gate(self, tr: Track) -> float:
        limit = self.max_step * min(1 + tr.missed + tr.occluded, _GATE_GROWTH)
        return min(limit, max(0.3 * self.max_step, _GATE_SIGMA * tr.spread()))

    def _assign_one(self, tracks: list[Track], blobs: list[Blob]) -> dict[int, int]:
        """The cheapest pair within its gate, when there is one track or one blob."""
        best: tuple[float, int, int] | None = None
        for i, tr in enumerate(tracks):
            gate = self._gate(tr)
            for j, b in enumerate(blobs):
                d = math.hypot(b.foot[0] - tr.x, b.foot[1] - tr.y)
                if d > gate:
                    continue
                size = abs(math.log(max(b.h, 1) / max(tr.blob.h, 1)))
                cost = d / gate + _SIZE_WEIGHT * size / math.log(2)
                if best is None or cost < best[0]:
                    best = (cost, i, j)
        return {} if best is None else {best[1]: best[2]}

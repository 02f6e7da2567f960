"""People, animals, vehicles and left objects: what a track is, judged against perspective.

A flat ground seen by a fixed camera makes a standing person's height in the picture a straight
line of the row their feet are on (zero at the horizon). `PersonScale` holds that line: set from
two reference heights in the camera settings, or learned from the tracks themselves (a robust
line fit of blob height against foot row over confirmed, upright, moving tracks; the configured
`person_height` everywhere until enough of them were seen). Against it each observation of a
track votes: a person is about as tall as expected at that row and narrower than tall; an animal
is much lower and wider than tall (and may move faster than anyone walks); a vehicle is wide
and big. A track that stands still from the moment it appears and does not look like a person is
an object (a bag put down), and so is a person's track that stays behind on something much
smaller; it is left behind once nothing else is near it. Merged pairs are split where the outline dips between heads, by the expected width.
Crowds are counted per ground area: each moving pixel over the area of a person at its row.
The HOG people detector (and the upper-body cascade) OpenCV ships is asked only for undecided
tracks when they would start an alert: a few times, a second apart, since one look is one pose.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter, deque

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from edge.vision.config import PersonHeight
from edge.vision.motion import Blob
from edge.vision.tracking import ObjectKind, Track

log = logging.getLogger(__name__)

PERSON_FILL = 0.25  # a person's blob covers about this share of its height squared
_PIECE = 1 / 3  # a crowd's blob smaller than this share of a person is a piece of one
_ASPECT = 0.42  # one standing person's blob width over its height (arms, gait)
_MASK_PAD_PX = 2  # the motion mask makes an object about this much larger each way (analysis px)
_MIN_HEIGHT = 0.02  # no person is expected smaller than this share of the frame's height
_SAMPLES = 400
_FIT_AFTER = 40  # samples before the first fit…
_FIT_TRACKS = 4  # …from this many tracks
_FIT_EVERY = 25
_ROW_SPREAD = 0.15  # feet seen over less of the frame than this give a level, not a slope
# Samples come from blobs narrower than this over their height: a person (with their own
# shadow on the ground beside them in low sun), not a dog (longer than high, and much lower).
_UPRIGHT = 1.1
_SAMPLE_EVERY_S = 1.0  # one sample a second per track: a loiterer does not outvote the rest
_VOTES = 3  # observations of one kind, and a majority, to decide a track's kind
_OBJECT_MIN_PX = 40  # at 320x180: an object left is at least this big (a bag near by is 200)
_SHED = 0.5  # a person's track left on something this much smaller than they were
_FADED = 0.6  # a still blob this much smaller than when it moved is fading into the background
_OBJECT_AFTER_S = 2.0  # still this long from the start, never a person: an object
_MAX_WALK = 3.0  # person heights a second: faster is not someone walking
# A vehicle's blob fills at least this share of its box (a rendered car's 0.58-0.68, with its
# roof and the mask's rim); a walker's with their shadow beside them fills 0.33-0.54.
_SOLID = 0.55
_SPLIT_WIDTH = 1.6  # blobs wider than this many people are looked at for a split
_DIP = 0.08  # a split needs the outline to dip this share of a person's height between heads
_MAX_PARTS = 4
_OBJECT_SHARE = 0.4  # objects left may be this much smaller than the smallest person blob
# The person check looks again at a track it did not see a person in, a second later, a few
# times: one look is one pose, and a walker's legs together or a blurred frame can hide them.
_CHECKS = 3
_RECHECK_S = 1.0
_JOIN_MAX = 24  # more blobs than this at once (rain, snow): not worth joining
_SIZE_LOOKS = 5  # looks at a track's size before judging how many people it holds
# A track's height over a person's at its row, times the square root of its area over theirs:
# about 1 for one person (0.8-1.4 with people's own heights and gait), above these for people
# walking abreast across the view, stacked in depth (the far one's head and legs stick out).
_STACKED = (1.45, 2.3)
_STACKED_WIDTH = 0.95  # people one behind the other are as wide as one (with gait and shadow)
# Snow: flakes are carried by the wind together, so the tracks of many blobs too small for
# anyone share one velocity. A blob that moves with them (two flakes one above the other, as
# tall as a far person) is weather; someone walking on the ground moves their own way.
_FIELD_TRACKS = 8  # this many small tracks moving alike are falling flakes
_FIELD_HITS = 5  # a track's velocity is its own after this many frames
_FIELD_MIN_SPEED = 0.02  # frame fractions a second: what stands still is no precipitation
_FIELD_NEAR = 0.03  # frame fractions a second: a velocity this close to the flakes' (foot
# noise) moves with them, and never closer than half their speed (a still track in light snow)


class LearnedScale(BaseModel):
    """A learned perspective as kept on disk, so that a camera restarted (a power cut, an
    update) goes on from what it learned instead of judging everyone against the prior again.
    It holds only for the analysis size and prior it was learned with."""

    model_config = ConfigDict(extra="forbid")

    analysis_height: int = Field(gt=0)
    prior: float = Field(gt=0, le=1)
    level: float = Field(ge=-1, le=1)
    slope: float = Field(ge=0, le=10)
    near: float | None = Field(default=None, ge=0, le=1)
    # (foot row, height, track) as fitted, the tracks of an earlier run renumbered below zero
    samples: list[tuple[float, float, int]] = Field(max_length=_SAMPLES)


class PersonScale:
    """The expected height of a person's blob by foot row, both as shares of the frame height."""

    def __init__(self, prior: float, references: list[PersonHeight], height_px: int) -> None:
        self.pad = _MASK_PAD_PX / height_px
        self.fixed = bool(references)
        self.prior = prior + self.pad  # the configured height, whatever is learned later
        self.learned = self.fixed
        self.level, self.slope = prior + self.pad, 0.0
        # A level learned from feet seen only over a band of far rows holds there; nearer, people
        # look bigger (perspective), so below this row the level is not the height expected.
        self._near: float | None = None
        if references:
            a, b = references
            self.slope = (b.height - a.height) / (b.row - a.row)
            self.level = a.height + self.pad - self.slope * a.row
        self._samples: deque[tuple[float, float, int]] = deque(maxlen=_SAMPLES)
        self._new = 0
        self.version = 0  # bumped when the line changes
        self._height_px = height_px
        self._configured = prior

    def height(self, row: float) -> float:
        h = self.level + self.slope * row
        if self._near is not None and row > self._near:
            # Nearer than any foot the level was learned from: growing with the row as it does
            # with the horizon at the frame's top, up to the configured height (a dog near by is
            # not judged against the far walkers' size).
            h = max(h, min(self.prior, self.level * row / self._near))
        return max(_MIN_HEIGHT + self.pad, h)

    def observe(self, row: float, height: float, track_id: int) -> None:
        """A sample from an upright, moving, confirmed track (ignored when fixed)."""
        if self.fixed:
            return
        self._samples.append((row, height, track_id))
        self._new += 1
        ready = len(self._samples) >= _FIT_AFTER and self._new >= (
            _FIT_EVERY if self.learned else 1
        )
        if ready and len({s[2] for s in self._samples}) >= _FIT_TRACKS:
            self._new = 0
            self._fit()

    def learnt(self) -> LearnedScale | None:
        """What was learned, to keep (None when the line is set or not learned yet)."""
        if self.fixed or not self.learned:
            return None
        return LearnedScale(analysis_height=self._height_px, prior=self._configured,
                            level=self.level, slope=self.slope, near=self._near,
                            samples=list(self._samples))  # fmt: skip

    def resume(self, kept: LearnedScale) -> bool:
        """Go on from a line learned before, unless the line is set or `kept` was learned at
        another analysis size or with another prior (then it is learned again); whether it
        was taken."""
        if (
            self.fixed
            or kept.analysis_height != self._height_px
            or not math.isclose(kept.prior, self._configured)
        ):
            return False
        self.level, self.slope, self._near = kept.level, kept.slope, kept.near
        # The samples' tracks are an earlier run's: numbered apart from this run's.
        self._samples.extend((r, h, -abs(i) - 1) for r, h, i in kept.samples)
        self.learned = True
        self.version += 1
        return True

    def forget(self) -> None:
        """The camera is in a new position: the learned line no longer holds (a set one is
        the installer's to change)."""
        if self.fixed:
            return
        self.level, self.slope, self._near = self.prior, 0.0, None
        self._samples.clear()
        self._new, self.learned = 0, False
        self.version += 1
        log.info("camera person scale forgotten: the camera was moved; learning it again")

    def _fit(self) -> None:
        """A straight line through the samples, refitted twice without the outliers."""
        data = np.array(self._samples)
        rows, heights = data[:, 0], data[:, 1]
        keep = np.ones(len(rows), bool)
        level, slope = float(np.median(heights)), 0.0
        spread = float(np.percentile(rows, 90) - np.percentile(rows, 10))
        sloped = False
        for _ in range(3):
            sloped = spread >= _ROW_SPREAD and keep.sum() >= 10
            if sloped:
                slope, level = (float(v) for v in np.polyfit(rows[keep], heights[keep], 1))
            else:
                level, slope = float(np.median(heights[keep])), 0.0
            res = heights - (level + slope * rows)
            mad = float(np.median(np.abs(res[keep]))) * 1.4826
            keep = np.abs(res) <= max(2.5 * mad, 0.01)
        if slope < 0:  # nearer people cannot look smaller: the rows seen were too few
            level, slope, sloped = float(np.median(heights[keep])), 0.0, False
        self._near = None if sloped else float(np.percentile(rows, 90))
        self.level, self.slope, self.learned = level, slope, True
        self.version += 1
        log.info("camera person scale learned level=%.3f slope=%.3f samples=%d",
                 level, slope, len(rows))  # fmt: skip


class People:
    """Judges tracks, splits pairs and counts crowds for one camera at the analysis size."""

    def __init__(
        self, scale: PersonScale, width: int, height: int, fps: float, min_area: float
    ) -> None:
        self.scale = scale
        self.width, self.height, self.fps = width, height, fps
        self.min_area = min_area
        self._recheck_hits = max(1, round(_RECHECK_S * fps))
        self._object_px = _OBJECT_MIN_PX * width * height / (320 * 180)
        self._weights_version = -1
        self._weights: NDArray[np.float64] = np.zeros(height)
        # The person check's detectors, loaded with the camera (tens of ms), not mid-stream.
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(
            np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        )
        self._upper = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_upperbody.xml"  # type: ignore[attr-defined]
        )

    # ---- blobs ----

    def person_px(self, row: float) -> tuple[float, float]:
        """The expected blob height and area of a person with feet at `row` (analysis px)."""
        h = self.scale.height(row) * self.height
        return h, PERSON_FILL * h * h

    def prepare(self, blobs: list[Blob], mask: MatLike) -> list[Blob]:
        """Pieces of one person joined, blobs too small for anything at their row dropped,
        merged pairs split."""
        out: list[Blob] = []
        for b in self._join(blobs) if 1 < len(blobs) <= _JOIN_MAX else blobs:
            eh, area = self.person_px(b.foot[1])
            if b.area < _OBJECT_SHARE * self.min_area * area:
                continue  # noise (what is below min_area may still be a bag, not a person)
            if b.w > _SPLIT_WIDTH * _ASPECT * eh and b.h > 0.6 * eh:
                out += self._split(b, mask, eh)
            else:
                out.append(b)
        return out

    def _join(self, blobs: list[Blob]) -> list[Blob]:
        """Blobs stacked one above the other within one person's height at the lower one's
        row: the mask broke a person in pieces (legs, body, head) where they look like the
        background. Joined, they are a person's shape with a person's foot point."""
        rest = sorted(blobs, key=lambda b: -(b.y + b.h))  # lowest feet first
        out: list[Blob] = []
        while rest:
            b = rest.pop(0)
            eh = self.person_px(b.foot[1])[0]
            for o in list(rest):
                x0, x1 = max(b.x, o.x), min(b.x + b.w, o.x + o.w)
                top = min(b.y, o.y)
                if x1 - x0 < 0.5 * min(b.w, o.w) or b.y + b.h - top > 1.25 * eh:
                    continue
                # Together wider than a person, and wider than the wider piece by more than
                # the mask's padding (a head over its own long shadow sticks out that much):
                # two people side by side, not pieces of one.
                left, right = min(b.x, o.x), max(b.x + b.w, o.x + o.w)
                wide = right - left > 1.3 * _ASPECT * eh
                if wide and right - left > max(b.w, o.w) + _MASK_PAD_PX:
                    continue
                rest.remove(o)
                b = Blob(left, top, right - left, b.y + b.h - top, b.area + o.area,
                         ((left + right) / 2 / self.width, b.foot[1]))  # fmt: skip
            out.append(b)
        return out

    def _split(self, b: Blob, mask: MatLike, eh: float) -> list[Blob]:
        """A blob of people side by side, cut where the outline of its top dips between two
        heads near each expected boundary between two people (a car's roof does not dip)."""
        ew = _ASPECT * eh
        parts = min(_MAX_PARTS, round(b.w / ew))
        box = np.asarray(mask[b.y : b.y + b.h, b.x : b.x + b.w]) > 0
        # The box may hold the edge of a neighbour's blob (the feet of someone standing just
        # above it): it would give a low part, a shadow on the ground, a head's reach there.
        # The blob's own pixels are the biggest piece in its box. (A blob joined from pieces of
        # one person keeps only its biggest piece here: only the top outline is read.)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(box.view(np.uint8), connectivity=8)
        if n > 2:
            box = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        filled = box.any(axis=0)
        # How high the outline reaches in each column (0 where the column is empty).
        reach = np.where(filled, b.h - box.argmax(axis=0), 0).astype(np.float64)
        prof = np.convolve(reach, np.ones(3) / 3, mode="same")
        dip = max(2.0, _DIP * eh)
        top = float(prof.max())
        cuts = [0]
        for k in range(1, parts):
            centre, span = k * b.w / parts, max(1, int(0.35 * ew))
            lo, hi = max(cuts[-1] + 2, int(centre) - span), min(b.w - 2, int(centre) + span)
            if hi <= lo:
                continue
            c = lo + int(np.argmin(prof[lo:hi]))
            left, right = prof[cuts[-1] : c].max(initial=0), prof[c:].max(initial=0)
            # Both sides reach up to a head's height (an arm held out does not).
            if prof[c] <= min(left, right) - dip and min(left, right) >= top - dip:
                cuts.append(c)
        if len(cuts) == 1:
            return [b]
        cuts.append(b.w)
        out = []
        for c0, c1 in itertools.pairwise(cuts):
            rows = np.flatnonzero(box[:, c0:c1].any(axis=1))
            if rows.size == 0:
                continue
            x, y, w, h = b.x + c0, b.y + int(rows[0]), c1 - c0, int(rows[-1] - rows[0] + 1)
            area = int(box[:, c0:c1].sum())
            out.append(Blob(x, y, w, h, area, ((x + w / 2) / self.width, (y + h) / self.height)))
        return out

    # ---- tracks ----

    def observe(self, tracks: list[Track], t: float) -> None:
        """Update every track seen this frame: its vote, stillness, kind; calibration samples."""
        drift = self._drift(tracks)
        for tr in tracks:
            if not tr.seen:
                continue  # coasting or lost: no shape of its own this frame
            b = tr.blob
            eh, area = self.person_px(b.foot[1])
            speed = math.hypot(tr.vx * self.width, tr.vy * self.height) * self.fps / eh
            vote = self._vote(b.h / eh, b.w / b.h, b.area / area, b.area / (b.w * b.h), speed)
            vote = self._fading(tr, vote, 0.15 * eh)
            drifting = self._drifting(tr, drift)
            tr.drifted = tr.drifted or drifting
            if drifting:
                # Drifting with the snow: flakes, not a walker. A person's track that left with
                # a flake (the person gone, the track passed on to a flake near by) has shown
                # nothing a person's size for all its recent looks: it is a flake's now.
                if vote is ObjectKind.PERSON and tr.kind is not ObjectKind.PERSON:
                    vote = ObjectKind.UNKNOWN
                elif (tr.kind is ObjectKind.PERSON and len(tr.votes) == tr.votes.maxlen
                      and ObjectKind.PERSON not in tr.votes and vote is not ObjectKind.PERSON):  # fmt: skip
                    tr.kind, tr.checked = ObjectKind.UNKNOWN, None
            tr.votes.append(vote)
            if vote is ObjectKind.PERSON:
                tr.person_area = float(b.area)
            self._still(tr, t, vote, 0.15 * eh)
            tr.kind = self._decide(tr, t)
            in_view = b.y > 1 and b.y + b.h < self.height - 1
            teach = vote is ObjectKind.PERSON
            if teach and in_view and b.x > 1 and b.x + b.w < self.width - 1:
                tr.sizes.append((b.foot[1], b.h, b.area, b.w))  # judged by the scale when counted
            if (teach and tr.hits >= 5 and 0.2 <= b.w / b.h <= _UPRIGHT
                    and speed > 0.1 and t - tr.sampled_at >= _SAMPLE_EVERY_S and in_view
                    and not drifting and self.headcount(tr) == 1):  # fmt: skip
                tr.sampled_at = t
                self.scale.observe(b.foot[1], b.h / self.height, tr.id)
        for tr in tracks:
            if (
                tr.kind is ObjectKind.OBJECT
                and tr.left_at is None
                and not self._attended(tr, tracks)
            ):
                tr.left_at = t

    def _drifting(self, tr: Track, drift: tuple[float, float] | None) -> bool:
        """Whether the track moves with the snowfall: its own velocity (after a few frames),
        not standing, and as the flakes' within foot noise (less than half their speed, so
        that in light snow someone standing is not taken to drift)."""
        if drift is None or tr.hits < _FIELD_HITS:
            return False
        per_frame = 1.0 / self.fps
        if math.hypot(tr.vx, tr.vy) < _FIELD_MIN_SPEED * per_frame:
            return False
        near = min(_FIELD_NEAR * per_frame, 0.5 * math.hypot(*drift))
        return math.hypot(tr.vx - drift[0], tr.vy - drift[1]) < near

    def _drift(self, tracks: list[Track]) -> tuple[float, float] | None:
        """The velocity that many tracks of blobs too small for anyone share (falling snow),
        or None when there is no such field."""
        # Small by the configured height, not the learned line: flakes that taught the line
        # would be no longer small by it.
        flake_px = self.min_area * PERSON_FILL * (self.scale.prior * self.height) ** 2
        small = [(tr.vx, tr.vy) for tr in tracks
                 if tr.seen and tr.hits >= _FIELD_HITS and tr.blob.area < flake_px]  # fmt: skip
        if len(small) < _FIELD_TRACKS:
            return None
        v = np.array(small)
        med = np.median(v, axis=0)
        per_frame = 1.0 / self.fps
        alike = np.hypot(v[:, 0] - med[0], v[:, 1] - med[1]) < _FIELD_NEAR * per_frame
        if alike.sum() * 2 < len(small) or math.hypot(*med) < _FIELD_MIN_SPEED * per_frame:
            return None  # small blobs going every way (leaves, noise) or standing: no snowfall
        return float(med[0]), float(med[1])

    def headcount(self, tr: Track) -> int:
        """How many people a person's track stands for. People walking abreast across the view
        are one behind the other in depth: one blob from start to end, taller than one person
        at its foot row (the far one's head is higher) and bigger (their legs and arms fill the
        near one's gaps). Judged on the medians of its recent looks against the scale as it is
        now; one until there are enough of them and the scale is known."""
        if len(tr.sizes) < _SIZE_LOOKS or not self.scale.learned:
            return 1
        looks = np.array(tr.sizes)
        s = self.scale
        eh = np.maximum(_MIN_HEIGHT + s.pad, s.level + s.slope * looks[:, 0]) * self.height
        height = float(np.median(looks[:, 1] / eh))
        area = float(np.median(looks[:, 2] / (PERSON_FILL * eh * eh)))
        if float(np.median(looks[:, 3] / eh)) > _STACKED_WIDTH:
            return 1  # wider: merged with something else (a shadow's edge), not stacked people
        depth = height * math.sqrt(max(0.0, area))
        return 1 + sum(depth >= limit for limit in _STACKED)

    def _attended(self, obj: Track, tracks: list[Track]) -> bool:
        """Whether anything but objects is within a person's height of the object: its owner
        standing by it, or the rest of a still person the motion mask broke in two."""
        reach = self.person_px(obj.y)[0]
        return any(
            tr is not obj and tr.kind is not ObjectKind.OBJECT and tr.missed == 0
            and math.hypot((tr.x - obj.x) * self.width, (tr.y - obj.y) * self.height) <= reach
            for tr in tracks
        )  # fmt: skip

    def _vote(
        self, ratio: float, aspect: float, area: float, fill: float, speed: float
    ) -> ObjectKind:
        """What one look at a blob suggests: height and area over a person's at its row, width
        over height, how much of its box it fills, speed in person heights a second."""
        if area < self.min_area:
            return ObjectKind.UNKNOWN  # too small to be anyone (it may be a bag)
        if area >= 2.5 and aspect >= 1.1 and ratio <= 1.6 and fill >= _SOLID:
            return ObjectKind.VEHICLE  # big, wide and solid (people in a row have a bumpy top)
        if not self.scale.learned:  # sizes are not to be trusted yet: mostly shape
            # Narrow, or a walker with their shadow beside them in low sun: wide but tall against
            # the configured height, and neither big nor solid (a dog with its shadow is much
            # lower; a car seen from the front is bigger and fills more of its box).
            walker_and_shadow = (
                area < 2.2
                and fill < _SOLID
                and ((aspect < 1.05 and ratio >= 0.75) or (aspect < 1.5 and ratio >= 0.9))
            )
            if aspect <= 0.8 or walker_and_shadow:
                return ObjectKind.PERSON
            return ObjectKind.ANIMAL if aspect >= 1.05 and ratio < 0.75 else ObjectKind.UNKNOWN
        if speed > _MAX_WALK:
            return ObjectKind.ANIMAL
        if ratio >= 0.75 or (ratio >= 0.62 and aspect <= 1.2) or (ratio >= 0.45 and aspect <= 0.7):
            return ObjectKind.PERSON  # tall enough at its row (wide: people side by side)
        return ObjectKind.ANIMAL

    def _fading(self, tr: Track, vote: ObjectKind, radius: float) -> ObjectKind:
        """A look at a track standing where it stood last frame, its blob much smaller than
        when it last moved, says little about what it is: the background model takes in what
        stands still, and what is left of its blob (a dog's narrow remnant) has any shape. Such
        a look does not speak against the kind its moving looks decided (a person who stops
        stays a person, a dog that stops stays a dog)."""
        foot, anchor = tr.blob.foot, tr.anchor
        standing = anchor is not None and math.hypot(
            (foot[0] - anchor[0]) * self.width, (foot[1] - anchor[1]) * self.height
        ) <= max(2.0, radius)
        if not standing:
            tr.moving_area = float(tr.blob.area)
            return vote
        decided = tr.kind in (ObjectKind.PERSON, ObjectKind.ANIMAL, ObjectKind.VEHICLE)
        if decided and vote is not tr.kind and tr.blob.area < _FADED * tr.moving_area:
            return ObjectKind.UNKNOWN
        return vote

    def _still(self, tr: Track, t: float, vote: ObjectKind, radius: float) -> None:
        """Where the track stands still since when; whether it ever moved."""
        foot = tr.blob.foot
        if tr.anchor is not None:
            dx = (foot[0] - tr.anchor[0]) * self.width
            dy = (foot[1] - tr.anchor[1]) * self.height
            if math.hypot(dx, dy) <= max(2.0, radius):
                return
            if tr.kind is ObjectKind.OBJECT and vote is not ObjectKind.VEHICLE:
                return  # someone stepping over it moves the merged blob, not the object
            # Off where it was first seen, from its second look on (a track born on one blob
            # that takes a camouflaged person's head a person's width away, there to stand).
            if tr.hits > 1:
                tr.roamed = True  # it moved by itself: not something put down
        tr.anchor, tr.still_since = foot, t

    def _decide(self, tr: Track, t: float) -> ObjectKind:
        votes = Counter(v for v in tr.votes if v is not ObjectKind.UNKNOWN)
        judged = sum(votes.values())
        still = tr.still_since is not None and t - tr.still_since >= _OBJECT_AFTER_S
        # A person who put something down and walked on may leave their track on it: what
        # stays is still, much smaller, and no longer looks like anyone.
        shed = (tr.person_area > 0 and tr.blob.area < _SHED * tr.person_area
                and len(tr.votes) == tr.votes.maxlen and not votes[ObjectKind.PERSON])  # fmt: skip
        big = tr.blob.area >= self._object_px  # not a remnant speck of the mask
        if tr.kind is ObjectKind.OBJECT or (still and big and (shed or (
            not tr.roamed and tr.kind is not ObjectKind.PERSON
            and votes[ObjectKind.PERSON] * 2 < max(judged, 1)
        ))):  # fmt: skip
            return ObjectKind.OBJECT
        if judged:
            kind, n = votes.most_common(1)[0]
            if n >= _VOTES and n * 2 > judged:
                return kind
        return tr.kind

    # ---- the person check, at an alert's start ----

    def check(self, frame: MatLike, tr: Track) -> bool:
        """Whether OpenCV's people detectors see a person around the track's blob in `frame`
        (the full-size picture). A person seen is kept; a track refused is looked at again a
        second later, `_CHECKS` looks in all."""
        if tr.checked or (tr.checked is False and (
            tr.checks >= _CHECKS or tr.hits - tr.checked_hits < self._recheck_hits
        )):  # fmt: skip
            return bool(tr.checked)
        fh, fw = frame.shape[:2]
        sx, sy = fw / self.width, fh / self.height
        b = tr.blob
        mx, my = 0.5 * b.w * sx, 0.25 * b.h * sy
        x0, y0 = max(0, int(b.x * sx - mx)), max(0, int(b.y * sy - my))
        x1, y1 = min(fw, int((b.x + b.w) * sx + mx)), min(fh, int((b.y + b.h) * sy + my))
        crop = frame[y0:y1, x0:x1]
        found = False
        if crop.size:
            # The detector's window is 64x128 for a person about 96 pixels tall.
            k = max(96 / max(1.0, b.h * sy), 128 / crop.shape[0], 64 / crop.shape[1])
            crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
            rects, _ = self._hog.detectMultiScale(crop, winStride=(8, 8), padding=(8, 8), scale=1.1)
            found = len(rects) > 0
            if not found and not self._upper.empty():
                grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
                found = len(self._upper.detectMultiScale(grey, 1.1, 3)) > 0
        tr.checked, tr.checks, tr.checked_hits = found, tr.checks + 1, tr.hits
        return found

    # ---- crowds ----

    def crowd(
        self, blobs: list[Blob], mask: MatLike, in_zone: list[bool], whole: list[bool]
    ) -> int:
        """People in the blobs of a zone, per ground area: each row's moving pixels over the area
        of a person whose body's middle is on that row. A blob tracked as a person (`whole`),
        or as large as a third of one (someone standing, fading into the background), is at
        least one; smaller blobs (a figure broken into pieces by shadow or by the mask's holes)
        add up their areas, so that the pieces of one person are one person, not one each."""
        if self._weights_version != self.scale.version:
            self._weights = self._row_weights()
            self._weights_version = self.scale.version
        total = 0
        pieces = 0.0
        m = np.asarray(mask)
        for b, inside, person in zip(blobs, in_zone, whole, strict=True):
            if not inside:
                continue
            rows = np.count_nonzero(m[b.y : b.y + b.h, b.x : b.x + b.w], axis=1)
            people = float(rows @ self._weights[b.y : b.y + b.h])
            if person or people >= _PIECE:
                total += max(1, math.floor(people + 0.3))
            else:
                pieces += people
        return total + math.floor(pieces + 0.3)

    def _row_weights(self) -> NDArray[np.float64]:
        rows = (np.arange(self.height) + 0.5) / self.height
        # The foot row y of a person whose middle is on row r: y - height(y) / 2 = r.
        s = self.scale
        feet = (rows + s.level / 2) / (1 - s.slope / 2)
        heights = np.maximum(_MIN_HEIGHT + s.pad, s.level + s.slope * feet) * self.height
        weights: NDArray[np.float64] = 1.0 / (PERSON_FILL * heights * heights)
        return weights

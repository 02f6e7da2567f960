"""One camera's analytics: frames in, camera alerts and line counts out.

Each frame is resized, privacy-masked (before anything looks at it), analysed for motion at a
lower resolution, tracked, told apart (people, animals, vehicles, objects left behind), and
tested against the camera's zones; the view itself is checked for tampering. Only people make
intrusions, loitering, crowds and counts. Conditions become alerts through `Lifecycle`s, and each
alert's start carries a snapshot: the masked frame with the zone and the objects drawn, as a
small JPEG.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from edge.vision.alerts import Lifecycle
from edge.vision.config import CameraSettings, Zone, ZonePurpose
from edge.vision.motion import Blob, MotionDetector
from edge.vision.people import People, PersonScale
from edge.vision.tamper import TamperDetector
from edge.vision.tracking import ObjectKind, Track, Tracker
from gateway.messages import SNAPSHOT_MAX_BYTES, AlertPhase, CameraAlertKind

Frame = MatLike

_SNAPSHOT_MIN_WIDTH = 80
_BUSY = 0.2  # more than this share of the frame moving: too busy to learn the view from
_LINE_BAND = 0.01  # feet closer to a counting line than this share of the frame are on it
_CLEAR = 0.4  # …and so are feet closer than this many person heights at their row (a width)
# A shadow cast on the ground dims it evenly: frame over background below this, spread less.
_SHADOW_DIM = 0.85
_SHADOW_SPREAD = 0.13
# …and less than this share of the ground's own spread under it: a shadow's ratio is even
# but for noise; a figure of one colour over textured ground varies as the ground does
_SHADOW_EVEN = 0.5
_TALL = 0.35  # a crossing blob this share of a person's height at its row may be someone
_MIN_BLOB_PX = 12  # at 320x180: the smallest far person's blob (people filters by row)
_UNJUDGED = 500  # tracks counted before the perspective is known, judged again once it is
_RECOUNT_EVERY = 5  # frames between second looks at how many people a counted track holds
_UNDECIDED_HITS = 5  # a track still undecided after this many frames is shown to the detector
_NOT_PEOPLE = (ObjectKind.ANIMAL, ObjectKind.VEHICLE, ObjectKind.OBJECT)
_ZONE_COLOUR = {
    ZonePurpose.RESTRICTED: (40, 40, 230),
    ZonePurpose.LOITERING: (0, 200, 255),
    ZonePurpose.CROWD: (255, 160, 0),
    ZonePurpose.COUNTING_LINE: (0, 220, 0),
}
_ALERT_KIND = {
    ZonePurpose.RESTRICTED: CameraAlertKind.INTRUSION,
    ZonePurpose.LOITERING: CameraAlertKind.LOITERING,
    ZonePurpose.CROWD: CameraAlertKind.CROWD,
}
_TAMPER_KINDS = (
    CameraAlertKind.TAMPER_COVERED,
    CameraAlertKind.TAMPER_BLURRED,
    CameraAlertKind.TAMPER_MOVED,
)


@dataclass(frozen=True, slots=True)
class AlertOut:
    """A phase of an alert to publish."""

    alert_id: uuid.UUID
    phase: AlertPhase
    kind: CameraAlertKind
    zone: str | None
    score: float
    objects: int | None
    when: datetime
    snapshot: tuple[bytes, tuple[int, int]] | None = None  # with the start: a JPEG, its size


@dataclass(frozen=True, slots=True)
class CountOut:
    """A counting line's reading: people inside by the line's tally, and the flow since the last."""

    zone: str
    count: int
    entered: int
    exited: int
    when: datetime


Output = AlertOut | CountOut


@dataclass(slots=True)
class _Line:
    zone: Zone
    band: float = 0.0  # how far from the line a foot is still on it (in side units)
    inside: int = 0
    entered: int = 0
    exited: int = 0
    reported_at: float | None = None


def _looks_like_a_person(tr: Track) -> bool:
    """An object's track whose recent looks are mostly a person's: someone standing in a crowd
    whose fading blob was taken for something put down, or a person by a bag."""
    return tr.kind is ObjectKind.OBJECT and 2 * tr.votes.count(ObjectKind.PERSON) > len(tr.votes)


def _side(a: tuple[float, float], b: tuple[float, float], p: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _crosses(a: tuple[float, float], b: tuple[float, float],
             p: tuple[float, float], q: tuple[float, float]) -> bool:  # fmt: skip
    return _side(a, b, p) * _side(a, b, q) < 0 and _side(p, q, a) * _side(p, q, b) < 0


class CameraAnalytics:
    def __init__(self, settings: CameraSettings) -> None:
        self.settings = settings
        w, h = settings.width, settings.height
        self.tz = ZoneInfo(settings.timezone)
        aw = settings.tuning.analysis_width
        self.small_size = (aw, max(1, round(aw * h / w)))
        self._busy_px = _BUSY * self.small_size[0] * self.small_size[1]
        floor = _MIN_BLOB_PX * self.small_size[0] * self.small_size[1] / (320 * 180)
        self.motion = MotionDetector(
            *self.small_size, min_area_px=floor,
            fps=settings.fps, background_s=settings.tuning.background_s,
            colour=settings.tuning.colour_motion,
        )  # fmt: skip
        scale = PersonScale(settings.tuning.person_height,
                            settings.calibration.person_heights, self.small_size[1])  # fmt: skip
        self.people = People(scale, *self.small_size, settings.fps, settings.tuning.min_area)
        # At 5 fps a brisk walker moves about a tenth of the frame's width per frame.
        self.tracker = Tracker(max_step=0.6 / settings.fps, max_missed=max(2, int(settings.fps)),
                               width=self.small_size[0], height=self.small_size[1])  # fmt: skip
        self.tamper = TamperDetector(settings.tuning)
        self._hold_missed = max(1, self.tracker.max_missed // 2)  # frames a lost person stays
        self._rebases = 0
        self._privacy: Frame | None = None
        if settings.privacy_masks:
            keep = np.full((h, w), 255, np.uint8)
            for poly in settings.privacy_masks:
                cv2.fillPoly(keep, [self._px(poly, (w, h))], 0)
            self._privacy = cv2.merge([keep, keep, keep])
        self._polys = {z.name: np.array(z.points, np.float32) for z in settings.zones}
        self._alerts: dict[tuple[CameraAlertKind, str | None], Lifecycle] = {}
        self._crossed: list[Track] = []  # tracks with crossings not yet counted
        # Tracks counted before the perspective was known (as one each), to judge again once
        # it is: people abreast walked by then as one blob, as they do later.
        self._unjudged: deque[Track] | None = deque(maxlen=_UNJUDGED)
        self._lines = {z.name: _Line(z, _LINE_BAND * math.dist(*z.points)) for z in settings.zones
                       if z.purpose is ZonePurpose.COUNTING_LINE}  # fmt: skip

    # ---- geometry ----

    @staticmethod
    def _px(points: list[tuple[float, float]], size: tuple[int, int]) -> NDArray[np.int32]:
        return np.array([(round(x * (size[0] - 1)), round(y * (size[1] - 1))) for x, y in points],
                        np.int32)  # fmt: skip

    def _inside(self, zone: Zone, track: Track) -> bool:
        x, y = track.foot
        return cv2.pointPolygonTest(self._polys[zone.name], (x, y), False) >= 0

    # ---- the frame ----

    def prepare(self, frame: Frame) -> Frame:
        """The frame at the configured size with the privacy masks blanked."""
        size = (self.settings.width, self.settings.height)
        if (frame.shape[1], frame.shape[0]) != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if self._privacy is not None:
            frame = cv2.bitwise_and(frame, self._privacy)
        return frame

    def process(self, frame: Frame, when: datetime) -> list[Output]:
        """Analyse one frame taken at `when` (aware); what to publish."""
        t = when.timestamp()
        frame = self.prepare(frame)
        small = cv2.resize(frame, self.small_size, interpolation=cv2.INTER_AREA)
        blobs = self.people.prepare(self.motion.apply(small), self.motion.mask)
        tracks = self.tracker.update(blobs)
        self.people.observe(self.tracker.tracks, t)
        # The view is a fair reference unless much of it is moving (some motion always is).
        busy = self.motion.global_change or cv2.countNonZero(self.motion.mask) > self._busy_px
        view = self.tamper.check(small, t, busy=busy, grey=self.motion.grey)  # the small grey copy
        self.small = small
        if self.tamper.rebases != self._rebases:  # moved for good: another view, other rows
            self._rebases = self.tamper.rebases
            self.people.scale.forget()
        tampered = view.covered or view.blurred or view.moved
        out: list[Output] = []
        tamper_scores = (
            1.0 - min(1.0, view.contrast / (2 * self.settings.tuning.covered_contrast)),
            1.0 - min(1.0, view.sharpness),
            min(1.0, max(view.shift / (2 * self.settings.tuning.moved_shift), 1.0 - view.match)),
        )
        for kind, holds, score in zip(_TAMPER_KINDS, (view.covered, view.blurred, view.moved),
                                      tamper_scores, strict=True):  # fmt: skip
            out += self._alert(kind, None, holds, t, when, max(0.5, score), None, frame, [])
        local = when.astimezone(self.tz)
        for zone in self.settings.zones:
            if zone.purpose is ZonePurpose.COUNTING_LINE:
                continue
            watched = zone.watched(local) and not tampered
            inside = self._present(zone, tracks) if watched else []
            people = self._people(inside, frame, zone.purpose is not ZonePurpose.CROWD)
            holds, score, objects = self._condition(zone, people, inside, tracks, blobs, t)
            out += self._alert(_ALERT_KIND[zone.purpose], zone.name, holds and watched, t, when,
                               score, objects, frame, people, zone)  # fmt: skip
            if zone.left_s is not None:
                left = [tr for tr in inside if tr.kind is ObjectKind.OBJECT
                        and tr.left_at is not None and t - tr.left_at >= zone.left_s]  # fmt: skip
                stayed = max((t - (tr.left_at or t) for tr in left), default=0.0)
                score = min(1.0, 0.6 + 0.4 * stayed / (4 * zone.left_s))
                out += self._alert(CameraAlertKind.OBJECT_LEFT, zone.name, bool(left), t, when,
                                   score, len(left), frame, left, zone)  # fmt: skip
        if not tampered:
            self._count(tracks)
        out += self._report_counts(t, when)
        return out

    def _present(self, zone: Zone, tracks: list[Track]) -> list[Track]:
        """The tracks in a zone: those seen (or hidden behind another) with their foot in it,
        and a person lost for a moment while inside, which is not gone: in rain, snow or dim
        light a faint figure's mask breaks up and misses a frame now and then, and without this
        its intrusion would never hold long enough to start (nor its loitering time add up).
        (Not held: one hidden in another blob before it was lost, since what it hid in may
        have been a glare, not a person in front of it; nor one last seen far smaller than a
        person at its row, a person's track passed on to a snowflake, say.)"""
        inside = [tr for tr in tracks if self._inside(zone, tr)]
        held = [tr for tr in self.tracker.tracks
                if 0 < tr.missed <= self._hold_missed and not tr.occluded
                and tr.kind is ObjectKind.PERSON and zone.name in tr.zone_since
                and tr.blob.h >= _TALL * self.people.person_px(tr.blob.foot[1])[0]]  # fmt: skip
        return inside + held

    def _people(self, inside: list[Track], frame: Frame, check: bool) -> list[Track]:
        """The tracks in a zone that are people: judged so, or, for an undecided track that
        would start an alert, seen as one by the person check (one look a frame)."""
        people = [tr for tr in inside if tr.kind is ObjectKind.PERSON]
        if people or not check:
            return people
        for tr in inside:
            if tr.kind is ObjectKind.UNKNOWN and tr.hits >= _UNDECIDED_HITS and tr.seen:
                looks = tr.checks
                if self.people.check(frame, tr):
                    tr.kind = ObjectKind.PERSON
                    return [tr]
                if tr.checks != looks:
                    break  # one look a frame at most
        return []

    def _condition(
        self, zone: Zone, people: list[Track], inside: list[Track], tracks: list[Track],
        blobs: list[Blob], t: float,
    ) -> tuple[bool, float, int]:  # fmt: skip
        for tr in tracks:  # entry times, kept while the object stays in the zone
            if tr in inside:
                tr.zone_since.setdefault(zone.name, t)
            else:
                tr.zone_since.pop(zone.name, None)
        match zone.purpose:
            case ZonePurpose.RESTRICTED:
                best = max((tr.hits for tr in people), default=0)
                return bool(people), min(1.0, 0.6 + 0.04 * best), len(people)
            case ZonePurpose.LOITERING:
                dwell = max((t - tr.zone_since[zone.name] for tr in people), default=0.0)
                lasting = [tr for tr in people if t - tr.zone_since[zone.name] >= zone.loiter_s]
                return bool(lasting), min(1.0, 0.5 + dwell / (4 * zone.loiter_s)), len(lasting)
            case _:
                count = self._crowd_estimate(zone, people, blobs)
                return (count > zone.crowd_limit, min(1.0, 0.5 * count / zone.crowd_limit),
                        count)  # fmt: skip

    def _crowd_estimate(self, zone: Zone, people: list[Track], blobs: list[Blob]) -> int:
        """People in a crowd zone: tracked ones, or, when people merge into one blob, the
        moving area of the blobs standing in the zone over a person's area at each row (what
        animals, vehicles and objects left make is left out)."""
        poly = self._polys[zone.name]
        # Without a perspective a far group looks low and wide like an animal: count it.
        skip = _NOT_PEOPLE if self.people.scale.learned else _NOT_PEOPLE[1:]
        others: set[int] = set()
        persons: set[int] = set()
        for tr in self.tracker.tracks:
            if not tr.seen:
                continue
            if tr.kind is ObjectKind.PERSON or _looks_like_a_person(tr):
                persons.add(id(tr.blob))
            elif tr.kind in skip and not self._holds_people(tr):
                others.add(id(tr.blob))
        in_zone = [id(b) not in others and cv2.pointPolygonTest(poly, b.foot, False) >= 0
                   for b in blobs]  # fmt: skip
        mask = self.motion.without_cast_shadows(blobs, in_zone)
        whole = [id(b) in persons for b in blobs]
        return max(len(people), self.people.crowd(blobs, mask, in_zone, whole))

    def _holds_people(self, tr: Track) -> bool:
        """A still "object" larger than a person at its row: people standing together, whose
        blobs merged into one that no longer moves (something put down is smaller)."""
        return tr.kind is ObjectKind.OBJECT and tr.blob.area > self.people.person_px(tr.y)[1]

    def _alert(
        self, kind: CameraAlertKind, zone_name: str | None, holds: bool, t: float,
        when: datetime, score: float, objects: int | None, frame: Frame, inside: list[Track],
        zone: Zone | None = None,
    ) -> list[Output]:  # fmt: skip
        life = self._alerts.get((kind, zone_name))
        if life is None:
            life = self._alerts[(kind, zone_name)] = Lifecycle(self.settings.alerts)
        phase = life.update(holds, t)
        if phase is None:
            return []
        snapshot = None
        if phase.phase is AlertPhase.START:
            snapshot = self.snapshot(frame, zone, [tr.blob for tr in inside])
        return [AlertOut(phase.alert_id, phase.phase, kind, zone_name, round(score, 3), objects,
                         when, snapshot)]  # fmt: skip

    # ---- counting lines ----

    def _count(self, tracks: list[Track]) -> None:
        """A track crosses a line when its foot changes side, between where it was last seen
        on one side and where it is now, within the line's ends; and it may cross again only
        once it was clearly on its new side (a person's width from the line at its row). A
        foot point jitters by a few pixels (gait, a shadow's edge, the mask breaking up a
        figure) and would otherwise cross a line it is on over and over; a track born on the
        line (a fragment) counts only once it is clearly across."""
        sw, sh = self.small_size
        for line in self._lines.values():
            a, b = line.zone.points
            name = line.zone.name
            length_px = max(1e-9, math.hypot((b[0] - a[0]) * sw, (b[1] - a[1]) * sh))
            for tr in tracks:
                if not tr.seen:
                    continue  # coasting: where it is only predicted to be, it crosses nothing
                side = _side(a, b, tr.foot)
                if abs(side) < line.band:
                    continue  # on the line: wait until it is across
                # |side| is the distance from the line times the line's length.
                clear = abs(side) * sw * sh / length_px >= _CLEAR * self.people.person_px(tr.y)[0]
                before = tr.line_side.get(name)
                if before is None or before[0] * side > 0:  # on the side it was counted on
                    armed = clear or (before is not None and before[2])
                    tr.line_side[name] = (side, tr.foot, armed)
                    continue
                if not (before[2] or clear):
                    continue  # back over the line it was just counted across, not clearly
                tr.line_side[name] = (side, tr.foot, clear)
                if not _crosses(a, b, before[1], tr.foot) or self._shadow(tr, tracks):
                    continue
                tr.crossings.append((name, 1 if side < 0 else -1))
                eh = self.people.person_px(tr.blob.foot[1])[0]
                tr.crossed_tall = tr.blob.h >= _TALL * eh
        # Crossings count once the track is judged a person (it may cross before that, or
        # look like an animal for a moment when the mask breaks it up), once for each person
        # its blob holds (people abreast seen one behind the other). When the track later
        # shows more people than it was counted for (more looks, the scale learned), the
        # rest are counted then.
        for tr in tracks:
            if tr.kind is not ObjectKind.PERSON:
                continue  # (a track never judged a person never counts)
            if not tr.crossings and not (tr.tallied and tr.hits % _RECOUNT_EVERY == 0):
                continue
            self._recount(tr)
            unjudged = self._unjudged
            if (
                unjudged is not None
                and not self.people.scale.learned
                and all(tr is not seen for seen in unjudged)
            ):
                unjudged.append(tr)
        if self._unjudged is not None and self.people.scale.learned:
            for tr in self._unjudged:  # once, when the perspective is first known
                self._recount(tr)
            self._unjudged = None
        # A track that ends undecided, that crossed at a person's height and never looked like
        # an animal, a vehicle or an object, nor drifted with the snow, nor was refused by the
        # person check: before the perspective is learned, people walking with their shadow
        # beside them, or two abreast, look too wide to be judged.
        for tr in self._crossed:
            undecided = (tr.kind is ObjectKind.UNKNOWN and tr.crossed_tall and not tr.drifted
                         and tr.checked is not False)  # fmt: skip
            if tr.missed > self.tracker.max_missed and undecided:
                for name, way in tr.crossings:
                    self._tally(name, way, 1)
                tr.crossings.clear()
        alive = [tr for tr in self._crossed if tr.missed <= self.tracker.max_missed]
        known = {id(tr) for tr in alive}
        self._crossed = alive + [tr for tr in tracks if tr.crossings and id(tr) not in known]

    def _recount(self, tr: Track) -> None:
        """Count a person's track's new crossings for as many people as it holds, and its
        earlier ones again for any more people it is now seen to hold."""
        n = max(tr.counted_as, self.people.headcount(tr))
        for name, way in tr.tallied:
            self._tally(name, way, n - tr.counted_as)
        for name, way in tr.crossings:
            self._tally(name, way, n)
        tr.counted_as = n
        tr.tallied += tr.crossings
        tr.crossings.clear()

    def _shadow(self, tr: Track, tracks: list[Track]) -> bool:
        """Whether the track's blob is the shadow someone casts on the ground beside them (low
        sun): it dims the ground evenly, touches the blob of a figure that does not, and so
        walks with that person over the line, a second time."""
        dim, spread, ground = self.motion.shade(tr.blob)
        # Far more even than the ground under it: the ground's own texture, dimmed. (A figure of
        # one colour over textured ground varies as much as the ground; over plain ground the
        # two cannot be told, and the crossing counts.)
        if dim > _SHADOW_DIM or spread > min(_SHADOW_SPREAD, _SHADOW_EVEN * ground):
            return False
        b = tr.blob
        for other in tracks:
            o = other.blob
            if other is tr or not other.seen or not (
                o.x - 2 <= b.x + b.w and b.x - 2 <= o.x + o.w
                and o.y - 2 <= b.y + b.h and b.y - 2 <= o.y + o.h
            ):  # fmt: skip
                continue
            if self.motion.shade(o)[1] > _SHADOW_SPREAD:
                return True
        return False

    def _tally(self, name: str, way: int, people: int) -> None:
        line = self._lines[name]
        if way > 0:
            line.entered += people
            line.inside += people
        else:
            line.exited += people
            line.inside = max(0, line.inside - people)

    def flush_counts(self, when: datetime) -> list[Output]:
        """Every counting line's reading now, whenever it last reported (at the end of a clip)."""
        return self._report_counts(when.timestamp(), when, every=True)

    def _report_counts(self, t: float, when: datetime, every: bool = False) -> list[Output]:
        out: list[Output] = []
        for line in self._lines.values():
            due = (
                line.reported_at is None or t - line.reported_at >= self.settings.occupancy_every_s
            )
            if not (due or every):
                continue
            out.append(CountOut(line.zone.name, line.inside, line.entered, line.exited, when))
            line.entered = line.exited = 0
            line.reported_at = t
        return out

    # ---- snapshots ----

    def snapshot(
        self, frame: Frame, zone: Zone | None, blobs: list[Blob]
    ) -> tuple[bytes, tuple[int, int]] | None:
        """The (masked) frame with the zone and the objects drawn, as a small JPEG (None in the
        unlikely case that no size fits the contract's limit)."""
        img = frame.copy()
        size = (img.shape[1], img.shape[0])
        if zone is not None:
            pts = self._px(zone.points, size)
            cv2.polylines(img, [pts], zone.purpose is not ZonePurpose.COUNTING_LINE,
                          _ZONE_COLOUR[zone.purpose], 2)  # fmt: skip
        sx, sy = size[0] / self.small_size[0], size[1] / self.small_size[1]
        for b in blobs:
            cv2.rectangle(img, (int(b.x * sx), int(b.y * sy)),
                          (int((b.x + b.w) * sx), int((b.y + b.h) * sy)), (0, 0, 255), 2)  # fmt: skip
        width, quality = self.settings.snapshot_width, self.settings.snapshot_quality
        while width >= _SNAPSHOT_MIN_WIDTH:  # smaller and coarser until it fits the contract
            small = cv2.resize(img, (width, max(1, round(width * size[1] / size[0]))),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(data) <= SNAPSHOT_MAX_BYTES:
                return data.tobytes(), (small.shape[1], small.shape[0])
            if quality > 30:
                quality -= 15
            else:
                width //= 2
        return None

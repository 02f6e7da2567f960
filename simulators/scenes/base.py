"""A scene and its ground truth: what a camera sees over time, and what happened in it.

Two kinds of scene share this class. A flat scene (no `camera`) is a textured background seen by
a noisy sensor under drifting light, with people-like figures (`Walker`) that walk, stop, gather,
cross lines and enter zones. A street scene (`camera` set) is a square seen from a pole in true
perspective with articulated figures (`Figure`: persons, animals, cars, bags) and conditions
(weather, night, IR, exposure, foliage, shake), drawn by `simulators.scenes.render`. Both can be
tampered with (a covered lens, a defocused lens, a camera knocked aside). Rendering is
deterministic from the seed, so a clip and its ground truth can be made again anywhere.

Positions are fractions of the frame (x to the right, y down); a figure's position is where its
feet touch the ground, which is what zones and counting lines are tested against. Only persons
make intrusion, loitering, crowd and counting truth; a bag left in a zone makes `object_left`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from simulators.scenes.conditions import Conditions
from simulators.scenes.figures import Figure
from simulators.scenes.geometry import PoleCamera, along
from simulators.scenes.render import StreetRenderer

Frame = MatLike
Point = tuple[float, float]
TamperKind = Literal["covered", "blurred", "moved"]

_PALETTE = [(40, 40, 160), (150, 60, 30), (30, 110, 40), (20, 20, 20), (170, 170, 60),
            (90, 30, 120), (60, 140, 200), (200, 200, 210)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Walker:
    """A person following straight legs between timed waypoints: (t_s, x, y). Before the first
    and after the last waypoint the person is not in view."""

    waypoints: tuple[tuple[float, float, float], ...]
    height: float = 0.2  # of the frame's height
    colour: tuple[int, int, int] | None = None

    def at(self, t: float) -> Point | None:
        return along(self.waypoints, t)

    @property
    def kind(self) -> str:
        return "person"


Mover = Walker | Figure


@dataclass(frozen=True, slots=True)
class Tamper:
    start_s: float
    end_s: float
    kind: TamperKind
    shift: Point = (0.12, 0.05)  # for "moved": how far the view slides, as frame fractions


@dataclass(frozen=True, slots=True)
class LightSwitch:
    at_s: float
    factor: float  # the light level from then on, 1.0 being the scene's normal level


@dataclass(frozen=True, slots=True)
class Shadow:
    """A cloud's or a passing vehicle's shadow: a soft dark patch sliding across the ground."""

    start_s: float
    end_s: float
    y: float
    size: float = 0.35
    darkness: float = 0.35


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone of the ground truth; mirrors the camera configuration the clip is meant for."""

    name: str
    purpose: Literal["restricted", "loitering", "crowd", "counting_line"]
    points: tuple[Point, ...]
    loiter_s: float = 20.0
    crowd_limit: int = 5


@dataclass
class Scene:
    """What a camera sees over time."""

    name: str
    duration_s: float
    seed: int = 1
    width: int = 640
    height: int = 360
    fps: float = 5.0
    noise: float = 4.0  # sensor noise, standard deviation in grey levels
    drift: float = 0.08  # slow light change: ± this share over `drift_period_s`
    drift_period_s: float = 600.0
    walkers: Sequence[Mover] = field(default_factory=list)
    tampers: list[Tamper] = field(default_factory=list)
    switches: list[LightSwitch] = field(default_factory=list)
    shadows: list[Shadow] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
    camera: PoleCamera | None = None  # set: a street scene in perspective
    conditions: Conditions = field(default_factory=Conditions)
    tags: list[str] = field(default_factory=list)  # what the clip is about, for per-tag figures
    left_s: float = 30.0  # a bag unattended this long in a zone is an object left behind
    crf: int = 34  # H.264 quality the clip is written at (higher: worse)
    _street: StreetRenderer | None = field(default=None, repr=False)
    _background: Frame | None = field(default=None, repr=False)
    _noise: list[NDArray[np.int16]] = field(default_factory=list, repr=False)

    # ---- rendering ----

    def background(self) -> Frame:
        """A textured, static scene: floor gradient, walls, fixtures, fine grain."""
        if self._background is None:
            rng = np.random.default_rng(self.seed)
            h, w = self.height, self.width
            y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
            base = 90 + 70 * y + 10 * np.sin(np.linspace(0, 7, w, dtype=np.float32))[None, :]
            img = np.repeat(base[:, :, None], 3, axis=2) * np.array([1.0, 0.97, 0.92], np.float32)
            for _ in range(40):  # fixtures, doors, signs: edges to focus on and to match
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, int(h * 0.7)))
                x1, y1 = x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(8, 80))
                colour = [float(c) for c in rng.integers(30, 230, 3)]
                cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
            for _ in range(25):
                cv2.line(img, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                         (int(rng.integers(0, w)), int(rng.integers(0, h))),
                         [float(c) for c in rng.integers(20, 240, 3)], 2)  # fmt: skip
            grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
            self._background = np.clip(img + grain, 0, 255).astype(np.uint8)
            nrng = np.random.default_rng(self.seed + 1)
            self._noise = [nrng.normal(0, self.noise, (h, w, 3)).astype(np.int16) for _ in range(8)]
        return self._background

    def light(self, t: float) -> float:
        switched = [s.factor for s in self.switches if t >= s.at_s]
        factor = switched[-1] if switched else 1.0  # the last switch flipped sets the level
        return factor * (1.0 + self.drift * math.sin(2 * math.pi * t / self.drift_period_s))

    def people_at(self, t: float, kind: str = "person") -> list[tuple[int, Point, Mover]]:
        """The figures of a class in view at t: (index, feet in the image, figure)."""
        out = []
        for i, walker in enumerate(self.walkers):
            p = walker.at(t) if walker.kind == kind else None
            if p is not None:
                out.append((i, p, walker))
        return out

    def frame(self, index: int) -> Frame:
        """Frame number `index` (at `fps`)."""
        t = index / self.fps
        if self.camera is not None:
            if self._street is None:
                self._street = StreetRenderer(self.camera, self.conditions, self.width,
                                              self.height, self.seed, self.noise)  # fmt: skip
            figures = [f for f in self.walkers if isinstance(f, Figure)]
            return self._street.frame(t, index, figures, self.tampers, self.light(t))
        img = self.background().copy()
        h, w = self.height, self.width
        for i, (x, y), walker in sorted(self.people_at(t), key=lambda p: p[1][1]):
            assert isinstance(walker, Walker)
            ph = walker.height * h
            colour = walker.colour or _PALETTE[(i + self.seed) % len(_PALETTE)]
            cx, cy = int(x * w), int(y * h)
            body = (max(3, int(ph * 0.18)), max(6, int(ph * 0.36)))
            cv2.ellipse(img, (cx, cy - body[1]), body, 0, 0, 360, colour, -1)
            cv2.circle(img, (cx, cy - 2 * body[1] - int(ph * 0.08)), max(3, int(ph * 0.1)),
                       (60, 80, 110), -1)  # fmt: skip
        for s in self.shadows:
            if s.start_s <= t <= s.end_s:
                a = (t - s.start_s) / (s.end_s - s.start_s)
                patch = np.zeros((h, w), np.float32)
                cv2.ellipse(patch, (int((-0.3 + 1.6 * a) * w), int(s.y * h)),
                            (int(s.size * w), int(s.size * h * 0.5)), 0, 0, 360, 1.0, -1)  # fmt: skip
                soft = np.asarray(cv2.GaussianBlur(patch, (0, 0), 25), np.float32)
                img = (img * (1 - s.darkness * soft[:, :, None])).astype(np.uint8)
        for tamper in self.tampers:
            if tamper.start_s <= t <= tamper.end_s:
                img = tampered(img, tamper)
        img = cv2.convertScaleAbs(img, alpha=self.light(t))
        noisy = np.asarray(img, np.int16) + self._noise[index % len(self._noise)]
        out: Frame = np.clip(noisy, 0, 255).astype(np.uint8)
        return out

    def frames(self) -> int:
        return int(self.duration_s * self.fps)

    # ---- ground truth ----

    def truth(self) -> dict[str, Any]:
        """What happened, per zone and per tampering, on the frame clock."""
        events: list[dict[str, Any]] = []
        counts: dict[str, dict[str, int]] = {}
        step = 1.0 / self.fps
        times = [i * step for i in range(self.frames())]
        for zone in self.zones:
            if zone.purpose == "counting_line":
                counts[zone.name] = self._crossings(zone)
                continue
            inside = [self._inside(zone, t) for t in times]
            if zone.purpose == "restricted":
                events += [{"kind": "intrusion", "zone": zone.name, "start_s": a, "end_s": b}
                           for a, b in intervals(times, [len(x) > 0 for x in inside])]  # fmt: skip
            elif zone.purpose == "loitering":
                events += self._loitering(zone, times, inside)
            else:
                events += [{"kind": "crowd", "zone": zone.name, "start_s": a, "end_s": b}
                           for a, b in intervals(times, [len(x) > zone.crowd_limit for x in inside])]  # fmt: skip
        for tamper in self.tampers:
            events.append({"kind": f"tamper_{tamper.kind}", "zone": None,
                           "start_s": tamper.start_s, "end_s": tamper.end_s})  # fmt: skip
        events += self._left_objects(times)
        return {"scene": self.name, "duration_s": self.duration_s, "fps": self.fps,
                "width": self.width, "height": self.height, "tags": list(self.tags),
                "events": events, "counts": counts,
                "figures": [{"index": i, "class": w.kind} for i, w in enumerate(self.walkers)],
                "nuisances": self._nuisances(times)}  # fmt: skip

    def _inside(self, zone: ZoneSpec, t: float, kind: str = "person") -> set[int]:
        poly = np.array(zone.points, np.float32)
        return {i for i, p, _ in self.people_at(t, kind)
                if cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), False) >= 0}  # fmt: skip

    def _left_objects(self, times: list[float]) -> list[dict[str, Any]]:
        """A bag in a zone is left behind from when it has stayed `left_s` until it is picked
        up (its path ends) or the clip ends."""
        out: list[dict[str, Any]] = []
        for fig in self.walkers:
            if fig.kind != "object" or not times:
                continue
            put, gone = fig.waypoints[0][0], fig.waypoints[-1][0]
            where = fig.at(put)
            assert where is not None
            start = next((t for t in times if t >= put + self.left_s), None)
            if start is None or start >= gone:
                continue
            end = max(t for t in times if t <= gone)  # its last frame in view
            for zone in self.zones:
                poly = np.array(zone.points, np.float32)
                if (
                    zone.purpose != "counting_line"
                    and cv2.pointPolygonTest(poly, where, False) >= 0
                ):
                    out.append({"kind": "object_left", "zone": zone.name,
                                "start_s": round(start, 3), "end_s": round(end, 3)})  # fmt: skip
        return out

    def _nuisances(self, times: list[float]) -> list[dict[str, Any]]:
        """When an animal or a vehicle is in a zone with no person there: an alert then is the
        analytics taking it for a person (person/animal confusion)."""
        out: list[dict[str, Any]] = []
        for zone in self.zones:
            if zone.purpose == "counting_line":
                continue
            for kind in ("animal", "vehicle"):
                if not any(w.kind == kind for w in self.walkers):
                    continue
                flags = [bool(self._inside(zone, t, kind)) and not self._inside(zone, t)
                         for t in times]  # fmt: skip
                out += [{"kind": kind, "zone": zone.name, "start_s": a, "end_s": b}
                        for a, b in intervals(times, flags)]  # fmt: skip
        return out

    def _loitering(
        self, zone: ZoneSpec, times: list[float], inside: list[set[int]]
    ) -> list[dict[str, Any]]:
        since: dict[int, float] = {}
        flags = []
        for t, ids in zip(times, inside, strict=True):
            since = {i: since.get(i, t) for i in ids}
            flags.append(any(t - s >= zone.loiter_s for s in since.values()))
        return [{"kind": "loitering", "zone": zone.name, "start_s": a, "end_s": b}
                for a, b in intervals(times, flags)]  # fmt: skip

    def _crossings(self, zone: ZoneSpec) -> dict[str, int]:
        """Crossings of the line (its first two points) by each walker's path: "in" is crossing
        towards the left of the line as drawn from its first point to its second."""
        a, b = zone.points[0], zone.points[1]
        out = {"in": 0, "out": 0}
        for walker in self.walkers:
            if walker.kind != "person":
                continue
            pts = [(x, y) for _, x, y in walker.waypoints]
            for p, q in itertools.pairwise(pts):
                end = _side(a, b, q)
                if _side(a, b, p) * end < 0 and _side(p, q, a) * _side(p, q, b) < 0:
                    out["in" if end < 0 else "out"] += 1
        return out


def _side(p: Point, q: Point, r: Point) -> float:
    """Which side of the line from p to q the point r is on (the sign), by the cross product."""
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def intervals(times: list[float], flags: list[bool]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, on in zip(times, flags, strict=True):
        if on and start is None:
            start = t
        elif not on and start is not None:
            out.append((round(start, 3), round(t, 3)))
            start = None
    if start is not None:
        out.append((round(start, 3), round(times[-1], 3)))
    return out


def tampered(img: Frame, tamper: Tamper) -> Frame:
    """The picture through a tampered lens."""
    h, w = img.shape[:2]
    if tamper.kind == "covered":  # a hand or a bag over the lens: dark, nearly uniform
        return np.full_like(img, 18)
    if tamper.kind == "blurred":  # defocused, or sprayed
        return cv2.GaussianBlur(img, (0, 0), 9)
    shift = np.array([[1, 0, -tamper.shift[0] * w], [0, 1, -tamper.shift[1] * h]], np.float32)
    return cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REFLECT)

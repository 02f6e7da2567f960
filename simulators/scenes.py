"""Synthetic camera scenes with known ground truth, for the edge's camera analytics.

A scene is a textured background seen by a noisy sensor under drifting light, with people-like
figures that walk, stop, gather, cross lines and enter zones, and with tampering (a covered lens,
a defocused lens, a camera knocked aside). Rendering is deterministic from the scene's seed, so a
clip and its ground truth can be made again anywhere. `write_clip` stores a video file with its
ground truth beside it (JSON); `simulators.stream` serves a scene as a live MJPEG stream.

Positions are fractions of the frame (x to the right, y down); a figure's position is where its
feet touch the ground, which is what zones and counting lines are tested against.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

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
        w = self.waypoints
        if t < w[0][0] or t > w[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(w):
            if t0 <= t <= t1:
                a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return (x0 + a * (x1 - x0), y0 + a * (y1 - y0))
        return (w[-1][1], w[-1][2])


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
    walkers: list[Walker] = field(default_factory=list)
    tampers: list[Tamper] = field(default_factory=list)
    switches: list[LightSwitch] = field(default_factory=list)
    shadows: list[Shadow] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
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

    def people_at(self, t: float) -> list[tuple[int, Point, Walker]]:
        out = []
        for i, walker in enumerate(self.walkers):
            p = walker.at(t)
            if p is not None:
                out.append((i, p, walker))
        return out

    def frame(self, index: int) -> Frame:
        """Frame number `index` (at `fps`)."""
        t = index / self.fps
        img = self.background().copy()
        h, w = self.height, self.width
        for i, (x, y), walker in sorted(self.people_at(t), key=lambda p: p[1][1]):
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
                img = _tampered(img, tamper)
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
                           for a, b in _intervals(times, [len(x) > 0 for x in inside])]  # fmt: skip
            elif zone.purpose == "loitering":
                events += self._loitering(zone, times, inside)
            else:
                events += [{"kind": "crowd", "zone": zone.name, "start_s": a, "end_s": b}
                           for a, b in _intervals(times, [len(x) > zone.crowd_limit for x in inside])]  # fmt: skip
        for tamper in self.tampers:
            events.append({"kind": f"tamper_{tamper.kind}", "zone": None,
                           "start_s": tamper.start_s, "end_s": tamper.end_s})  # fmt: skip
        return {"scene": self.name, "duration_s": self.duration_s, "fps": self.fps,
                "width": self.width, "height": self.height, "events": events, "counts": counts}  # fmt: skip

    def _inside(self, zone: ZoneSpec, t: float) -> set[int]:
        poly = np.array(zone.points, np.float32)
        return {i for i, p, _ in self.people_at(t)
                if cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), False) >= 0}  # fmt: skip

    def _loitering(
        self, zone: ZoneSpec, times: list[float], inside: list[set[int]]
    ) -> list[dict[str, Any]]:
        since: dict[int, float] = {}
        flags = []
        for t, ids in zip(times, inside, strict=True):
            since = {i: since.get(i, t) for i in ids}
            flags.append(any(t - s >= zone.loiter_s for s in since.values()))
        return [{"kind": "loitering", "zone": zone.name, "start_s": a, "end_s": b}
                for a, b in _intervals(times, flags)]  # fmt: skip

    def _crossings(self, zone: ZoneSpec) -> dict[str, int]:
        """Crossings of the line (its first two points) by each walker's path: "in" is crossing
        towards the left of the line as drawn from its first point to its second."""
        a, b = zone.points[0], zone.points[1]
        out = {"in": 0, "out": 0}
        for walker in self.walkers:
            pts = [(x, y) for _, x, y in walker.waypoints]
            for p, q in itertools.pairwise(pts):
                end = _side(a, b, q)
                if _side(a, b, p) * end < 0 and _side(p, q, a) * _side(p, q, b) < 0:
                    out["in" if end < 0 else "out"] += 1
        return out


def _side(p: Point, q: Point, r: Point) -> float:
    """Which side of the line from p to q the point r is on (the sign), by the cross product."""
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _intervals(times: list[float], flags: list[bool]) -> list[tuple[float, float]]:
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


def _tampered(img: Frame, tamper: Tamper) -> Frame:
    h, w = img.shape[:2]
    if tamper.kind == "covered":  # a hand or a bag over the lens: dark, nearly uniform
        return np.full_like(img, 18)
    if tamper.kind == "blurred":  # defocused, or sprayed
        return cv2.GaussianBlur(img, (0, 0), 9)
    shift = np.array([[1, 0, -tamper.shift[0] * w], [0, 1, -tamper.shift[1] * h]], np.float32)
    return cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REFLECT)


def write_clip(scene: Scene, folder: Path) -> tuple[Path, Path]:
    """The scene as a video file (Motion JPEG in AVI: every OpenCV build reads it) with its
    ground truth beside it; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    video, truth = folder / f"{scene.name}.avi", folder / f"{scene.name}.json"
    partial = folder / f"{scene.name}.partial.avi"  # renamed when complete: no half clips
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"MJPG"), scene.fps,
                             (scene.width, scene.height))  # fmt: skip
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {partial}")
    try:
        for i in range(scene.frames()):
            writer.write(scene.frame(i))
    finally:
        writer.release()
    truth.write_text(json.dumps(scene.truth(), indent=1))
    partial.replace(video)
    return video, truth


# ---- a catalogue of clips, for tests and `gridwatch bench vision` ----

RESTRICTED = ZoneSpec(
    "yard", "restricted", ((0.55, 0.55), (0.97, 0.55), (0.97, 0.97), (0.55, 0.97))
)
LOITER = ZoneSpec("bench", "loitering", ((0.05, 0.55), (0.42, 0.55), (0.42, 0.95), (0.05, 0.95)),
                  loiter_s=20.0)  # fmt: skip
CROWD = ZoneSpec(
    "hall", "crowd", ((0.2, 0.45), (0.8, 0.45), (0.8, 0.98), (0.2, 0.98)), crowd_limit=5
)
LINE = ZoneSpec("entrance", "counting_line", ((0.5, 0.35), (0.5, 1.0)))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _walk(rng: np.random.Generator, t0: float, a: Point, b: Point, speed: float = 0.12) -> Walker:
    """A straight walk from a to b starting at t0, at `speed` frame widths per second."""
    dist = math.dist(a, b)
    return Walker(((t0, *a), (t0 + dist / speed, *b)), height=float(rng.uniform(0.17, 0.23)))


def _passers(
    rng: np.random.Generator, n: int, duration: float, lane_y: tuple[float, float]
) -> list[Walker]:
    """People crossing the frame sideways in a band of heights (away from the zones)."""
    out = []
    for _ in range(n):
        y = float(rng.uniform(*lane_y))
        t0 = float(rng.uniform(0, duration - 12))
        a, b = (-0.05, y), (1.05, y + float(rng.uniform(-0.03, 0.03)))
        out.append(_walk(rng, t0, *((a, b) if rng.random() < 0.5 else (b, a))))
    return out


def intrusion_scene(seed: int, duration: float = 120.0) -> Scene:
    """People walking past the yard, and a few walking into it and out again."""
    rng = _rng(seed)
    walkers = _passers(rng, 4, duration, (0.3, 0.45))
    for k in range(int(rng.integers(1, 4))):
        t0 = 10 + k * duration / 3 + float(rng.uniform(0, 10))
        enter = (float(rng.uniform(0.6, 0.9)), 0.99)
        mid = (float(rng.uniform(0.65, 0.9)), float(rng.uniform(0.65, 0.85)))
        out = (0.3, float(rng.uniform(0.45, 0.5)))
        walkers.append(Walker(((t0, *enter), (t0 + 3, *mid), (t0 + 6, *mid), (t0 + 10, *out)),
                              height=0.2))  # fmt: skip
    return Scene(f"intrusion-{seed}", duration, seed=seed, walkers=walkers, zones=[RESTRICTED])


def loitering_scene(seed: int, duration: float = 150.0) -> Scene:
    """Passers-by cut through the bench area; one person sits there for a while."""
    rng = _rng(seed)
    walkers = _passers(rng, 3, duration, (0.3, 0.45))
    stay = float(rng.uniform(35, 60))
    t0 = float(rng.uniform(10, 30))
    spot = (float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.7, 0.85)))
    walkers.append(Walker(((t0, 0.6, 0.5), (t0 + 4, *spot), (t0 + 4 + stay, *spot), (t0 + 8 + stay, 0.6, 0.5)),
                          height=0.2))  # fmt: skip
    for _ in range(2):  # quick cuts through the zone: no loitering
        t1 = float(rng.uniform(5, duration - 20))
        walkers.append(
            _walk(
                rng, t1, (0.0, float(rng.uniform(0.65, 0.9))), (0.5, float(rng.uniform(0.6, 0.9)))
            )
        )
    return Scene(f"loitering-{seed}", duration, seed=seed, walkers=walkers, zones=[LOITER])


def crowd_scene(seed: int, duration: float = 120.0) -> Scene:
    """People gather in the hall, more than its limit, then leave."""
    rng = _rng(seed)
    n = int(rng.integers(8, 11))
    walkers = []
    for i in range(n):
        arrive = 10 + i * 3 + float(rng.uniform(0, 2))
        spot = (0.25 + 0.5 * (i % 5) / 4 + float(rng.uniform(-0.02, 0.02)),
                0.6 + 0.3 * (i // 5) + float(rng.uniform(-0.03, 0.03)))  # fmt: skip
        start = (float(rng.choice([-0.05, 1.05])), float(rng.uniform(0.5, 0.9)))
        leave = 70 + float(rng.uniform(0, 15))
        walkers.append(Walker(((arrive, *start), (arrive + 5, *spot), (leave, *spot),
                               (leave + 6, start[0], start[1])), height=0.19))  # fmt: skip
    return Scene(f"crowd-{seed}", duration, seed=seed, walkers=walkers, zones=[CROWD])


def counting_scene(seed: int, duration: float = 150.0) -> Scene:
    """People crossing an entrance line both ways, one at a time and side by side."""
    rng = _rng(seed)
    walkers = []
    t = 3.0
    while t < duration - 12:
        y = float(rng.uniform(0.55, 0.95))
        a, b = (0.1, y), (0.9, y + float(rng.uniform(-0.05, 0.05)))
        if rng.random() < 0.5:
            a, b = b, a
        walkers.append(_walk(rng, t, a, b, speed=float(rng.uniform(0.1, 0.16))))
        if rng.random() < 0.25:  # a companion, a little behind and apart
            dy = 0.12 if y < 0.75 else -0.12
            walkers.append(_walk(rng, t + 1.2, (a[0], a[1] + dy), (b[0], b[1] + dy)))
        t += float(rng.uniform(4, 9))
    return Scene(f"counting-{seed}", duration, seed=seed, walkers=walkers, zones=[LINE])


def tamper_scene(seed: int, kind: TamperKind, duration: float = 90.0) -> Scene:
    """An ordinary scene in which the camera is covered, defocused or turned away for a while."""
    rng = _rng(seed)
    start = float(rng.uniform(35, 45))
    shift = (
        float(rng.uniform(0.08, 0.15)) * float(rng.choice([-1, 1])),
        float(rng.uniform(0.03, 0.08)),
    )
    return Scene(f"tamper-{kind}-{seed}", duration, seed=seed,
                 walkers=_passers(rng, 4, duration, (0.4, 0.9)),
                 tampers=[Tamper(start, start + float(rng.uniform(20, 30)), kind, shift)])  # fmt: skip


def quiet_scene(seed: int, duration: float = 600.0) -> Scene:
    """Nothing to report: noise, drifting light, lights switched off and on, cloud shadows, and
    people walking where no zone is watched."""
    rng = _rng(seed)
    switches = []
    for k in range(2):
        at = duration * (k + 0.3) / 2
        switches += [LightSwitch(at, float(rng.uniform(0.55, 0.7))), LightSwitch(at + 60, 1.0)]
    shadows = [Shadow(s, s + 40, float(rng.uniform(0.5, 0.9)))
               for s in np.linspace(30, duration - 60, 4).tolist()]  # fmt: skip
    return Scene(f"quiet-{seed}-{round(duration)}s", duration, seed=seed, noise=6.0, drift=0.1, drift_period_s=300,
                 walkers=_passers(rng, 12, duration, (0.3, 0.45)), switches=switches,
                 shadows=shadows, zones=[RESTRICTED, LOITER])  # fmt: skip


def catalogue(seeds: range = range(1, 4), quiet_s: float = 600.0) -> list[Scene]:
    """The benchmark's clips: each kind of event on several seeds, and quiet footage."""
    out: list[Scene] = []
    for seed in seeds:
        out += [intrusion_scene(seed), loitering_scene(seed), crowd_scene(seed),
                counting_scene(seed), quiet_scene(seed, quiet_s)]  # fmt: skip
        out += [tamper_scene(seed, kind) for kind in ("covered", "blurred", "moved")]
    return out


def camera_settings(scene: Scene, source: str) -> dict[str, Any]:
    """The camera configuration a clip is made for (the `settings` of an `opencv` camera)."""
    zones = []
    for z in scene.zones:
        zone: dict[str, Any] = {
            "name": z.name,
            "purpose": z.purpose,
            "points": [list(p) for p in z.points],
        }
        if z.purpose == "loitering":
            zone["loiter_s"] = z.loiter_s
        if z.purpose == "crowd":
            zone["crowd_limit"] = z.crowd_limit
        zones.append(zone)
    return {"source": source, "fps": scene.fps, "width": scene.width, "height": scene.height,
            "zones": zones}  # fmt: skip

"""Street scenes: a square seen from a pole camera, with the events a city's cameras watch for
and the conditions they see them in. Each function makes one clip kind for a seed; its `tags`
name the event kind and every condition, so the benchmark reports per condition.

Routes are given on the ground (metres, from the pole); zones are given in image fractions,
as a user draws them on the camera's picture.
"""

from __future__ import annotations

import math

import numpy as np

from simulators.scenes.base import Mover, Scene, Tamper, TamperKind, ZoneSpec
from simulators.scenes.conditions import Clouds, Conditions, ExposureStep, Tree
from simulators.scenes.figures import Figure, Shape
from simulators.scenes.geometry import PoleCamera

Point = tuple[float, float]
CAMERA = PoleCamera()
GATE = ZoneSpec("gate", "restricted", ((0.55, 0.42), (0.93, 0.42), (0.97, 0.85), (0.52, 0.85)))
BENCH = ZoneSpec("bench", "loitering", ((0.05, 0.55), (0.4, 0.55), (0.4, 0.95), (0.05, 0.95)),
                 loiter_s=20.0)  # fmt: skip
SQUARE = ZoneSpec("square", "crowd", ((0.15, 0.3), (0.85, 0.3), (0.95, 0.92), (0.05, 0.92)),
                  crowd_limit=6)  # fmt: skip
ENTRANCE = ZoneSpec("entrance", "counting_line", ((0.5, 0.2), (0.5, 1.0)))
_LAMPS = ((-6.0, 9.0), (6.0, 9.0), (-7.0, 22.0), (7.0, 22.0), (0.0, 32.0))
_TREES = (Tree(-6.5, 7.0), Tree(-9.0, 16.0, 7.0, 3.0), Tree(9.5, 26.0, 8.0, 3.5))


def g(u: float, v: float) -> Point:
    """The ground point seen at image point (u, v)."""
    return CAMERA.ground(u, v)


def route(t0: float, points: list[Point], speed: float = 1.4,
          stops: dict[int, float] | None = None) -> tuple[tuple[float, float, float], ...]:  # fmt: skip
    """Timed waypoints walking through ground points at `speed`, pausing `stops[i]` seconds at
    point i."""
    stops = stops or {}
    t, out = t0, [(t0, *points[0])]
    if 0 in stops:
        t += stops[0]
        out.append((t, *points[0]))
    for i in range(1, len(points)):
        t += math.dist(points[i - 1], points[i]) / speed
        out.append((t, *points[i]))
        if i in stops:
            t += stops[i]
            out.append((t, *points[i]))
    return tuple(out)


def person(rng: np.random.Generator, t0: float, points: list[Point], *, speed: float | None = None,
           stops: dict[int, float] | None = None, carrying_until: float | None = None) -> Figure:  # fmt: skip
    return Figure(CAMERA, route(t0, points, speed or float(rng.uniform(1.1, 1.6)), stops),
                  "walker", float(rng.uniform(1.55, 1.9)), int(rng.integers(0, 1000)),
                  carrying_until)  # fmt: skip


def animal(rng: np.random.Generator, t0: float, a: Point, b: Point, shape: Shape = "dog") -> Figure:
    """A dog or a cat trotting from a to b, faster than people and not straight: it zigzags,
    speeds up and stops to sniff."""
    n = int(rng.integers(4, 8))
    pts: list[tuple[float, float, float]] = []
    t = t0
    for k in range(n + 1):
        f = k / n
        p = (a[0] + f * (b[0] - a[0]) + float(rng.normal(0, 1.2)) * (0 < k < n),
             a[1] + f * (b[1] - a[1]) + float(rng.normal(0, 1.2)) * (0 < k < n))  # fmt: skip
        if pts:
            t += math.dist(pts[-1][1:], p) / float(rng.uniform(1.5, 3.5))
        pts.append((t, *p))
        if 0 < k < n and rng.random() < 0.3:
            t += float(rng.uniform(0.5, 2.0))
            pts.append((t, *p))
    height = float(rng.uniform(0.45, 0.65)) if shape == "dog" else float(rng.uniform(0.25, 0.3))
    return Figure(CAMERA, tuple(pts), shape, height, int(rng.integers(0, 1000)))


def car(rng: np.random.Generator, t0: float, points: list[Point]) -> Figure:
    return Figure(CAMERA, route(t0, points, float(rng.uniform(4, 7))), "car", 1.5,
                  int(rng.integers(0, 1000)))  # fmt: skip


def passers(rng: np.random.Generator, n: int, duration: float, far: tuple[float, float] = (0.12, 0.3)
            ) -> list[Mover]:  # fmt: skip
    """People crossing the far part of the square, outside the zones."""
    out: list[Mover] = []
    for _ in range(n):
        v = float(rng.uniform(*far))
        a, b = g(-0.05, v), g(1.05, v + float(rng.uniform(-0.02, 0.02)))
        if rng.random() < 0.5:
            a, b = b, a
        out.append(person(rng, float(rng.uniform(0, max(1.0, duration - 25))), [a, b]))
    return out


def _scene(name: str, duration: float, seed: int, walkers: list[Mover], zones: list[ZoneSpec],
           conditions: Conditions, tags: list[str], **kw: object) -> Scene:  # fmt: skip
    animals = any(w.kind == "animal" for w in walkers)
    all_tags = sorted({*tags, *conditions.tags(), "street"} | ({"animal"} if animals else set()))
    rng = np.random.default_rng(seed + 7)
    return Scene(name, duration, seed=seed, walkers=walkers, zones=zones, camera=CAMERA,
                 conditions=conditions, tags=all_tags, crf=int(rng.integers(30, 39)),
                 noise=3.0, **kw)  # type: ignore[arg-type]  # fmt: skip


def intrusions(rng: np.random.Generator, duration: float, n: int) -> list[Mover]:
    """People walking into the gate zone from the near edge, lingering a little, and out."""
    out: list[Mover] = []
    for k in range(n):
        t0 = 8 + k * (duration - 20) / n + float(rng.uniform(0, 6))
        enter = g(float(rng.uniform(0.6, 0.9)), 1.02)
        mid = g(float(rng.uniform(0.62, 0.88)), float(rng.uniform(0.5, 0.78)))
        leave = g(0.3, float(rng.uniform(0.25, 0.35)))
        out.append(person(rng, t0, [enter, mid, leave], stops={1: float(rng.uniform(1, 4))}))
    return out


def intrusion(seed: int, duration: float = 90.0, conditions: Conditions | None = None,
              extra: list[str] | None = None, dog: bool = False) -> Scene:  # fmt: skip
    rng = np.random.default_rng(seed)
    c = conditions or Conditions()
    walkers = passers(rng, 3, duration) + intrusions(rng, duration, int(rng.integers(2, 4)))
    if dog:  # through the zone while nobody is in it: between the people's visits
        walkers.append(animal(rng, duration / 2 - 4, g(1.05, 0.55), g(0.4, 0.95)))
    label = "-".join([*(extra or []), "intrusion"] + (["dog"] if dog else []))
    return _scene(f"{label}-{seed}", duration, seed, walkers, [GATE], c,
                  ["intrusion", *(extra or [])])  # fmt: skip


def loitering(seed: int, duration: float = 120.0, conditions: Conditions | None = None,
              extra: list[str] | None = None) -> Scene:  # fmt: skip
    rng = np.random.default_rng(seed)
    walkers = passers(rng, 3, duration)
    spot = g(float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.7, 0.85)))
    t0 = float(rng.uniform(8, 20))
    walkers.append(person(rng, t0, [g(0.5, 0.4), spot, g(0.55, 0.3)],
                          stops={1: float(rng.uniform(35, 60))}))  # fmt: skip
    for _ in range(2):  # quick cuts through the zone: no loitering
        v = float(rng.uniform(0.65, 0.9))
        walkers.append(person(rng, float(rng.uniform(5, duration - 20)), [g(-0.02, v), g(0.5, v)]))
    label = "-".join([*(extra or []), "loitering"])
    return _scene(f"{label}-{seed}", duration, seed, walkers, [BENCH], conditions or Conditions(),
                  ["loitering", *(extra or [])])  # fmt: skip


def counting(seed: int, duration: float = 120.0, conditions: Conditions | None = None) -> Scene:
    """Crossings of the entrance line both ways: alone, side by side in pairs, and a dog."""
    rng = np.random.default_rng(seed)
    walkers: list[Mover] = []
    t = 3.0
    while t < duration - 15:
        v = float(rng.uniform(0.45, 0.95))
        a, b = g(0.1, v), g(0.9, v + float(rng.uniform(-0.05, 0.05)))
        if rng.random() < 0.5:
            a, b = b, a
        speed = float(rng.uniform(1.1, 1.6))
        walkers.append(person(rng, t, [a, b], speed=speed))
        if rng.random() < 0.4:  # a companion abreast, half a metre apart
            off = 0.6 if a[0] < b[0] else -0.6
            walkers.append(person(rng, t, [(a[0], a[1] + off), (b[0], b[1] + off)], speed=speed))
        t += float(rng.uniform(4, 8))
    for _ in range(2):
        v = float(rng.uniform(0.5, 0.9))
        walkers.append(animal(rng, float(rng.uniform(5, duration - 15)), g(0.05, v), g(0.95, v)))
    return _scene(f"counting-pairs-{seed}", duration, seed, walkers, [ENTRANCE],
                  conditions or Conditions(), ["counting", "pair"])  # fmt: skip


def crowd(seed: int, duration: float = 90.0) -> Scene:
    """People gathering in the square at every distance, more than its limit, then leaving."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 12))
    walkers: list[Mover] = []
    for i in range(n):
        spot = g(float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.3, 0.75)))
        start = g(float(rng.choice([-0.05, 1.05])), float(rng.uniform(0.3, 0.9)))
        arrive = 5 + i * 2.5 + float(rng.uniform(0, 2))
        walkers.append(person(rng, arrive, [start, spot, start],
                              stops={1: 50 - arrive + float(rng.uniform(0, 12))}))  # fmt: skip
    return _scene(f"crowd-angle-{seed}", duration, seed, walkers, [SQUARE], Conditions(),
                  ["crowd", "group"])  # fmt: skip


def headlights(seed: int, duration: float = 90.0) -> Scene:
    """Night with street lamps: cars sweep their beams across the square, one turning toward
    the camera (glare); people walk into the gate zone."""
    rng = np.random.default_rng(seed)
    walkers = passers(rng, 2, duration) + intrusions(rng, duration, 2)
    for k in range(3):
        t0 = 10 + k * 25 + float(rng.uniform(0, 5))
        walkers.append(car(rng, t0, [(-25.0, 30.0), (-4.0, 26.0), (-1.0, 18.0), (-3.0, 14.0),
                                     (-25.0, 14.5)]))  # fmt: skip
    c = Conditions(night=True, lamps=_LAMPS)
    return _scene(f"night-headlights-{seed}", duration, seed, walkers, [GATE], c,
                  ["intrusion", "headlights", "vehicle"])  # fmt: skip


def car_legs() -> list[list[Point]]:
    """Three drives through the gate zone: away from the camera, toward it, and across."""
    return [[g(0.75, 1.1), g(0.72, 0.42)], [g(0.7, 0.42), g(0.78, 1.1)],
            [g(1.1, 0.65), g(0.3, 0.65)]]  # fmt: skip


def cars_through(seed: int, duration: float = 120.0) -> Scene:
    """People walk into the gate zone in the first minute; then cars drive through it with
    nobody there: away from the camera, toward it and across, slowly (a car park's 2 m/s) or at
    a town's 6 m/s. Only the people are intrusions."""
    rng = np.random.default_rng(seed)
    walkers = passers(rng, 3, duration) + intrusions(rng, 65.0, 2)
    for k, leg in enumerate(car_legs()):
        t0 = 66 + 17 * k + float(rng.uniform(0, 3))
        speed = float(rng.uniform(2.0, 6.0))
        walkers.append(
            Figure(CAMERA, route(t0, leg, speed), "car", 1.5, int(rng.integers(0, 1000)))
        )
    return _scene(f"intrusion-car-{seed}", duration, seed, walkers, [GATE], Conditions(),
                  ["intrusion", "vehicle"])  # fmt: skip


def bag_left(seed: int, duration: float = 90.0) -> Scene:
    """A person carries a bag into the gate zone, puts it down and walks away; it stays, or
    someone comes for it after 40-50 s."""
    rng = np.random.default_rng(seed)
    walkers = passers(rng, 3, duration)
    spot = g(float(rng.uniform(0.65, 0.85)), float(rng.uniform(0.55, 0.75)))
    t0 = float(rng.uniform(5, 12))
    owner = person(rng, t0, [g(0.75, 1.02), spot, g(0.3, 0.3)], stops={1: 2.0})
    put = owner.path[2][0]
    owner = Figure(CAMERA, owner.path, "walker", owner.height_m, owner.seed, carrying_until=put)
    picked = put + float(rng.uniform(40, 50)) if rng.random() < 0.5 else duration + 1
    size = float(rng.uniform(0.35, 0.55))  # a backpack to a travel bag, this high
    bag = Figure(CAMERA, ((put, *spot), (min(picked, duration + 1), *spot)), "bag", size, 0)
    walkers += [owner, bag]
    if picked < duration:  # someone comes for it (an intrusion too) and takes it away
        come = g(0.97, 0.45)
        walkers.append(person(rng, picked - math.dist(come, spot) / 1.3, [come, spot, come],
                              speed=1.3, stops={1: 1.0}))  # fmt: skip
    return _scene(f"bag-left-{seed}", duration, seed, walkers, [GATE], Conditions(),
                  ["intrusion", "object_left"])  # fmt: skip


def tamper(seed: int, kind: TamperKind, night: bool, duration: float = 80.0) -> Scene:
    rng = np.random.default_rng(seed)
    start = float(rng.uniform(30, 40))
    shift = (float(rng.uniform(0.08, 0.15)) * float(rng.choice([-1, 1])),
             float(rng.uniform(0.03, 0.08)))  # fmt: skip
    c = Conditions(night=True, ir=True) if night else Conditions()
    walkers = passers(rng, 4, duration, (0.2, 0.5))
    return _scene(f"tamper-{kind}-{'night' if night else 'day'}-{seed}", duration, seed, walkers,
                  [], c, [f"tamper_{kind}"],
                  tampers=[Tamper(start, start + float(rng.uniform(20, 30)), kind, shift)])  # fmt: skip


def quiet(seed: int, duration: float = 300.0, night: bool = False) -> Scene:
    """No event, every nuisance: wind in the trees, a shaking pole, cloud shadows (day) or
    headlights and IR (night), rain, exposure steps, dogs and cats through the zones, people
    outside them."""
    rng = np.random.default_rng(seed)
    walkers = passers(rng, max(2, int(duration / 30)), duration)
    for _ in range(max(1, int(duration / 120))):
        shape: Shape = "dog" if rng.random() < 0.6 else "cat"
        t0 = float(rng.uniform(0, duration - 20))
        walkers.append(animal(rng, t0, g(1.05, float(rng.uniform(0.5, 0.8))),
                              g(-0.05, float(rng.uniform(0.6, 0.95))), shape))  # fmt: skip
    steps = tuple(ExposureStep(float(t), float(rng.uniform(1.2, 1.4)) ** float(rng.choice([-1, 1])))
                  for t in rng.uniform(10, duration - 10, max(1, int(duration / 150))))  # fmt: skip
    if night:
        for _ in range(max(1, int(duration / 60))):
            walkers.append(car(rng, float(rng.uniform(0, duration - 15)),
                               [(-25.0, 30.0), (-4.0, 26.0), (-1.0, 18.0), (-3.0, 14.0), (-25.0, 14.5)]))  # fmt: skip
        c = Conditions(night=True, ir=True, trees=_TREES, shake_px=1.5, exposure=steps)
    else:
        clouds = Clouds(float(rng.choice([0.2, 0.4, 0.6])), float(rng.uniform(1, 8)),
                        float(rng.uniform(0, 360)))  # fmt: skip
        c = Conditions(clouds=clouds, rain=0.4, trees=_TREES, shake_px=1.5, exposure=steps)
    return _scene(f"quiet-{'night' if night else 'day'}-{seed}-{round(duration)}s", duration, seed,
                  walkers, [GATE, BENCH], c, ["event-free"])  # fmt: skip


def animals(seed: int, duration: float = 120.0) -> Scene:
    """Dogs and cats wandering through the gate and bench zones in plain daylight, people only
    far off: no event; an alert here is an animal taken for a person."""
    rng = np.random.default_rng(seed)
    walkers = passers(rng, 3, duration)
    for k in range(5):
        shape: Shape = "cat" if k == 2 else "dog"
        a = g(float(rng.choice([-0.05, 1.05])), float(rng.uniform(0.45, 0.9)))
        b = g(float(rng.uniform(0.1, 0.9)), 1.03)
        walkers.append(animal(rng, 5 + k * (duration - 25) / 5, a, b, shape))
    return _scene(f"animals-{seed}", duration, seed, walkers, [GATE, BENCH], Conditions(),
                  ["event-free"])  # fmt: skip

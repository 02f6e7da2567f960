"""The flat scenes: people-like figures over a textured background, one kind of event each
(the first catalogue; tests use them for each detector on its own)."""

from __future__ import annotations

import math

import numpy as np

from simulators.scenes.base import (
    LightSwitch,
    Point,
    Scene,
    Shadow,
    Tamper,
    TamperKind,
    Walker,
    ZoneSpec,
)

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
    walkers: list[Walker] = _passers(rng, 4, duration, (0.3, 0.45))
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

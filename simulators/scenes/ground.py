"""The square itself, in daylight, made once per scene: paving in patterns, a road with kerbs
and markings across the far end, grass beds, drains, and still things standing on it (benches,
planters, bollards, bins, parked cars, lamp posts). Real views have this much structure; a
plain floor would make a covered lens and a defocused one too easy to confuse with the scene.
"""

from __future__ import annotations

import cv2
import numpy as np
from cv2.typing import MatLike

from simulators.scenes.geometry import PoleCamera

Point = tuple[float, float]
FAR_M = 42.0  # the square ends here: beyond is a building's facade
_RES = 0.05  # metres per texel of the ground texture
_X0 = -40.0  # the texture's left edge, metres
_ROAD = (27.0, 33.5)  # the road's near and far kerbs, metres from the pole


def _m(x: float, y: float) -> tuple[int, int]:
    """Texel of a ground point."""
    return (int((x - _X0) / _RES), int(y / _RES))


def _texture(rng: np.random.Generator) -> MatLike:
    tex_w, tex_h = int(-2 * _X0 / _RES), int(FAR_M / _RES)
    tone = rng.uniform(0.92, 1.05) * np.array([0.97, 0.98, 1.0]) * rng.uniform(0.95, 1.05, 3)
    slab = rng.uniform(105, 150, (tex_h // 12 + 1, tex_w // 12 + 1)).astype(np.float32)
    grey = cv2.resize(slab, (tex_w, tex_h), interpolation=cv2.INTER_NEAREST)
    grey[::12, :] -= 40  # joints between 0.6 m slabs
    grey[:, ::12] -= 40
    tex = np.stack([grey * tone[0], grey * tone[1], grey * tone[2]], axis=2).astype(np.float32)
    for k in range(-6, 7):  # darker decorative bands every 6 m, and a pale one between
        x = 6.0 * k + float(rng.uniform(-0.5, 0.5))
        cv2.rectangle(tex, _m(x, 0), _m(x + 0.6, _ROAD[0]), (70, 74, 78), -1)
        cv2.rectangle(tex, _m(x + 3, 0), _m(x + 3.3, _ROAD[0]), (175, 178, 180), -1)
    near, far = _ROAD  # asphalt with a dashed centre line and bright kerbs
    cv2.rectangle(tex, _m(_X0, near), _m(-_X0, far), (58, 60, 62), -1)
    for x in np.arange(_X0, -_X0, 6.0):
        cv2.rectangle(tex, _m(float(x), (near + far) / 2 - 0.08), _m(float(x) + 3, (near + far) / 2 + 0.08),
                      (215, 215, 215), -1)  # fmt: skip
    for y in (near, far):
        cv2.rectangle(tex, _m(_X0, y - 0.15), _m(-_X0, y + 0.15), (185, 188, 190), -1)
    cv2.rectangle(tex, _m(_X0, far + 0.15), _m(-_X0, FAR_M), (150, 155, 158), -1)
    for _ in range(3):  # grass beds at the sides
        x = float(rng.choice([-1, 1])) * float(rng.uniform(9, 16))
        y = float(rng.uniform(5, 20))
        bed = tex[_m(x, y)[1] : _m(x, y + 6)[1], _m(x, y)[0] : _m(x + 4, y)[0]]
        if bed.size:
            bed[:] = np.array([45, 105, 60], np.float32) + rng.normal(0, 12, (*bed.shape[:2], 1))
    for _ in range(8):  # drains and covers
        x, y = float(rng.uniform(-15, 15)), float(rng.uniform(4, 26))
        cv2.rectangle(tex, _m(x, y), _m(x + 0.5, y + 0.5), (40, 42, 44), -1)
    out: MatLike = tex + rng.normal(0, 5, (tex_h, tex_w, 1)).astype(np.float32)
    return out


def _upright(img: MatLike, camera: PoleCamera, w: int, h: int, at: Point, width_m: float,
             height_m: float, colour: tuple[int, int, int], top: tuple[int, int, int] | None = None
             ) -> None:  # fmt: skip
    """A box standing on the ground seen from the front: its face, and its lit top."""
    foot = camera.project(*at)
    head = camera.project(at[0], at[1], height_m)
    s = camera.metres_to_px(at[0], at[1], w)
    x0, x1 = round(foot[0] * w - width_m * s / 2), round(foot[0] * w + width_m * s / 2)
    y0, y1 = round(head[1] * h), round(foot[1] * h)
    cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    if top is not None:
        depth = max(1, round(0.3 * (y1 - y0)))
        cv2.rectangle(img, (x0, y0 - depth), (x1, y0), top, -1)


def square(camera: PoleCamera, w: int, h: int, seed: int, lamps: tuple[Point, ...]) -> MatLike:
    """The empty square in daylight, w x h."""
    rng = np.random.default_rng(seed)
    gx, gy = camera.ground_maps(w, h)
    tex = _texture(rng)
    mx = ((gx - _X0) / _RES).astype(np.float32)
    my = (np.minimum(gy, FAR_M - 0.01) / _RES).astype(np.float32)
    img = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    facade = gy >= FAR_M  # rays that meet the building before the ground
    if facade.any():
        rows = np.arange(h)[:, None] * np.ones((1, w))
        cols = np.ones((h, 1)) * np.arange(w)[None, :]
        windows = ((rows // max(2, h // 40)) % 3 == 0) | ((cols // max(3, w // 40)) % 4 == 0)
        wall = 150 - 90 * windows
        img[facade] = np.stack([wall * 0.85, wall * 0.9, wall], axis=2)[facade]
    out: MatLike = np.clip(img, 0, 255).astype(np.uint8)
    things: list[tuple[float, float, str]] = []
    things += [(float(x), _ROAD[1] + 1.5, "car") for x in rng.uniform(-20, 20, 3)]
    things += [(float(x), _ROAD[0] - 0.6, "bollard") for x in np.arange(-16.0, 16.1, 2.5)]
    things += [(float(rng.uniform(-12, 12)), float(rng.uniform(6, 25)), kind)
               for kind in ("bench", "bench", "planter", "planter", "bin", "bin")]  # fmt: skip
    things += [(x, y, "lamp") for x, y in lamps]
    for x, y, kind in sorted(things, key=lambda t: -t[1]):
        if kind == "car":
            paint = tuple(int(c) for c in rng.integers(30, 200, 3))
            _upright(out, camera, w, h, (x, y), 4.2, 1.0, paint, (40, 45, 50))  # type: ignore[arg-type]
        elif kind == "bollard":
            _upright(out, camera, w, h, (x, y), 0.15, 0.9, (40, 40, 40), (160, 160, 160))
        elif kind == "bench":
            _upright(out, camera, w, h, (x, y), 1.8, 0.45, (30, 55, 85), (60, 95, 130))
        elif kind == "planter":
            _upright(out, camera, w, h, (x, y), 1.2, 0.7, (120, 125, 128), (35, 95, 50))
        elif kind == "bin":
            _upright(out, camera, w, h, (x, y), 0.5, 0.9, (30, 80, 30))
        else:
            _upright(out, camera, w, h, (x, y), 0.15, 5.0, (50, 50, 50), (200, 200, 190))
    return out

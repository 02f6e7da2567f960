"""Motion on synthetic frames, one test per way the light fooled it: IR night pictures, cloud
shadows, exposure steps, headlight beams, foliage and a shaking pole. Frames are built here at
the analysis size (320x180) on a scene's textured ground, with sensor noise."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge.vision.motion import Blob, MotionDetector
from simulators.scenes import Scene

W, H = 320, 180
FPS = 5.0
PERSON_H = 36  # a standing person at the analysis size (person_height 0.2)
PERSON_AREA = 0.25 * PERSON_H**2  # as the analytics reckons it
Image = NDArray[np.float32]


def detector() -> MotionDetector:
    return MotionDetector(W, H, min_area_px=0.15 * PERSON_AREA, fps=FPS, background_s=1800)


def ground(seed: int = 3) -> Image:
    bg = Scene("ground", 1, seed=seed).background()
    return cv2.resize(bg, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)


def draw_person(img: Image, foot: tuple[float, float], colour: tuple[float, float, float],
                height: int = PERSON_H) -> None:  # fmt: skip
    x, y = round(foot[0]), round(foot[1])
    body = (max(3, int(height * 0.18)), max(6, int(height * 0.36)))
    cv2.ellipse(img, (x, y - body[1]), body, 0, 0, 360, colour, -1)
    cv2.circle(img, (x, y - 2 * body[1] - int(height * 0.08)), max(3, int(height * 0.1)),
               (60, 80, 110), -1)  # fmt: skip


def soft_patch(centre: tuple[float, float], axes: tuple[int, int], sigma: float) -> Image:
    """1 inside an ellipse, falling off smoothly over about `sigma` pixels."""
    patch = np.zeros((H, W), np.float32)
    cv2.ellipse(patch, (round(centre[0]), round(centre[1])), axes, 0, 0, 360, 1.0, -1)
    return np.asarray(cv2.GaussianBlur(patch, (0, 0), sigma), np.float32)


def sensor(img: Image, rng: np.random.Generator, noise: float = 3.0) -> NDArray[np.uint8]:
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


def run(frames: Iterator[NDArray[np.uint8]], motion: MotionDetector) -> list[list[Blob]]:
    return [motion.apply(f) for f in frames]


def clip(n: int, render: Callable[[int], Image], seed: int = 7) -> Iterator[NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield sensor(render(i), rng)


def person_sized(blobs: list[Blob], share: float = 0.5) -> list[Blob]:
    return [b for b in blobs if b.area >= share * PERSON_AREA]


def walking(i: int, start: int, x0: float, x1: float, frames: int) -> float | None:
    """A walker's foot x at frame i, crossing from x0 to x1 over `frames` frames from `start`."""
    if not start <= i < start + frames:
        return None
    return x0 + (x1 - x0) * (i - start) / frames


# ---- colour ----


def _same_grey(grey: float) -> tuple[float, float, float]:
    """A strong blue-green (BGR) of the given grey (OpenCV's Y = .114 B + .587 G + .299 R)."""
    b, r = min(255.0, 1.6 * grey), 0.3 * grey
    return b, (grey - 0.114 * b - 0.299 * r) / 0.587, r


def test_a_person_in_clothes_of_the_grounds_grey_but_another_colour_is_seen_whole() -> None:
    """Grey alone cannot see clothes of the same grey as what is behind them: such a person
    moved only by their head (in 8 frames of 55 whole), and, standing, their head was taken for
    a left object. In a colour picture the clothes change the ground's colour, which light does
    not; the same footage in grey is still seen as before."""
    base = ground()
    level = float(cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_BGR2GRAY)[115:160, 20:300].mean())
    clothes = _same_grey(level)

    def render(i: int) -> Image:
        img = base.copy()
        x = walking(i, 10, 40, 280, 40)
        if i >= 10:  # walks in, then stands
            draw_person(img, (x if x is not None else 280, 160), clothes)
        return img

    for grey_only in (False, True):
        motion = MotionDetector(W, H, min_area_px=0.15 * PERSON_AREA, fps=FPS,
                                background_s=1800, colour=True)  # fmt: skip
        frames = clip(70, render)
        seen = run((cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                    if grey_only else f for f in frames), motion)  # fmt: skip
        whole = [i for i in range(15, 70) if any(b.h >= 0.8 * PERSON_H for b in seen[i])]
        if grey_only:  # the same footage in grey: mostly only the head is seen
            assert len(whole) <= 15, whole
        else:
            assert len(whole) >= 50, sorted(set(range(15, 70)) - set(whole))


# ---- IR night mode ----


def test_an_ir_picture_is_seen_as_grey_and_the_person_in_it_is_found() -> None:
    grey = cv2.cvtColor(ground().astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    falloff = 1.1 - 0.6 * ((xx - W / 2) ** 2 + (yy - H * 0.7) ** 2) / (W * W / 4)  # IR lamp
    night = np.clip(grey * falloff, 0, 255)

    def render(i: int) -> Image:
        img = cv2.merge([night, night, night])
        x = walking(i, 15, 40, 280, 40)
        if x is not None:
            level = float(night[150, round(x)]) * 1.6  # IR shines back off clothes: lighter
            draw_person(img, (x, 150), (level, level, level))
        return img

    motion = detector()
    seen = run(clip(60, render), motion)
    assert all(len(person_sized(b, 0.3)) == 1 for b in seen[15:55]), [len(b) for b in seen]
    assert motion.monochrome
    colour = detector()
    run(clip(10, lambda i: ground()), colour)
    assert not colour.monochrome


def test_ir_switching_on_keeps_a_person_who_stands_in_view() -> None:
    base = ground()
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    falloff = 1.3 - 0.5 * ((xx - W / 2) ** 2 + (yy - H * 0.7) ** 2) / (W * W / 4)

    def render(i: int) -> Image:
        img = base.copy()
        x = walking(i, 5, 40, 160, 20)
        if i >= 5:
            draw_person(img, (x if x is not None else 160, 150), (40, 40, 160))
        if i < 40:
            return img
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) * falloff  # IR lamp on, colour gone
        return np.asarray(cv2.merge([grey, grey, grey]), np.float32)

    motion = detector()
    seen = run(clip(80, render), motion)
    assert motion.monochrome
    for i in range(8, 80):
        big = person_sized(seen[i], 0.3)
        assert len(big) == 1, (i, seen[i])
        assert i < 25 or abs(big[0].foot[0] * W - 160) < 4, (i, big)


# ---- cloud shadows ----


@pytest.mark.parametrize("darkness", [0.2, 0.4, 0.6])
@pytest.mark.parametrize("speed", [3.0, 12.0])  # pixels a frame: about 1 and 8 m/s on the ground
def test_a_cloud_shadow_crossing_an_empty_scene_is_no_motion(darkness: float, speed: float) -> None:
    base = ground()

    def render(i: int) -> Image:
        if i < 20:
            return base
        shade = soft_patch((-120 + speed * (i - 20), 100), (110, 60), 14)
        return base * (1 - darkness * shade)[:, :, None]

    motion = detector()
    assert not any(run(clip(20, render), motion))
    calm_noise = motion.noise
    rng = np.random.default_rng(9)
    noise = []
    for i in range(20, int((W + 240) / speed) + 20):
        blobs = motion.apply(sensor(render(i), rng))
        assert not person_sized(blobs), (i, blobs)
        noise.append(motion.noise)
    assert max(noise) < max(4.5, 1.5 * calm_noise), (calm_noise, max(noise))


def test_a_person_crossing_while_a_shadow_moves_elsewhere_is_one_solid_blob() -> None:
    base = ground()
    truth: dict[int, tuple[float, float]] = {}

    def render(i: int) -> Image:
        shade = soft_patch((-100 + 6 * i, 50), (130, 55), 14)
        img = base * (1 - 0.4 * shade)[:, :, None]
        x = walking(i, 20, 30, 290, 50)
        if x is not None:
            truth[i] = (x, 160.0)
            # Plain clothes, 30% darker than the ground where they are: low contrast, no colour.
            around = base[160 - PERSON_H : 160, round(x) - 6 : round(x) + 7].mean(axis=(0, 1))
            draw_person(img, truth[i], tuple(float(c) * 0.7 for c in around))  # type: ignore[arg-type]
        return np.asarray(img, np.float32)

    seen = run(clip(75, render), detector())
    for i in range(22, 68):
        big = person_sized(seen[i], 0.3)
        assert len(big) == 1, (i, seen[i])
        b = big[0]
        fx, fy = b.foot[0] * W, b.foot[1] * H
        assert abs(fx - truth[i][0]) < 4 and abs(fy - truth[i][1]) < 4, (i, b, truth[i])
        assert b.h >= 0.65 * PERSON_H  # whole, not a fragment


def test_a_persons_cast_shadow_is_left_out_of_their_moving_area() -> None:
    # Low sun: a walker's own shadow, a strip from the feet along the ground as long as they
    # are tall, dims the ground evenly; counted as moving area it makes the walker two people.
    base = ground()

    def render(i: int, shadow: bool = True) -> Image:
        img = base.copy()
        x = walking(i, 20, 60, 200, 40)
        if x is not None:
            if shadow:
                strip = np.array([[x - 3, 157], [x + PERSON_H, 153], [x + PERSON_H, 159],
                                  [x - 3, 163]], np.int32)  # fmt: skip
                lit = np.ones((H, W), np.float32)
                cv2.fillConvexPoly(lit, strip, 0.55)
                img *= lit[:, :, None]
            draw_person(img, (x, 160), (235.0, 235.0, 235.0))  # light clothes
        return img

    def areas(shadow: bool) -> list[tuple[int, int]]:
        motion, rng, out = detector(), np.random.default_rng(7), []
        for i in range(50):
            blobs = motion.apply(sensor(render(i, shadow), rng))
            big = person_sized(blobs, 0.3)
            if i >= 25 and len(big) == 1:
                b = big[0]
                kept = motion.without_cast_shadows(blobs, [o is b for o in blobs])
                box = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
                out.append((np.count_nonzero(np.asarray(motion.mask)[box]),
                            np.count_nonzero(np.asarray(kept)[box])))  # fmt: skip
        return out

    alone, shaded = areas(False), areas(True)
    assert len(alone) >= 10 and len(shaded) >= 10
    person = float(np.median([k for _, k in alone]))
    # The shadow nearly doubles the moving area; what is left is the person's and the mask's
    # rim around where the shadow was.
    assert np.median([m for m, _ in shaded]) > 1.7 * person
    assert np.median([k for _, k in shaded]) < 1.4 * person
    # Without a shadow nothing is taken away.
    assert all(m == k for m, k in alone)


# ---- exposure and light ----


def test_an_exposure_step_keeps_a_person_who_stands_still() -> None:
    base = ground()

    def render(i: int) -> Image:
        img = base.copy()
        x = walking(i, 5, 40, 160, 25)
        if i >= 5:
            draw_person(img, (x if x is not None else 160, 150), (40, 40, 160))
        gain = 1.0 if i < 40 else 1.35 if i < 60 else 0.75
        return np.asarray(img * gain, np.float32)

    motion = detector()
    seen = run(clip(90, render), motion)
    assert not motion.global_change
    for i in range(8, 90):  # walking in, then standing through both steps: one person
        big = person_sized(seen[i], 0.3)
        assert len(big) == 1, (i, seen[i])
        assert i < 30 or abs(big[0].foot[0] * W - 160) < 4, (i, big)


def test_a_headlight_beam_sweeping_the_ground_at_night_is_no_motion() -> None:
    night = ground() * 0.3

    def render(i: int) -> Image:
        if i < 15:
            return night
        beam = soft_patch((-80 + 10 * (i - 15), 130), (70, 28), 10)
        return night + 120 * beam[:, :, None] * np.float32([0.9, 1.0, 1.05])  # warm white

    seen = run(clip(65, render), detector())
    assert not [b for frame in seen for b in person_sized(frame)]


# ---- foliage and a shaking pole ----


def shifted(img: Image, dx: float, dy: float) -> Image:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return np.asarray(cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REFLECT), np.float32)


def test_foliage_swaying_in_the_wind_is_no_person_and_a_passer_by_still_is() -> None:
    base = ground()
    rng = np.random.default_rng(5)
    leaves = np.zeros((H, W, 3), np.float32)
    canopy = np.zeros((H, W), np.float32)
    cv2.ellipse(canopy, (250, 55), (45, 40), 0, 0, 360, 1.0, -1)
    for _ in range(160):  # leaves: dark and light greens with sky between
        c = (int(rng.integers(210, 290)), int(rng.integers(20, 95)))
        b, g, r = (float(rng.integers(lo, hi)) for lo, hi in ((20, 70), (90, 170), (20, 80)))
        cv2.circle(leaves, c, int(rng.integers(3, 7)), (b, g, r), -1)
    leafy = (leaves.max(axis=2) > 0).astype(np.float32) * canopy

    def render(i: int) -> Image:
        t = i / FPS
        dx, dy = 2.5 * np.sin(2 * np.pi * t / 1.7), 1.0 * np.sin(2 * np.pi * t / 2.3)
        m = shifted(leafy, dx, dy)[:, :, None]
        img = base * (1 - m) + shifted(leaves, dx, dy) * m
        x = walking(i, 150, 20, 300, 50)
        if x is not None:
            draw_person(img, (x, 165), (40, 40, 160))
        return np.asarray(img, np.float32)

    seen = run(clip(210, render), detector())
    for i in range(75, 210):
        crossing = walking(i, 150, 20, 300, 50) is not None
        big = person_sized(seen[i], 0.3)
        assert len(big) == (1 if crossing else 0), (i, seen[i])
        assert not crossing or big[0].y > 110, (i, big)


def test_a_shaking_pole_shows_the_person_and_nothing_else() -> None:
    base = ground()
    jitter = np.random.default_rng(11).uniform(-1.5, 1.5, (200, 2))

    def render(i: int) -> Image:
        img = base.copy()
        x = walking(i, 100, 20, 300, 60)
        if x is not None:
            draw_person(img, (x, 160), (40, 40, 160))
        return shifted(img, *jitter[i])

    seen = run(clip(170, render), detector())
    for i in range(50, 170):
        crossing = walking(i, 100, 20, 300, 60) is not None
        big = person_sized(seen[i], 0.3)
        assert len(big) == (1 if crossing else 0), (i, seen[i])

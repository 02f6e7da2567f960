"""Moving objects: background subtraction on a downscaled grey frame (tracking: edge/vision/tracking.py).

The background is a running average per pixel that learns only where nothing is moving, so a
person who stops stays in the foreground (for loitering) instead of fading into the background;
what stays put for `background_s` (a parked bicycle) is learned slowly all the same.

Everything is judged on one grey channel, so colour cameras and IR night pictures (grey, with
every pixel the same "colour") are analysed alike; `monochrome` says which one the camera sends.
Colour motion (`colour=True`, experimental, off by default) adds what grey alone cannot see:
clothes of the ground's grey but another hue (`_Chroma`).
A frame is compared with the background as light would change it, not as it is:
- a global gain (auto-exposure, a light switched, IR switching on) is the median ratio of frame
  to background, and rescales the background instead of making everyone disappear;
- a local light change (a cloud's shadow, a street lamp, a headlight's beam) is smooth over the
  ground: a coarse median of the ratio, over a window wider than a person, follows it and not
  the people; the background learns the frame relit to its own light, so a passing shadow
  leaves no trace in it;
- where the background has texture, a patch that still correlates with it, and explains the
  pixel with a fitted gain and offset, is the same ground in other light;
- a blob must show sharp detail the background lacks along its outline: the soft edge of a beam
  or a shadow has none.
The noise is the median deviation of the background's own pixels, so a shadow over part of the
frame cannot raise the threshold everywhere. Pixels that flicker from frame to frame (foliage,
rain, edges of a shaking view) need a larger change and are compared with the background a
couple of pixels around them; specks go. A change of most of the frame that none of this
explains makes the frame the new background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

Frame = MatLike

_GLOBAL_CHANGE = 0.4  # this share of the frame changing at once, unexplained, is a new view
_WARMUP_FRAMES = 5
_FOLLOW_S = 10.0  # the background follows slow light changes over about this long
_ADOPT_S = 120.0  # a local light change that stays (a lamp lit, the sun moved) is learned so
_ADOPT_EVERY = 10  # frames between those slow steps
_RELEARN_S = 8.0  # after a new view is taken, what moved away from it fades this fast
_MIN_THRESHOLD = 12.0  # grey levels: differences below this are never motion
_NOISE_K = 4.0  # differences above this many noise deviations are motion
_NOISE_EVERY = 3  # frames between updates of the noise estimate
_MAD_SIGMA = 1.4826  # median absolute deviation to standard deviation (normal noise)
_GAIN_STEP = 0.02  # a global gain further than this from 1 rescales the background
_LIGHT_CELLS = 40  # the light field's grid across the width (8 px at 320)
_LIGHT_WINDOW = 5  # cells: the median's window, wider than a person is
_LIGHT_AGREE = 0.15  # cells within this share of the median are the ground, in its light
# A cast shadow: darker than this share of the ground under it, and within this share of its
# blob's dark median (it dims all the ground it falls on by the same factor).
_CAST_DARK = 0.8
_CAST_BAND = 0.12
_CAST_SAME = 0.12  # a ratio this close to one is the ground unchanged
_RATIO_RANGE = (0.05, 20.0)
_PATCH = 5  # half-resolution pixels: the window the texture is compared over
_TEXTURE_K = 3.0  # a background patch spreading more than this many noise deviations has texture
_SAME_TEXTURE = 0.6  # normalised correlation above this: the same ground in other light
_GAIN_RANGE = (0.2, 5.0)  # what light can do to a patch's contrast
_NEW_EDGE_K = 2.5  # detail this many noise deviations above the background's is a new edge
_NEW_EDGE_SHARE = 0.25  # an object's outline: new edges along this share of its perimeter
_FLICKER_S = 20.0  # how long the memory of a pixel's flicker lasts
_RESTLESS = 0.1  # pixels that jumped in more than this share of frames lately are restless
_FLICKER_GAIN = 4.0  # a pixel that flickers all the time needs this much more change, plus one
_MONO_SPREAD = (0.025, 0.06)  # channel spread per grey level: below is grey, above is colour
_MONO_S = 3.0  # the picture must stay on the other side this long for the mode to switch
_MONO_EVERY = 5  # frames between looks at the colour
# Colour: chroma over brightness (YCrCb's Cr and Cb less 128, over Y), which light of one colour
# leaves as it was: a shadow, a cloud, the exposure. Clothes of the ground's grey but not its
# hue change it.
_CHROMA_SCALE = 64.0  # a chroma unit: 1/64 of the brightness
_CHROMA_DARK = 40.0  # below this brightness (frame or background) chroma is only noise
_CHROMA_CLIP = 220.0  # above this brightness a channel may clip
_MIN_CHROMA = 10.0  # chroma changes below this are never motion
_CHROMA_SHARE = 0.4  # a blob this much of whose pixels changed colour is an object's
_CHROMA_DAY = 70.0  # a scene darker than this (its median) is lit by lamps: colour is theirs


@dataclass(frozen=True, slots=True)
class Blob:
    """A moving region in analysis pixels, with its foot point (bottom centre) in frame fractions."""

    x: int
    y: int
    w: int
    h: int
    area: int
    foot: tuple[float, float]


class MotionDetector:
    """Foreground blobs of the analysis-size frame; see the module for how light is told apart."""

    def __init__(
        self, width: int, height: int, *, min_area_px: float, fps: float, background_s: float,
        colour: bool = False,
    ) -> None:  # fmt: skip
        self.width, self.height = width, height
        self.min_area_px = min_area_px
        self._fps = fps
        self._follow = min(1.0, 1.0 / (fps * _FOLLOW_S))
        self._absorb = min(1.0, 1.0 / (fps * background_s))
        self._adopt = min(1.0, _ADOPT_EVERY / (fps * _ADOPT_S))
        self._relearn = min(1.0, 1.0 / (fps * _RELEARN_S))
        self._flicker_rate = min(1.0, 1.0 / (fps * _FLICKER_S))
        self._mono_votes_needed = max(3, round(fps * _MONO_S / _MONO_EVERY))
        self._step = max(2, width // _LIGHT_CELLS)
        rows, cols = _centres(height, height // self._step), _centres(width, width // self._step)
        self._cells = rows[:, None] * width + cols[None, :]  # flat indices of the cells' centres
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._bg: NDArray[np.float32] | None = None
        self._chroma = _Chroma(width, height, self._flicker_rate) if colour else None
        self._colour: MatLike | None = None  # 255 where the colour changed, this frame
        self._light: NDArray[np.float32] | None = None  # coarse light ratio, frame / background
        self._prev: NDArray[np.uint8] | None = None
        self._flicker = np.zeros((height, width), np.float32)
        self._restless: MatLike | None = None  # 255 where pixels are restless
        self._near = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
        self._frames = 0
        self._warm: list[NDArray[np.float32]] = []
        self._relearn_until = 0
        self._mono_votes = 0
        self.noise = 3.0
        self.monochrome = False
        self.grey: NDArray[np.uint8] = np.zeros((height, width), np.uint8)
        self.mask: Frame = np.zeros((height, width), np.uint8)
        self.global_change = False

    def apply(self, small: Frame) -> list[Blob]:
        """Blobs moving in `small` (a BGR frame at the analysis size; a grey one is taken too)."""
        self._frames += 1
        colour = small.ndim == 3
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if colour else small, np.uint8)
        self.grey = grey
        # IR switching on or off is only reported: the gain and the light field take most of it,
        # so someone standing there stays seen; what they cannot explain makes a new view below.
        if colour and (self._frames % _MONO_EVERY == 1 or self._bg is None):
            self._judge_monochrome(small)
        f = grey.astype(np.float32)
        chroma = (
            self._chroma.look(small)
            if self._chroma is not None and colour and not self.monochrome
            else None
        )
        if self._frames <= _WARMUP_FRAMES or self._bg is None:
            # The median of the first frames: what passes through one of them (a flake, a bird)
            # does not become background, to stand out as a ghost for `background_s`.
            # (Taken at the first frame, for a background to exist, and at the last: the ones
            # between are never compared with, and a median over frames costs milliseconds.)
            self._warm.append(f)
            if chroma is not None and self._chroma is not None:
                self._chroma.warm()
            if len(self._warm) == 1 or self._frames >= _WARMUP_FRAMES:
                self._restart(_median_image(self._warm), grey)
            if self._frames >= _WARMUP_FRAMES:
                self._warm = []
            return []
        bg = self._bg
        cells = self._cells
        ratio = (np.take(f, cells) + 1.0) / (np.take(bg, cells) + 1.0)
        np.maximum(ratio, _RATIO_RANGE[0], out=ratio)  # (np.clip costs more on small arrays)
        np.minimum(ratio, _RATIO_RANGE[1], out=ratio)
        gain = _median(ratio[np.take(self.mask, cells) == 0])
        if abs(gain - 1.0) > _GAIN_STEP:  # the whole picture's gain changed: follow it at once
            bg *= gain
            ratio /= gain
            if self._light is not None:
                self._light /= gain
        light = self._light_field(ratio)
        lit = cv2.resize(light, (self.width, self.height))
        expected = cv2.multiply(bg, lit)
        diff = np.asarray(cv2.absdiff(f, expected), np.float32)
        if self._restless is not None:  # swaying or shaking there: compare with the neighbourhood
            cv2.copyTo(self._beyond_neighbours(grey, expected), self._restless, diff)
        threshold = max(_MIN_THRESHOLD, _NOISE_K * self.noise)
        needed = cv2.addWeighted(self._flicker, threshold * _FLICKER_GAIN, self._flicker, 0,
                                 threshold)  # fmt: skip
        moving = cv2.compare(diff, needed, cv2.CMP_GT)
        if cv2.countNonZero(moving) > _GLOBAL_CHANGE * moving.size:  # unexplained: a new view
            self._restart(f, grey)
            self._relearn_until = self._frames + round(self._fps * _RELEARN_S)
            self.global_change = True
            return []
        self.global_change = False
        # Specks (rain, noise) go first, so that the texture is compared only where it matters;
        # what survives the opening bounds what can survive it after the comparison too.
        fg = cv2.morphologyEx(moving, cv2.MORPH_OPEN, self._kernel)
        if cv2.countNonZero(fg):
            x, y, w, h = cv2.boundingRect(fg)
            self._clear_same_ground(moving, f, expected, (x, y, w, h), threshold)
            fg = cv2.morphologyEx(moving, cv2.MORPH_OPEN, self._kernel)
        self._colour = None
        if chroma and self._chroma is not None and _median(np.take(bg, cells)) >= _CHROMA_DAY:
            # What grey alone misses: clothes of the ground's own grey, but another colour.
            changed = self._chroma.changed(
                self.mask, self._flicker, self._frames % _NOISE_EVERY == 0
            )
            self._colour = cv2.morphologyEx(changed, cv2.MORPH_OPEN, self._kernel)
            fg = cv2.bitwise_or(fg, self._colour)
        fg = cv2.dilate(fg, self._kernel, iterations=2)
        if self._frames % _NOISE_EVERY == 0:
            self._estimate_noise(diff, fg)
        self._learn_flicker(grey, threshold)
        calm = cv2.bitwise_not(fg)
        # The background learns the scene in its own light (the frame relit by the light field),
        # so a passing shadow leaves it alone; a light that stays is adopted slowly all the same.
        cv2.accumulateWeighted(cv2.divide(f, lit), bg, self._follow, mask=calm)
        if self._frames % _ADOPT_EVERY == 0:
            cv2.accumulateWeighted(f, bg, self._adopt, mask=calm)
        absorb = self._relearn if self._frames < self._relearn_until else self._absorb
        cv2.accumulateWeighted(f, bg, absorb, mask=fg)
        if chroma is not None and self._chroma is not None:
            self._chroma.learn(calm, fg, self._follow, absorb)
        self.mask = fg
        return self._blobs(fg, f, expected)

    # ---- the parts ----

    def _restart(self, f: NDArray[np.float32], grey: NDArray[np.uint8]) -> None:
        """Take `f` (and the frame's colour, if it has one) as the background."""
        self._bg = f.copy()
        if self._chroma is not None:
            self._chroma.restart()
        self._light = None
        self._prev = grey
        self.mask = np.zeros_like(self.mask)

    def _light_field(self, ratio: NDArray[np.float32]) -> NDArray[np.float32]:
        """The light on the ground relative to the background's, smooth, on the coarse grid.

        A median over a window wider than a person finds the light without the people; a mean
        of the cells that agree with it then follows the soft edge of a shadow, where a median
        alone would keep the level on either side of it."""
        med = cv2.medianBlur(ratio, _LIGHT_WINDOW)
        agree = (np.abs(ratio - med) < _LIGHT_AGREE * med).astype(np.float32)
        k = (3, 3)
        weight = cv2.blur(agree, k)
        mean = cv2.blur(ratio * agree, k)
        light = np.asarray(np.where(weight > 0.2, mean / np.maximum(weight, 1e-3), med), np.float32)
        self._light = light
        return light

    def _judge_monochrome(self, small: Frame) -> None:
        """Update `monochrome` from how far the channels spread, with hysteresis."""
        # Averaged over blocks first: sensor noise differs between channels even in a grey picture.
        quarter = (max(1, self.width // 4), max(1, self.height // 4))  # a whole factor: cheap
        sample = np.asarray(cv2.resize(small, quarter, interpolation=cv2.INTER_AREA), np.int16)
        b, g, r = sample[..., 0], sample[..., 1], sample[..., 2]
        spread = float(np.mean(np.abs(b - g) + np.abs(g - r))) / 2
        level = max(float(np.mean(g)), 16.0)
        lo, hi = _MONO_SPREAD
        if self._bg is None:  # the first picture decides at once: no switch at start-up
            self.monochrome = spread < (lo + hi) / 2 * level
            return
        other = spread < lo * level if not self.monochrome else spread > hi * level
        self._mono_votes = self._mono_votes + 1 if other else 0
        if self._mono_votes >= self._mono_votes_needed:
            self.monochrome, self._mono_votes = not self.monochrome, 0

    def _clear_same_ground(
        self, moving: MatLike, f: NDArray[np.float32], expected: MatLike,
        box: tuple[int, int, int, int], threshold: float,
    ) -> None:  # fmt: skip
        """Clear `moving` where the frame's texture still matches the background's (normalised
        correlation over small patches, at half resolution): light changed there, nothing moved.
        Only within `box` (and a patch around it), in place, without temporaries where a
        buffer can be reused: this runs on every frame with motion."""
        x, y, w, h = box
        x0, y0 = max(0, x - _PATCH) & ~1, max(0, y - _PATCH) & ~1
        x1, y1 = min(self.width, x + w + _PATCH), min(self.height, y + h + _PATCH)
        half = (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2))
        x1, y1 = x0 + 2 * half[0], y0 + 2 * half[1]
        a = cv2.resize(f[y0:y1, x0:x1], half, interpolation=cv2.INTER_AREA)
        b = cv2.resize(np.asarray(expected)[y0:y1, x0:x1], half, interpolation=cv2.INTER_AREA)
        k = (_PATCH, _PATCH)
        ma, mb = cv2.blur(a, k), cv2.blur(b, k)
        va = _f32(cv2.blur(cv2.multiply(a, a), k))
        va -= cv2.multiply(ma, ma)
        vb = _f32(cv2.blur(cv2.multiply(b, b), k))
        vb -= cv2.multiply(mb, mb)
        cov = _f32(cv2.blur(cv2.multiply(a, b), k))
        cov -= cv2.multiply(ma, mb)
        floor = (_TEXTURE_K * self.noise) ** 2
        same = np.greater(vb, floor)  # textured
        np.maximum(vb, floor, out=vb)
        np.maximum(va, floor, out=va)
        va *= vb
        ncc = cov / np.sqrt(va, out=va)
        # The patch as the background in other light (gain and offset fitted); a pixel it does
        # not explain is something else, even in a patch that a strong edge makes correlate.
        gain = cov / vb
        np.maximum(gain, _GAIN_RANGE[0], out=gain)
        np.minimum(gain, _GAIN_RANGE[1], out=gain)
        fitted = _f32(b - mb)
        fitted *= gain
        fitted += ma
        same &= np.less(cv2.absdiff(a, fitted), threshold)  # explained
        same &= np.greater(ncc, _SAME_TEXTURE)
        # Cleared with a byte mask (a boolean assignment costs several times more).
        keep = np.logical_not(same).view(np.uint8) * np.uint8(255)
        up = cv2.resize(keep, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        roi = moving[y0:y1, x0:x1]
        cv2.bitwise_and(roi, up, dst=roi)

    def _has_new_edges(
        self, fg: MatLike, f: NDArray[np.float32], expected: MatLike,
        box: tuple[int, int, int, int], perimeter: float,
    ) -> bool:  # fmt: skip
        """Whether a blob shows edges the background does not have: an object has an outline,
        light falling differently only changes the contrast of edges already there."""
        x, y, w, h = box
        x0, y0 = max(0, x - 1), max(0, y - 1)
        x1, y1 = min(self.width, x + w + 1), min(self.height, y + h + 1)
        a, b = f[y0:y1, x0:x1], np.asarray(expected)[y0:y1, x0:x1]
        new = _edges(a)
        new -= _edges(b) * 1.5
        strong = np.greater(new, _NEW_EDGE_K * max(self.noise, 1.0)).view(np.uint8)
        inside = cv2.bitwise_and(strong, np.asarray(fg)[y0:y1, x0:x1])
        return cv2.countNonZero(inside) >= _NEW_EDGE_SHARE * perimeter

    def _estimate_noise(self, diff: MatLike, fg: MatLike) -> None:
        """Noise from the median deviation of the background's own pixels: robust to a shadow or
        a person over part of the frame."""
        s = self._step // 2 or 1
        self.noise = _followed_noise(
            self.noise, np.asarray(diff)[::s, ::s][np.asarray(fg)[::s, ::s] == 0]
        )

    def _learn_flicker(self, grey: NDArray[np.uint8], threshold: float) -> None:
        """How often each pixel jumps from one frame to the next (foliage, rain, a shaking view);
        a person standing still does not jump, so loitering is not affected."""
        if self._prev is not None:
            _count_jumps(
                cv2.absdiff(grey, self._prev), threshold, self._flicker, self._flicker_rate
            )
        self._prev = grey
        if self._frames % _NOISE_EVERY == 0:
            _, restless = cv2.threshold(self._flicker, _RESTLESS, 255, cv2.THRESH_BINARY)
            restless = restless.astype(np.uint8)
            self._restless = restless if cv2.countNonZero(restless) else None

    def _beyond_neighbours(self, grey: NDArray[np.uint8], expected: MatLike) -> MatLike:
        """How far each pixel lies outside the range of the expected picture around it: a leaf
        or an edge that moved a pixel or two is within it, a person is not. (In bytes, whose
        subtraction stops at zero: that is the "outside" wanted, and cheaper than floats.)"""
        near = cv2.convertScaleAbs(expected)
        hi = cv2.dilate(near, self._near)
        lo = cv2.erode(near, self._near)
        beyond = cv2.max(cv2.subtract(grey, hi), cv2.subtract(lo, grey))
        return np.asarray(beyond, np.float32)

    def _blobs(self, fg: MatLike, f: NDArray[np.float32], expected: MatLike) -> list[Blob]:
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        blobs = []
        for c in contours:
            area = cv2.contourArea(c)
            if area < self.min_area_px:
                continue
            x, y, w, h = cv2.boundingRect(c)
            coloured = (
                self._colour is not None
                and cv2.countNonZero(self._colour[y : y + h, x : x + w]) >= _CHROMA_SHARE * area
                and self._chroma is not None
                and self._chroma.new_edges((x, y, w, h), cv2.arcLength(c, True))
            )
            if not coloured and not self._has_new_edges(
                fg, f, expected, (x, y, w, h), cv2.arcLength(c, True)
            ):
                continue
            blobs.append(Blob(x, y, w, h, int(area),
                              ((x + w / 2) / self.width, (y + h) / self.height)))  # fmt: skip
        return blobs

    def _over_ground(
        self, b: Blob
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32], NDArray[np.float32]]:
        """In blob `b`'s box: where the mask moves, the frame over the background (each plus
        one: no division by a black pixel), and the background."""
        assert self._bg is not None
        box = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
        moving = np.asarray(self.mask[box]) > 0
        ground = self._bg[box]
        ratio = (self.grey[box].astype(np.float32) + 1.0) / (ground + 1.0)
        return moving, ratio, ground

    def shade(self, b: Blob) -> tuple[float, float, float]:
        """How the blob's moving pixels change the background: the median ratio of frame over
        background, its spread (median absolute deviation) over that median, and the same
        spread of the background itself. A shadow dims the ground it falls on evenly (a low
        ratio, a spread well below the ground's own); a person, with their own colours, skin
        and clothes over light and dark ground, does not. (On ground without texture the
        two cannot be told apart this way.)"""
        if self._bg is None:
            return 1.0, 1.0, 0.0
        moving, ratio, ground = self._over_ground(b)
        if not moving.any():
            return 1.0, 1.0, 0.0
        ratio, ground = ratio[moving], ground[moving]
        mid, level = _median(ratio), _median(ground)
        spread = _median(np.abs(ratio - mid)) / max(mid, 1e-6)
        return mid, spread, _median(np.abs(ground - level)) / max(level, 1.0)

    def without_cast_shadows(self, blobs: list[Blob], keep: list[bool]) -> MatLike:
        """The motion mask with the sharp shadows the blobs in `keep` cast on the ground left
        out (a copy; the mask itself when there is nothing to leave out). In low sun a
        person's shadow is as large as their moving area: counted as moving area, one person
        counts as two. A cast shadow dims the ground evenly (a frame over background ratio
        within a narrow band around its own dark median), and it lies on the ground: never
        above the feet of what casts it. So in each column of a blob the pixels of that band
        below its lowest pixel that changes the ground otherwise (or all of them, beside the
        body) are shadow. (Clothes as dark as the shadow, below anything lighter, go too.)"""
        if self._bg is None or not any(keep):
            return self.mask
        out = None
        for b, k in zip(blobs, keep, strict=True):
            if not k:
                continue
            box = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
            moving, ratio, _ = self._over_ground(b)
            dark = moving & (ratio < _CAST_DARK)
            coloured = None if self._colour is None else np.asarray(self._colour[box]) > 0
            if coloured is not None:
                dark &= (
                    ~coloured
                )  # a shadow keeps the ground's colour: what changed it is no shadow
            if np.count_nonzero(dark) < 0.1 * np.count_nonzero(moving):
                continue  # no shadow of any size: nothing to leave out
            mid = _median(ratio[dark])
            if coloured is None:
                band = dark & (np.abs(ratio - mid) <= _CAST_BAND * mid)
            else:
                # With colour to tell clothes from it, the whole shadow: from its core to its far
                # end, lighter (its penumbra widens away from the feet).
                band = dark & (ratio >= (1 - _CAST_BAND) * mid)
            # The body: what changes the ground otherwise (the mask's rim around a shadow is
            # ground as it was, ratio near one, and would pass for feet below the shadow).
            body = moving & ~band & (np.abs(ratio - 1.0) > _CAST_SAME)
            if coloured is not None:
                body |= coloured
            # The lowest body row per column (-1 where the column has no body: beside it);
            # below it, the shadow.
            rows = np.arange(b.h)[:, None]
            lowest = np.where(body, rows, -1).max(axis=0)
            shadow = band & (rows > lowest[None, :])
            if not shadow.any():
                continue
            if out is None:
                out = np.array(self.mask, copy=True)
            out[box][shadow] = 0
        return self.mask if out is None else out


def _edges(img: MatLike) -> NDArray[np.float32]:
    """Sharp detail: the difference from a 3x3 mean. An outline has it; the soft edge of a beam
    or a shadow (a ramp, which the mean keeps) has next to none."""
    return np.asarray(cv2.absdiff(img, cv2.blur(img, (3, 3))), np.float32)


def _f32(img: MatLike) -> NDArray[np.float32]:
    """`img` typed as the float32 array it is (no copy)."""
    return np.asarray(img, np.float32)


def _median_image(frames: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The per-pixel median of the frames; of five by comparisons (what a median of five is:
    the middle of the larger of two minima, the smaller of two maxima and the fifth), some
    twenty times cheaper than numpy's median along a stack."""
    if len(frames) != 5:
        return np.asarray(np.median(frames, axis=0), np.float32)
    a, b, c, d, e = frames
    low, high = cv2.max(cv2.min(a, b), cv2.min(c, d)), cv2.min(cv2.max(a, b), cv2.max(c, d))
    return _f32(cv2.max(cv2.min(low, high), cv2.min(cv2.max(low, high), e)))


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


class _Chroma:
    """The colour half of the background: chroma over brightness (YCrCb's Cr and Cb less 128,
    over Y), which light of one colour leaves as it was (a shadow, a cloud, the exposure), at
    half the analysis size, as the encoder keeps it (4:2:0). Judged and learned only where a
    pixel has light enough for a colour and no channel clips; `_seen` says how lately each was
    learned so (a pixel that comes out of a cloud's deep shadow is not judged against the
    noise it had there)."""

    def __init__(self, width: int, height: int, flicker_rate: float) -> None:
        self.size = (width, height)
        self.half = (max(1, width // 2), max(1, height // 2))
        self._flicker_rate = flicker_rate
        # How often each pixel's colour jumps from one frame to the next (leaves of another
        # colour than what is behind them swaying, a shaking view's colour edges): there, colour
        # says nothing, whatever the grey does.
        self._flicker = np.zeros((self.half[1], self.half[0]), np.float32)
        self._prev: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
        self._grow = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        self.noise = 2.0
        self._bg: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
        self._seen: NDArray[np.float32] | None = None
        self._now: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
        self._valid: MatLike | None = None  # 255 where this frame's chroma counts
        self._warm: list[tuple[NDArray[np.float32], NDArray[np.float32]]] = []

    def warm(self) -> None:
        """Keep this frame's chroma for the background the warm-up frames make."""
        if self._now is not None:
            self._warm.append(self._now)

    def restart(self) -> None:
        """A new background: the median of the warm-up frames' chroma, as the grey one is
        (what passes through one of them is not taken), or else the next frame's."""
        if self._warm:
            self._bg = (_median_image([u for u, _ in self._warm]),
                        _median_image([v for _, v in self._warm]))  # fmt: skip
            self._seen = np.asarray(self._valid, np.float32) / 255.0
        else:
            self._bg = None
        if len(self._warm) >= _WARMUP_FRAMES:
            self._warm = []

    def look(self, small: Frame) -> bool:
        """Take this frame's chroma; whether there is a background to compare it with."""
        ycc = cv2.cvtColor(cv2.resize(small, self.half, interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2YCrCb)  # fmt: skip
        y, cr, cb = cv2.split(ycc)
        self._valid = cv2.inRange(y, _CHROMA_DARK, _CHROMA_CLIP)
        k = _CHROMA_SCALE / np.maximum(y, _CHROMA_DARK).astype(np.float32)
        u = cr.astype(np.float32)
        u -= 128.0
        u *= k
        v = cb.astype(np.float32)
        v -= 128.0
        v *= k
        if self._prev is not None:
            jump = cv2.add(cv2.absdiff(u, self._prev[0]), cv2.absdiff(v, self._prev[1]))
            threshold = max(_MIN_CHROMA, _NOISE_K * self.noise)
            _count_jumps(jump, threshold, self._flicker, self._flicker_rate)
        self._now = self._prev = (u, v)
        if self._bg is None:
            self._bg = (u.copy(), v.copy())
            self._seen = np.asarray(self._valid, np.float32) / 255.0
            return False
        return True

    def changed(self, mask: MatLike, flicker: NDArray[np.float32], estimate_noise: bool
                ) -> MatLike:  # fmt: skip
        """255 (at the analysis size) where the chroma changed beyond its noise, a white balance
        shift of the whole picture taken out first, except where the grey or the colour is
        restless; `mask` is the last motion mask, `flicker` how often each pixel's grey jumps
        (both at the analysis size); `estimate_noise` on the frames the grey noise is taken."""
        assert self._now is not None and self._bg is not None and self._seen is not None
        assert self._valid is not None
        w, h = self.half
        calm = (np.asarray(mask)[::4, ::4] == 0)[: (h + 1) // 2, : (w + 1) // 2]
        restless = cv2.max(cv2.resize(flicker, self.half, interpolation=cv2.INTER_NEAREST),
                           self._flicker)  # fmt: skip
        jumpy = cv2.dilate((restless > _RESTLESS).view(np.uint8), self._grow) > 0
        parts = []
        for now, bg in zip(self._now, self._bg, strict=True):
            d = np.asarray(cv2.subtract(now, bg), np.float32)
            d -= _median(d[::2, ::2][calm])
            parts.append(np.abs(d))
        dist = np.asarray(cv2.add(parts[0], parts[1]), np.float32)
        if estimate_noise:
            self.noise = _followed_noise(self.noise, dist[::2, ::2][calm])
        threshold = max(_MIN_CHROMA, _NOISE_K * self.noise)
        out: MatLike = np.greater(dist, threshold).view(np.uint8) * np.uint8(255)
        cv2.bitwise_and(out, self._valid, dst=out)
        out[self._seen <= 0.5] = 0
        out[jumpy] = 0  # swaying leaves, a shaking view: colour edges moving; grey judges there
        if cv2.countNonZero(out) > _GLOBAL_CHANGE * cv2.countNonZero(self._valid):
            # The colour of much of the view changed at once (the white balance, IR coming on
            # before the picture is judged grey, a new view): no object; learn it anew.
            self._bg = None
            out[:] = 0
        # Back to the analysis size, smooth (not in blocks), less the pixel of colour the half
        # size and the encoder smear around every figure.
        up = cv2.resize(out, self.size, interpolation=cv2.INTER_LINEAR)
        smooth: MatLike = np.greater(up, 127).view(np.uint8) * np.uint8(255)
        return cv2.erode(smooth, _CROSS)

    def new_edges(self, box: tuple[int, int, int, int], perimeter: float) -> bool:
        """Whether a blob (its box and perimeter at the analysis size) shows colour edges the
        background lacks: an object's outline, where leaves swaying or a view shaking only
        move the colour edges already there."""
        if self._now is None or self._bg is None:
            return False
        x, y, w, h = (v // 2 for v in box)
        x0, y0 = max(0, x - 1), max(0, y - 1)
        x1, y1 = min(self.half[0], x + w + 2), min(self.half[1], y + h + 2)
        new = None
        for now, bg in zip(self._now, self._bg, strict=True):
            e = _edges(now[y0:y1, x0:x1])
            e -= _edges(bg[y0:y1, x0:x1]) * 1.5
            new = e if new is None else np.maximum(new, e)
        assert new is not None
        strong = np.greater(new, _NEW_EDGE_K * max(self.noise, 1.0))
        return int(np.count_nonzero(strong)) >= _NEW_EDGE_SHARE * perimeter / 2

    def learn(self, calm: MatLike, fg: MatLike, follow: float, absorb: float) -> None:
        """Learn the chroma where the background learns (`calm` and `fg`, analysis size, with
        their rates), only where it counts this frame."""
        if self._bg is None:
            return  # to be taken from the next frame
        assert self._now is not None and self._seen is not None and self._valid is not None
        valid = self._valid
        near = cv2.INTER_NEAREST
        calm_half = cv2.bitwise_and(cv2.resize(calm, self.half, interpolation=near), valid)
        fg_half = cv2.bitwise_and(cv2.resize(fg, self.half, interpolation=near), valid)
        for now, bg in zip(self._now, self._bg, strict=True):
            cv2.accumulateWeighted(now, bg, follow, mask=calm_half)
            cv2.accumulateWeighted(now, bg, absorb, mask=fg_half)
        cv2.accumulateWeighted(np.asarray(valid, np.float32) / 255.0, self._seen, follow)


def _count_jumps(
    jump: MatLike, threshold: float, flicker: NDArray[np.float32], rate: float
) -> None:
    """Add this frame's jumps from the last (beyond `threshold`) to `flicker`, the running share
    of frames each pixel jumped in lately (at `rate` a frame)."""
    _, jumped = cv2.threshold(jump, threshold, 1, cv2.THRESH_BINARY)
    cv2.accumulateWeighted(jumped, flicker, rate)


def _followed_noise(noise: float, sample: NDArray[np.float32]) -> float:
    """`noise` moved toward the standard deviation of `sample` (differences from the
    background where nothing moves: their median deviation, robust to a shadow or a person over
    part of the frame); unchanged when the sample is too small to say."""
    if sample.size < 100:
        return noise
    return noise + 0.3 * (max(0.5, _MAD_SIGMA * _median(sample)) - noise)


def _centres(size: int, cells: int) -> NDArray[np.intp]:
    """The pixels that `cv2.resize` takes as the centres of `cells` cells across `size`."""
    return np.clip(np.round((np.arange(cells) + 0.5) * size / cells - 0.5), 0, size - 1).astype(
        np.intp
    )


def _median(values: NDArray[np.float32]) -> float:
    """The median of a 1-D sample (1.0 for an empty one), by partition: cheaper than np.median."""
    n = values.size
    if n == 0:
        return 1.0
    flat = np.ravel(values).copy()
    return float(np.partition(flat, n // 2)[n // 2])

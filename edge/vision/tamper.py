"""Tampering: a covered lens, a defocused lens, a camera turned away.

Each is judged against the camera's own baseline, so one threshold suits every scene, and by
what the tampering does to the view's structure rather than to its light, which clouds,
headlights and auto-exposure change all the time:
- covered: the view's coarse structure, smooth shading taken off, hardly spreads against its own
  brightness (a hand, a bag, paint), dark or not; a dark IR scene that keeps its structure is
  not covered;
- blurred: per block of the view, gradient energy (the sensor's noise taken off) over the
  block's own brightness, against that block's usual value. Only blocks that were textured, are
  neither saturated nor near black and whose brightness still follows the rest of the picture
  are judged, and the median decides: a defocus lowers sharpness across most of the picture, a
  light source or a moving shadow changes only part of it, and a gain change scales energy and
  brightness alike;
- moved: ORB features of the view (averaged over a few checks, so that rain, snow and passers-by
  leave no corners, and divided by its local mean, so that a shadow leaves the corners on dim
  ground) matched to the reference view's, and a homography fitted with PROSAC (RANSAC trying
  the best matches first). People and shadows move a few features, not the homography; a camera
  knocked aside gives a large displacement that stays the same; a camera turned to something
  else loses its matches while the view's coarse layout changes too. ORB runs every few seconds, sooner when the cheap
  measures hint at a move.

A condition that holds is first *suspected* (zones keep being analysed) and only *confirmed* once
it has held `tamper_confirm_s`: the confirmed states raise alerts and pause zone analytics. After a
long time in a new position the new view becomes the reference: the alert ends, the incident it
raised stays for people to look at. A switch between colour and IR (greyscale) pictures makes the
detector learn the view again, as the other mode's reference is not comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from edge.vision.config import Tuning

Floats = NDArray[np.float32]

_SIZE = (160, 90)  # the cheap measures' view
_COARSE = (40, 18)  # the view's coarse structure (sensor noise averaged out)
_BLOCKS = (10, 6)  # sharpness blocks of 16 by 15 pixels of the cheap view
_EVERY_S = 0.8  # the cheap measures this often (tampering lasts; frames in between are alike)
_WARMUP_CHECKS = 5  # about three seconds of calm checks
_ALPHA = 0.02  # baselines follow calm views over about fifty checks
_TEXTURED = 3.0  # a block whose usual contrast is under this many noise deviations is not judged
_MIN_NOISE = 0.3  # grey levels (cheap view): the noise estimate's floor
_LAPLACE_GAIN = 20.0  # the 4-neighbour Laplacian multiplies a pixel noise's variance by this
_DARK, _BRIGHT = 12.0, 245.0  # blocks darker than this, or this saturated, are not judged
_SATURATED_SHARE = 0.05
_LIGHT_CHANGE = 1.6  # a block this much lighter or darker than the rest of the view: its light
_MIN_BLOCKS = 10  # fewer judged blocks than this: focus is not judged at all
_ORB_EVERY_S = 8.0  # ORB on a calm view this often…
_ORB_CUED_S = 1.5  # …this often while the cheap measures hint at a move…
_ORB_SUSPECT_S = 0.4  # …and this often while features disagree with the reference
_ORB_FEATURES = 200
_STILL_ALPHA = 0.4  # features are found on an average over the last few checks (about 1.5 s)
_MIN_REFERENCE_FEATURES = 30  # a reference with fewer is untextured: losing it says nothing
_MIN_INLIERS = 8
_SUPPORT = 0.3  # a displacement counts when this share of the usual inliers carry it
_UNSHADE_PX = 15  # features are found on the view over its local mean in this window
_RANSAC_PX = 3.0
_TRIGGER_SHARE = 0.4  # this share of judged blocks changing content at once: features now
_CONTENT_CHANGE = math.log(3.0)  # a block's sharpness this far from usual: other content
_LAYOUT_DROP = 0.2  # the still view's layout correlating this much less with the reference's
# than usual: a cue to match features now
_REFERENCE_EVERY_S = 120.0  # a calm, aligned view refreshes the reference this often
_REBASE_AFTER_S = 600.0  # a view moved for this long becomes the new normal
_MONO_CHROMA = (3.0, 6.0)  # mean colour difference (grey levels): greyscale below, colour above
_COVERED_SHARE = 0.35  # covered also needs the contrast below this share of the usual
_LEVEL_FLOOR = 20.0  # contrast is spread over brightness, but never over less than this
# Immerkaer's noise mask: zero on planes and ramps; its mean absolute response to white noise
# of deviation s is 6 s times sqrt(2 / pi)
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_NOISE_SCALE = math.sqrt(math.pi / 2) / 6
_GRID = np.array([[x, y] for y in (0.2, 0.5, 0.8) for x in (0.2, 0.5, 0.8)], np.float32)


def _median(values: Floats) -> float:
    """The median, without numpy.median's overhead (this runs on small arrays, often)."""
    flat = values.ravel()
    k = flat.size // 2
    return float(np.partition(flat, k)[k])


def _layout(coarse: Floats) -> Floats:
    """Where the view's edges are, coarsely, unit-normed: the log of the coarse view (light and
    shadow become offsets) less its smooth part. Moving the camera moves it, shading barely."""
    logs = np.log(coarse + 4.0)
    detail = logs - np.asarray(cv2.GaussianBlur(logs, (0, 0), 2), np.float32)
    norm = float(np.sqrt(np.sum(detail * detail)))
    return np.asarray(detail / norm if norm > 1e-6 else detail, np.float32)


def _unshaded(grey: MatLike) -> MatLike:
    """The grey view over its local mean: a shadow or a light level multiplies both, so corners
    on dim ground keep their contrast when a cloud passes over."""
    g = grey.astype(np.float32)
    local = np.asarray(cv2.boxFilter(g, -1, (_UNSHADE_PX, _UNSHADE_PX)), np.float32)
    local += 8.0
    np.divide(g, local, out=local)  # in place: this runs before every feature match
    out: MatLike = cv2.convertScaleAbs(local, alpha=96.0)
    return out


@dataclass(frozen=True, slots=True)
class TamperState:
    """The view now. `covered`, `blurred` and `moved` are confirmed (held `tamper_confirm_s`):
    alert-worthy, zone analytics pause. `suspected`: one of them holds, not yet confirmed."""

    covered: bool
    blurred: bool
    moved: bool
    suspected: bool
    sharpness: float  # the judged blocks' median sharpness against their usual (1.0: usual)
    match: float  # feature inliers against the usual for the reference (1.0: usual)
    shift: float  # the homography's displacement of the view, as a share of its width
    contrast: float  # the spread of the view's coarse structure over its brightness


@dataclass(slots=True)
class _Persist:
    """When a raw condition began to hold (None: it does not)."""

    since: float | None = None

    def update(self, holds: bool, t: float) -> float | None:
        self.since = (t if self.since is None else self.since) if holds else None
        return self.since


@dataclass(slots=True)
class _Reference:
    keypoints: tuple[cv2.KeyPoint, ...]
    descriptors: MatLike | None
    layout: Floats  # the coarse layout (see `_layout`), a cheap cue that the view moved
    taken_at: float
    layout_match: float = 1.0  # how well calm views' layouts usually correlate with it
    inliers: float = 0.0  # the usual inlier count of aligned views (0: none seen yet)


class TamperDetector:
    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self._orb = cv2.ORB.create(nfeatures=_ORB_FEATURES, scaleFactor=1.3, nlevels=3,
                                   edgeThreshold=19, patchSize=19, fastThreshold=7)  # fmt: skip
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self._mono: bool | None = None
        self._prev: Floats | None = None
        self._noise = 1.0  # the sensor noise's deviation in the cheap view, grey levels
        self._state: TamperState | None = None
        self._checked_at = 0.0
        self._reset()

    def _reset(self) -> None:
        """Forget the view: what comes next is learned as normal."""
        self._calm_frames = 0
        self.contrast: float | None = None  # the usual contrast
        self._mean: Floats | None = None  # per block: usual brightness…
        self._sharp: Floats | None = None  # …log sharpness
        self._var: Floats | None = None  # …and contrast (variance)
        self.reference: _Reference | None = None
        self.rebases = 0  # times a moved view became the reference (the camera's new position)
        self._orb_at = -1e18
        self._displaced: tuple[float, float] | None = None  # the last ORB verdict: where to…
        self._previous: tuple[float, float] | None = None  # (the last displacement seen)
        self._lost = False  # …or no match at all
        self._shift, self._match = 0.0, 1.0
        self._covered, self._blurred, self._moved = _Persist(), _Persist(), _Persist()
        self._still: Floats | None = None

    def check(
        self, frame: MatLike, t: float, *, busy: bool = False, grey: MatLike | None = None
    ) -> TamperState:
        """The state of the view in `frame` (BGR, analysis size) at `t`. `busy`: much is moving,
        so the view is not a good reference. `grey`: the same frame in grey, when the caller has
        it already (the motion detector's). The view is measured every `_EVERY_S`; in between
        the last state stands."""
        if self._state is not None and t - self._checked_at < _EVERY_S - 1e-6:
            return self._state
        self._checked_at = t
        self._state = self._check(frame, t, busy, grey)
        return self._state

    def _check(self, frame: MatLike, t: float, busy: bool, grey: MatLike | None) -> TamperState:
        mono = self._monochrome(frame, self._mono)
        if grey is None:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        # Rain, snow, sensor noise and passers-by put corners where there are none a moment
        # later; an average over a few checks keeps what stays.
        if self._still is None or self._still.shape != grey.shape:
            self._still = np.array(grey, np.float32)
        else:
            cv2.accumulateWeighted(grey, self._still, _STILL_ALPHA)
        still = cv2.convertScaleAbs(self._still)
        g = np.asarray(cv2.resize(grey, _SIZE, interpolation=cv2.INTER_AREA), np.float32)
        self._estimate_noise(g)
        coarse = np.asarray(cv2.resize(g, _COARSE, interpolation=cv2.INTER_AREA), np.float32)
        # Structure is what is left once smooth shading is taken off (vignetting, an IR lamp's
        # falloff, a hand lit unevenly) and the sensor's noise discounted: a covered lens keeps
        # only those.
        shading = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 3), _SIZE,
                             interpolation=cv2.INTER_LINEAR)  # fmt: skip
        level = float(cv2.mean(coarse)[0])
        spread = float(cv2.meanStdDev(g - shading)[1][0][0])
        structure = max(0.0, spread * spread - self._noise * self._noise) ** 0.5
        contrast = structure / max(level, _LEVEL_FLOOR)
        if mono != self._mono and contrast >= self.tuning.covered_contrast:
            # IR switched on or off: the other mode's view is not comparable, learn it again.
            # (A covered lens turns the picture grey too: that is no switch, it is judged.)
            if self._mono is not None:
                self._reset()
                self._still = np.array(grey, np.float32)  # the new mode's view, from now
                still = cv2.convertScaleAbs(self._still)
            self._mono = mono
        covered_raw = (  # a view that is always this flat (a blank wall) is this camera's normal
            self.contrast is not None
            and contrast < self.tuning.covered_contrast
            and contrast < _COVERED_SHARE * self.contrast
        )
        mean, sharp, var, light_changed = self._blocks(g, coarse)
        sharpness, trigger = self._sharpness(sharp, light_changed)
        layout = _layout(np.asarray(cv2.resize(self._still, _COARSE, interpolation=cv2.INTER_AREA),
                                    np.float32))  # fmt: skip
        layout_match, layout_dropped = 1.0, False
        if self.reference is not None:
            layout_match = float(np.sum(layout * self.reference.layout))
            layout_dropped = layout_match < self.reference.layout_match - _LAYOUT_DROP
            trigger = trigger or layout_dropped
        blurred_raw = not covered_raw and sharpness < self.tuning.blur_ratio
        suspicious = self._displaced is not None or self._lost
        every = _ORB_SUSPECT_S if suspicious else _ORB_CUED_S if trigger else _ORB_EVERY_S
        due = t - self._orb_at >= every - 1e-6
        if self.reference is not None and not (covered_raw or blurred_raw) and due:
            self._orb_at = t
            self._features(still, layout_dropped)
        if covered_raw or blurred_raw:
            self._displaced, self._lost = None, False  # features say nothing about a blank view
        moved_raw = self._displaced is not None or self._lost
        confirm = self.tuning.tamper_confirm_s
        states = []
        for persist, raw in ((self._covered, covered_raw), (self._blurred, blurred_raw),
                             (self._moved, moved_raw)):  # fmt: skip
            since = persist.update(raw, t)
            states.append(since is not None and t - since >= confirm)
        covered, blurred, moved = states
        suspected = (covered_raw or blurred_raw or moved_raw) and not any(states)
        moved_since = self._moved.since
        if moved and moved_since is not None and t - moved_since >= _REBASE_AFTER_S:
            self._rebase(still, layout, mean, sharp, var, contrast, t)
        elif self.reference is None or not (covered_raw or blurred_raw or moved_raw or busy):
            self._learn(
                still, layout, mean, sharp, var, contrast, t
            )  # what it sees first is normal
            if self.reference is not None and not trigger:
                ref = self.reference
                ref.layout_match += 0.1 * (layout_match - ref.layout_match)
        return TamperState(covered, blurred, moved, suspected, sharpness, self._match,
                           self._shift, contrast)  # fmt: skip

    # ---- the cheap measures, every check ----

    @staticmethod
    def _monochrome(frame: MatLike, before: bool | None) -> bool:
        """Whether the picture is greyscale (IR), with a margin so that it does not flicker."""
        if frame.ndim == 2 or frame.shape[2] == 1:
            return True
        step = max(1, frame.shape[1] // 40)  # a sample of pixels says it
        tiny = np.asarray(frame[::step, ::step], np.int16)
        chroma = float((np.abs(tiny[:, :, 0] - tiny[:, :, 1])
                        + np.abs(tiny[:, :, 1] - tiny[:, :, 2])).mean())  # fmt: skip
        grey, colour = _MONO_CHROMA
        return chroma < (colour if before else grey)

    def _estimate_noise(self, g: Floats) -> None:
        """Sensor noise, as the lower of two bounds that fail apart. The median change since
        the last check is noise in a still view, but checks are a second apart: a shaking pole
        moves every textured pixel, a shadow's edge sliding over the view or the light drifting
        changes them all, rain adds streaks. The residual of a 3x3 curvature filter in the
        flattest blocks is noise on plain ground, more on texture, but it is this frame's own:
        no change in time enters it. Taken too high, the noise is what blur is judged by (its
        share of gradient energy is taken off), so a picture darkened by a cloud's shadow would
        lose the rest of its energy to it and read as defocused."""
        if self._prev is not None:
            diff = np.abs(g[::2, ::2] - self._prev[::2, ::2])  # a sample of pixels says it
            now = min(_median(diff) * 1.05, self._flat_noise(g))  # median |a-b| of two noises
            now = max(_MIN_NOISE, now)
            if now < 3 * self._noise:
                self._noise += 0.1 * (now - self._noise)
        self._prev = g

    @staticmethod
    def _flat_noise(g: Floats) -> float:
        """The noise deviation the curvature residual (Immerkaer's 3x3 mask, which cancels
        planes and ramps) gives in the flattest tenth of the blocks."""
        residual = np.abs(cv2.filter2D(g, cv2.CV_32F, _NOISE_MASK))[1:-1, 1:-1]
        blocks = np.asarray(cv2.resize(residual, _BLOCKS, interpolation=cv2.INTER_AREA))
        flat = blocks.ravel()
        k = flat.size // 10
        return float(np.partition(flat, k)[k]) * _NOISE_SCALE

    def _blocks(
        self, g: Floats, coarse: Floats
    ) -> tuple[Floats, Floats, Floats, NDArray[np.bool_]]:
        """Per block: brightness, log sharpness (gradient energy over contrast), contrast, and
        whether its light changed apart from the rest of the picture (or is unjudgeable)."""

        def blocks(img: MatLike) -> Floats:
            return np.asarray(cv2.resize(img, _BLOCKS, interpolation=cv2.INTER_AREA), np.float32)

        mean = blocks(coarse)
        var = blocks(g * g) - mean * mean
        lap = np.asarray(cv2.Laplacian(g, cv2.CV_32F, ksize=1), np.float32)
        energy = blocks(lap * lap)
        # What the sensor's noise adds is taken off: it does not blur with the lens. Energy is
        # over the block's brightness squared, which a gain change or a shadow scales alike;
        # over its variance instead, a shadow's edge across a plain block would read as blur.
        n2 = self._noise * self._noise
        var = np.maximum(var - n2, 0.0)
        energy = np.maximum(energy - _LAPLACE_GAIN * n2, 0.0)
        sharp = np.log((energy + n2) / (mean * mean + 1.0)).astype(np.float32)
        saturated = blocks((g >= _BRIGHT).astype(np.float32)) > _SATURATED_SHARE
        unjudged = np.asarray(saturated | (mean < _DARK), np.bool_)
        if self._mean is None:
            return mean, sharp, var, unjudged
        rel = np.log((mean + 1.0) / (self._mean + 1.0))
        gain = _median(rel)  # an exposure change moves every block alike
        light_changed = unjudged | (np.abs(rel - gain) > np.log(_LIGHT_CHANGE))
        return mean, sharp, var, np.asarray(light_changed, np.bool_)

    def _sharpness(self, sharp: Floats, light_changed: NDArray[np.bool_]) -> tuple[float, bool]:
        """The judged blocks' median sharpness against their usual (1.0 when it cannot be told),
        and whether many of them show other content (a cue to match features now: a shadow or
        a gain change scales a block's energy and brightness alike, a turn does not)."""
        if self._sharp is None or self._var is None:
            return 1.0, False
        judged = (self._var >= (_TEXTURED * self._noise) ** 2) & ~light_changed
        n = int(np.count_nonzero(judged))
        if n < _MIN_BLOCKS:
            return 1.0, False
        change = sharp[judged] - self._sharp[judged]
        other = int(np.count_nonzero(np.abs(change) > _CONTENT_CHANGE)) > _TRIGGER_SHARE * n
        return math.exp(_median(change)), other

    # ---- features, now and then ----

    def _features(self, grey: MatLike, layout_dropped: bool) -> None:
        """Match the view's ORB features to the reference's: displaced (by how much), lost, or
        in place. `layout_dropped`: the cheap layout cue disagrees with the reference too."""
        ref = self.reference
        assert ref is not None
        keypoints, descriptors = self._orb.detectAndCompute(_unshaded(grey), None)
        inliers, h = 0, None
        if descriptors is not None and ref.descriptors is not None and len(keypoints) >= 4:
            # Best matches first, for PROSAC: it samples those first, so that it finds the
            # consensus in a few dozen tries where plain RANSAC, on a view where only a quarter
            # of the matches are right (shake, foliage, rain), ran all its two thousand.
            matches = sorted(self._matcher.match(ref.descriptors, descriptors),
                             key=lambda m: m.distance)  # fmt: skip
            if len(matches) >= _MIN_INLIERS:
                src = np.array([ref.keypoints[m.queryIdx].pt for m in matches], np.float32)
                dst = np.array([keypoints[m.trainIdx].pt for m in matches], np.float32)
                h, mask = cv2.findHomography(src, dst, cv2.USAC_PROSAC, _RANSAC_PX)
                inliers = int(mask.sum()) if mask is not None else 0
        # The usual count is learned from aligned views (the reference's own keypoints until one
        # is seen would overstate it: many corners of a view do not come back).
        self._match = min(1.0, inliers / ref.inliers) if ref.inliers else 1.0
        supported = h is not None and inliers >= max(_MIN_INLIERS, _SUPPORT * ref.inliers)
        self._shift, self._displaced, self._lost = 0.0, None, False
        if supported and h is not None:
            width, height = grey.shape[1], grey.shape[0]
            pts = (_GRID * np.array([width, height], np.float32)).reshape(-1, 1, 2)
            moved = cv2.perspectiveTransform(pts, h).reshape(-1, 2) - pts.reshape(-1, 2)
            dx, dy = (float(v) / width for v in np.median(moved, axis=0))
            self._shift = _median(np.hypot(moved[:, 0], moved[:, 1])) / width
            if self._shift <= self.tuning.moved_shift:  # aligned: what a good match is here
                ref.inliers = float(inliers) if not ref.inliers else ref.inliers + 0.2 * (
                    inliers - ref.inliers)  # fmt: skip
                return
            before, self._previous = self._previous, (dx, dy)
            if before is None or math.dist((dx, dy), before) <= self.tuning.moved_shift:
                self._displaced = (dx, dy)
                return
            if not layout_dropped:
                self._moved.since = None  # a different displacement: not one turn, start again
                self._displaced = (dx, dy)
                return
            # Displacements that disagree, on a view whose layout is gone: chance homographies
            # between unrelated views, which is what looking elsewhere gives.
            self._lost, self._match = True, 0.0
            return
        # No well-supported homography. That alone happens in rain or on a plain square; with
        # the layout gone as well (features and light agreeing), the camera looks elsewhere.
        poor = not supported or self._match < self.tuning.moved_lost_share
        self._lost = len(ref.keypoints) >= _MIN_REFERENCE_FEATURES and poor and layout_dropped
        self._match = 0.0 if self._lost else self._match

    # ---- learning the view ----

    def _learn(self, grey: MatLike, layout: Floats, mean: Floats, sharp: Floats, var: Floats,
               contrast: float, t: float) -> None:  # fmt: skip
        self._calm_frames += 1
        alpha = max(_ALPHA, 1.0 / self._calm_frames)  # a plain average while warming up
        if self._mean is None or self._sharp is None or self._var is None or self.contrast is None:
            self._mean, self._sharp, self._var, self.contrast = mean, sharp, var, contrast
        else:
            self._mean += alpha * (mean - self._mean)
            self._sharp += alpha * (sharp - self._sharp)
            self._var += alpha * (var - self._var)
            self.contrast += alpha * (contrast - self.contrast)
        if self._calm_frames < _WARMUP_CHECKS:
            return
        aligned = self._displaced is None and not self._lost
        if self.reference is None or (
            aligned and t - self.reference.taken_at >= _REFERENCE_EVERY_S
        ):
            self._take_reference(grey, layout, t)

    def _take_reference(self, grey: MatLike, layout: Floats, t: float) -> None:
        keypoints, descriptors = self._orb.detectAndCompute(_unshaded(grey), None)
        self.reference = _Reference(tuple(keypoints), descriptors, layout, t)
        self._orb_at = t

    def _rebase(self, grey: MatLike, layout: Floats, mean: Floats, sharp: Floats, var: Floats,
                contrast: float, t: float) -> None:  # fmt: skip
        """The camera has stayed in its new position: this view is normal now."""
        self._take_reference(grey, layout, t)
        self._mean, self._sharp, self._var, self.contrast = mean, sharp, var, contrast
        self._displaced, self._lost, self._shift, self._match = None, False, 0.0, 1.0
        self._moved.since = None
        self.rebases += 1

"""A camera's analytics configuration: its stream, zones with purposes and schedules, privacy
masks, and the detectors' thresholds. Given as the `settings` of a camera device whose driver is
`opencv` in the site file; coordinates are fractions of the frame (0-1, x right, y down)."""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.messages import CLIP_MAX_BYTES

Point = tuple[float, float]


class _Config(BaseModel):
    # Errors never repeat input values: a stream URL may carry the camera's password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ZonePurpose(StrEnum):
    RESTRICTED = "restricted"  # anyone inside while the zone is active is an intrusion
    LOITERING = "loitering"  # anyone staying longer than loiter_s
    CROWD = "crowd"  # more people than crowd_limit at once
    COUNTING_LINE = "counting_line"  # crossings each way, published as occupancy


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_DAYS = list(Weekday)


class Window(_Config):
    """When a zone is watched: from `start` to `end` on the given days (a window whose end is
    before its start runs past midnight into the next day)."""

    days: list[Weekday] = Field(default_factory=lambda: list(Weekday), min_length=1)
    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError(
                "a window from a time to the same time is empty; for all day, give no window"
            )
        return self

    def covers(self, when: datetime) -> bool:
        t, day = when.time(), _DAYS[when.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        yesterday = _DAYS[(when.weekday() - 1) % 7]
        return (day in self.days and t >= self.start) or (yesterday in self.days and t < self.end)


class Zone(_Config):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    purpose: ZonePurpose
    points: list[Point] = Field(
        min_length=2, max_length=64, description="a polygon; for a counting line, its two ends"
    )
    active: list[Window] = Field(
        default_factory=list, description="when the zone is watched; empty: always"
    )
    loiter_s: float = Field(default=30.0, gt=0, le=86_400, description="loitering: how long")
    crowd_limit: int = Field(default=10, ge=1, le=10_000, description="crowd: more than this")
    left_s: float | None = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="object left behind: a still, non-person object staying this long in the "
        "zone alerts (every polygon zone; null: not watched for objects)",
    )

    @field_validator("points")
    @classmethod
    def _inside_frame(cls, points: list[Point]) -> list[Point]:
        for x, y in points:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(f"point ({x}, {y}) is outside the frame: use fractions 0-1")
        return points

    @model_validator(mode="after")
    def _shape(self) -> Zone:
        if self.purpose is ZonePurpose.COUNTING_LINE and len(self.points) != 2:
            raise ValueError("a counting line has exactly two points")
        if self.purpose is not ZonePurpose.COUNTING_LINE and len(self.points) < 3:
            raise ValueError("a zone is a polygon of at least three points")
        return self

    def watched(self, when: datetime) -> bool:
        return not self.active or any(w.covers(when) for w in self.active)


class AlertTiming(_Config):
    """An alert's life: it starts once its condition has held `min_duration_s`, is updated at
    most every `update_every_s`, and ends once the condition has been gone `cooldown_s`."""

    min_duration_s: float = Field(default=1.0, ge=0, le=3600)
    cooldown_s: float = Field(default=10.0, ge=0, le=3600)
    update_every_s: float = Field(default=30.0, gt=0, le=3600)


class ClipSettings(_Config):
    """Each alert's video clip: the analysed frames (privacy-masked, at the analysis size and
    rate) from `pre_s` before its start to `post_s` after, as WebM (VP8)."""

    enabled: bool = Field(default=True, description="make a clip for every alert's start")
    pre_s: float = Field(default=5.0, ge=0, le=30, description="seconds before the alert's start")
    post_s: float = Field(default=5.0, ge=0, le=60, description="seconds after the alert's start")
    max_bytes: int = Field(
        default=500_000,
        ge=20_000,
        le=CLIP_MAX_BYTES,
        description="a clip larger than this is made smaller and coarser until it fits",
    )
    max_pending: int = Field(
        default=4,
        ge=1,
        le=16,
        description="clips being collected or encoded at once; an alert past that has none",
    )

    @model_validator(mode="after")
    def _length(self) -> ClipSettings:
        if self.pre_s + self.post_s <= 0:
            raise ValueError(
                "a clip needs pre_s or post_s above 0; to have none, set enabled: false"
            )
        return self


class Tuning(_Config):
    """Detector thresholds. The defaults suit a fixed camera at 640x360, 5 frames per second."""

    analysis_width: int = Field(
        default=320, ge=80, le=1920, description="motion is found at this width"
    )
    person_height: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="a standing person's height, as a share of the frame's, until the "
        "perspective is learned (or unless `calibration` sets it)",
    )
    min_area: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="smallest moving blob, as a share of a person's area at its row",
    )
    background_s: float = Field(
        default=1800.0, gt=1, description="what stays put about this long becomes background"
    )
    colour_motion: bool = Field(
        default=False,
        description="also find motion in colour (clothes of the ground's grey but another hue); "
        "experimental: see docs/vision.md",
    )
    covered_contrast: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="covered: the view's coarse structure spreads less than this share of its "
        "brightness (a dark IR scene that keeps its structure is not covered)",
    )
    blur_ratio: float = Field(
        default=0.35,
        gt=0,
        lt=1,
        description="defocus: the textured blocks' median sharpness (gradient energy over "
        "contrast) below this share of each block's usual value",
    )
    moved_shift: float = Field(
        default=0.03,
        gt=0,
        lt=1,
        description="moved: matched features displace the view by more than this share of its "
        "width",
    )
    moved_lost_share: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="moved: a textured reference view keeps fewer than this share of its usual "
        "feature matches (the camera looks at something else)",
    )
    tamper_confirm_s: float = Field(
        default=3.0,
        ge=0,
        le=600,
        description="a tampering condition is only suspected (zones still analysed) until it "
        "has held this long; then it is confirmed: alert, and zone analytics pause",
    )


class PersonHeight(_Config):
    """How tall a standing person looks with their feet on a given row."""

    row: float = Field(ge=0, le=1, description="the feet's row, as a share of the frame's height")
    height: float = Field(gt=0, le=1, description="the person's height, as a share of the frame's")


class Calibration(_Config):
    """The camera's perspective: how tall a person looks by where they stand. Without
    reference heights it is learned from the people tracked (`tuning.person_height` until then)."""

    person_heights: list[PersonHeight] = Field(
        default_factory=list,
        description="two reference heights, a near person (low in the frame) and a far one",
    )

    @field_validator("person_heights")
    @classmethod
    def _two_rows(cls, refs: list[PersonHeight]) -> list[PersonHeight]:
        if not refs:
            return refs
        if len(refs) != 2:
            raise ValueError(
                f"person_heights takes two reference heights (a near and a far person), "
                f"not {len(refs)}"
            )
        far, near = sorted(refs, key=lambda r: r.row)
        if near.row - far.row < 0.1:
            raise ValueError(
                f"the reference heights' rows {far.row:g} and {near.row:g} are too close: "
                "measure people at least 0.1 of the frame apart"
            )
        if near.height < far.height:
            raise ValueError(
                f"a person lower in the frame is nearer and looks taller, but row {near.row:g} "
                f"has height {near.height:g}, below row {far.row:g}'s {far.height:g}"
            )
        slope = (near.height - far.height) / (near.row - far.row)
        if near.height + slope * (1 - near.row) > 1.5:
            raise ValueError(
                "the reference heights make a person at the bottom of the frame taller than "
                "one and a half frames: check the rows and heights"
            )
        return [far, near]


class CameraSettings(_Config):
    """The `settings` of a camera device with the `opencv` driver."""

    source: str = Field(
        min_length=1, description="what OpenCV's VideoCapture opens: rtsp://, http://, a file"
    )
    fps: float = Field(default=5.0, gt=0, le=60, description="frames analysed per second")
    width: int = Field(default=640, ge=64, le=3840, description="frames are resized to this first")
    height: int = Field(default=360, ge=36, le=2160)
    timezone: str = Field(default="UTC", description="for zone schedules (IANA name)")
    zones: list[Zone] = Field(default_factory=list)
    privacy_masks: list[list[Point]] = Field(
        default_factory=list, description="polygons blanked before any analysis or snapshot"
    )
    alerts: AlertTiming = AlertTiming()
    tuning: Tuning = Tuning()
    calibration: Calibration = Calibration()
    occupancy_every_s: float = Field(
        default=10.0, gt=0, description="counting lines report this often"
    )
    status_every_s: float = Field(default=60.0, gt=0, description="camera.status heartbeat")
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    snapshot_width: int = Field(default=320, ge=64, le=1280)
    snapshot_quality: int = Field(default=70, ge=10, le=100)
    clips: ClipSettings = ClipSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("privacy_masks")
    @classmethod
    def _masks(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for mask in masks:
            if len(mask) < 3 or any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in mask):
                raise ValueError("a privacy mask is a polygon of 3+ points inside the frame (0-1)")
        return masks

    @model_validator(mode="after")
    def _names(self) -> CameraSettings:
        names = [z.name for z in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"zone names repeat: {names}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s is below reconnect_min_s")
        snapshot_height = round(self.snapshot_width * self.height / self.width)
        if not 16 <= snapshot_height <= 1080:
            raise ValueError(f"snapshots would be {snapshot_height} pixels high: keep it 16-1080")
        return self

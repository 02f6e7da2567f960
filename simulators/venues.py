"""What a simulated venue is like: its kind, size, opening hours and daily attendance curve."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as clock_time
from zoneinfo import ZoneInfo

# Share of capacity present, hour by hour (local time), by venue kind. Service venues peak in the
# late morning and mid-afternoon; 24-hour stations see a thin steady stream with an evening bump;
# estates' common areas fill in the evening; shelters stand nearly empty until an emergency.
_SERVICE = [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0.05,
    0.25,
    0.45,
    0.5,
    0.3,
    0.25,
    0.4,
    0.5,
    0.45,
    0.35,
    0.3,
    0.25,
    0.15,
    0,
    0,
    0,
]
_CURVES: dict[str, list[float]] = {
    "city_centre": _SERVICE,
    "cluster_centre": _SERVICE,
    "community_centre": _SERVICE,
    "grid_station": _SERVICE,
    "building_corner": _SERVICE,
    "self_service_station": [.05, .03, .02, .02, .02, .05, .1, .2, .3, .3, .3, .3, .35, .3, .3,
                             .3, .35, .4, .5, .55, .45, .3, .15, .08],
    "estate": [.1, .05, .05, .05, .05, .1, .2, .3, .2, .15, .15, .2, .25, .2, .15, .15, .2, .3,
               .4, .45, .4, .3, .2, .15],
    "shelter": [.02] * 24,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Venue:
    """One simulated venue and its edge node's credentials."""

    site: str
    node: str
    secret: str
    kind: str
    capacity: int
    open_24h: bool
    devices: list[tuple[str, str]] = field(default_factory=list)  # (device id, kind)
    opens: clock_time = clock_time(8, 30)
    closes: clock_time = clock_time(20, 30)
    timezone: str = "Asia/Shanghai"

    def local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.timezone))

    def is_open(self, when: datetime) -> bool:
        if self.open_24h:
            return True
        t = self.local(when).time()
        return self.opens <= t < self.closes

    def expected_share(self, when: datetime) -> float:
        """The share of capacity usually present at this moment (interpolated between hours)."""
        if not self.is_open(when):
            return 0.0
        curve = _CURVES.get(self.kind, _SERVICE)
        local = self.local(when)
        hour = local.hour + local.minute / 60
        low = curve[int(hour) % 24]
        high = curve[(int(hour) + 1) % 24]
        return low + (high - low) * (hour - int(hour))

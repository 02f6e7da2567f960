"""A venue as the rules and the casework see it: its kind, capacity, opening hours and grid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class VenueInfo:
    """What the rules need to know about a venue."""

    id: str
    kind: str
    capacity: int | None
    is_shelter: bool
    open_24h: bool
    opening_hours: dict[str, list[list[str]]]
    timezone: str
    grid_id: str
    path: str  # the grid's ltree path
    name: str = ""

    def is_open(self, when: datetime) -> bool:
        """Whether the venue is open at `when`, by its opening hours in its own time zone."""
        if self.open_24h:
            return True
        local = when.astimezone(ZoneInfo(self.timezone))
        now = local.strftime("%H:%M")
        return any(
            start <= now < end
            for start, end in self.opening_hours.get(_WEEKDAYS[local.weekday()], [])
        )

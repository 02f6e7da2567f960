"""The life of a camera alert: start once its condition held long enough, updates now and then,
end once the condition has been gone for a cool-down. One person walking through a restricted
zone is one alert (a start and an end), not one per frame."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from edge.vision.config import AlertTiming
from gateway.messages import AlertPhase


class _State(StrEnum):
    IDLE = "idle"
    PENDING = "pending"  # the condition holds, not yet for min_duration_s
    ACTIVE = "active"
    COOLING = "cooling"  # the condition is gone, not yet for cooldown_s


@dataclass(frozen=True, slots=True)
class Phase:
    alert_id: uuid.UUID
    phase: AlertPhase


class Lifecycle:
    def __init__(self, timing: AlertTiming) -> None:
        self.timing = timing
        self._state = _State.IDLE
        self._since = 0.0
        self._last_sent = 0.0
        self.alert_id: uuid.UUID | None = None

    def update(self, holds: bool, t: float) -> Phase | None:
        """Feed the condition at time `t`; the phase to publish, if any."""
        tm = self.timing
        match self._state:
            case _State.IDLE if holds:
                self._state, self._since = _State.PENDING, t
                return self.update(holds, t) if tm.min_duration_s == 0 else None
            case _State.PENDING if not holds:
                self._state = _State.IDLE
            case _State.PENDING if t - self._since >= tm.min_duration_s:
                self._state, self._last_sent, self.alert_id = _State.ACTIVE, t, uuid.uuid4()
                return Phase(self.alert_id, AlertPhase.START)
            case _State.ACTIVE if not holds:
                self._state, self._since = _State.COOLING, t
            case _State.ACTIVE if t - self._last_sent >= tm.update_every_s:
                self._last_sent = t
                assert self.alert_id is not None
                return Phase(self.alert_id, AlertPhase.UPDATE)
            case _State.COOLING if holds:
                self._state = _State.ACTIVE
            case _State.COOLING if t - self._since >= tm.cooldown_s:
                assert self.alert_id is not None
                ended, self.alert_id, self._state = self.alert_id, None, _State.IDLE
                return Phase(ended, AlertPhase.END)
        return None

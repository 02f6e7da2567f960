"""The device driver interface: what the agent needs from a door, counter, camera or speaker.

A driver reports what its device saw as readings (plain, site-side facts: a raw credential,
not its hash) through the `emit` callback it is given at start, from any thread. Door and
speaker drivers also execute commands; a command that cannot be carried out raises
CommandFailed. Real hardware adapters and the simulated devices implement the same classes.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gateway import messages as m


@dataclass(frozen=True, slots=True)
class Reading:
    """Something a device saw; `ts` is the device's own clock (the agent's when None)."""

    device: str
    ts: datetime | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class AccessSeen(Reading):
    granted: bool
    raw_credential: str  # hashed with the site secret before it leaves the agent
    direction: m.Direction = m.Direction.UNKNOWN
    reason: m.DenyReason | None = None


@dataclass(frozen=True, slots=True)
class ForcedSeen(Reading):
    pass


@dataclass(frozen=True, slots=True)
class HeldOpenSeen(Reading):
    open_s: float


@dataclass(frozen=True, slots=True)
class DoorStateSeen(Reading):
    open: bool
    locked: bool
    mode: m.DoorMode = m.DoorMode.NORMAL


@dataclass(frozen=True, slots=True)
class OccupancySeen(Reading):
    zone: str
    count: int
    entered: int
    exited: int


@dataclass(frozen=True, slots=True)
class CameraAlertSeen(Reading):
    alert_id: uuid.UUID
    phase: m.AlertPhase
    kind: m.CameraAlertKind
    score: float
    zone: str | None = None
    objects: int | None = None
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class CameraSnapshotSeen(Reading):
    """The picture of an alert; its message goes out with `message_id`, which the alert's
    `snapshot` names."""

    message_id: uuid.UUID
    alert_id: uuid.UUID
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class CameraClipSeen(Reading):
    """One part of an alert's video clip (edge.vision.clips cuts a clip into parts); `ts` is
    when the clip was made."""

    clip_id: uuid.UUID
    alert_id: uuid.UUID
    part: int
    parts: int
    width: int
    height: int
    fps: float
    start: datetime
    end: datetime
    size: int
    sha256: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CameraStatusSeen(Reading):
    online: bool
    fps: float
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SpeakerStatusSeen(Reading):
    online: bool
    volume: int
    playing: bool
    clip: str | None = None
    fault: m.SpeakerFault | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealthSeen(Reading):
    """What the driver finds of the device itself (edge.health keeps it)."""

    online: bool
    condition: m.DeviceCondition
    detail: str | None = None
    faults: dict[str, int] = field(default_factory=dict)
    clock_offset_s: float | None = None


Emit = Callable[[Reading], bool | None]  # False: the agent has stopped and did not keep it


class CommandFailed(Exception):
    """The device could not carry out a command; the message says why."""


class Device(ABC):
    """One device at the venue."""

    kind: m.DeviceKind

    def __init__(self, device_id: str, model: str | None = None) -> None:
        self.id = device_id
        self.model = model

    def info(self) -> m.DeviceInfo:
        """How the device appears in the node's birth inventory."""
        return m.DeviceInfo(id=self.id, kind=self.kind, model=self.model)

    @abstractmethod
    def start(self, emit: Emit) -> None:
        """Begin reporting readings through `emit`."""

    @abstractmethod
    def stop(self) -> None:
        """Stop reporting; release the hardware."""


class DoorController(Device):
    kind = m.DeviceKind.DOOR

    @abstractmethod
    def unlock(self, duration_s: int | None) -> None:
        """Unlock, relocking by itself after `duration_s` (None: until `lock`)."""

    @abstractmethod
    def lock(self) -> None:
        """Lock now and return to normal access control."""

    @abstractmethod
    def lockdown(self, active: bool) -> None:
        """Refuse every credential until released (or release)."""


class PeopleCounter(Device):
    kind = m.DeviceKind.COUNTER


class CameraAlertSource(Device):
    kind = m.DeviceKind.CAMERA


class Speaker(Device):
    kind = m.DeviceKind.SPEAKER

    @abstractmethod
    def play(
        self,
        *,
        text: str | None,
        clip: str | None,
        priority: m.SpeakerPriority,
        repeat: int,
        language: m.SpeechLanguage = m.SpeechLanguage.ZH_CN,
    ) -> None:
        """Start playing a text (spoken in `language`) or a stored clip; a higher priority
        interrupts."""

    @abstractmethod
    def stop_playing(self) -> None:
        """Stop whatever is playing."""

    @abstractmethod
    def set_volume(self, level: int) -> None:
        """Set the volume, 0-100."""

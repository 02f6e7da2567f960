"""Message schemas of the wire contract: strict, frozen pydantic models, one discriminated union.

Every message an edge node publishes carries the contract version `v`, an `id` made at the edge
(a UUID: storing the same id twice stores it once), the device's own timestamp `ts` and the
node's sequence number `seq`. Commands flow down from the platform and carry an id made by the
platform, the time they were issued and a deadline instead of a sequence number.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, TypedDict

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from gateway.topics import ID_PATTERN

CONTRACT_VERSION: Literal[1] = 1

DeviceId = Annotated[str, Field(pattern=ID_PATTERN, description="device id, unique platform-wide")]
ZoneName = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    """Base of every wire model: unknown fields are an error and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MessageType(StrEnum):
    DOOR_ACCESS = "door.access"
    DOOR_FORCED = "door.forced"
    DOOR_HELD_OPEN = "door.held_open"
    DOOR_STATE = "door.state"
    OCCUPANCY = "occupancy"
    CAMERA_ALERT = "camera.alert"
    CAMERA_SNAPSHOT = "camera.snapshot"
    CAMERA_STATUS = "camera.status"
    SPEAKER_STATUS = "speaker.status"
    DEVICE_HEALTH = "device.health"
    NODE_BIRTH = "node.birth"
    NODE_DEATH = "node.death"
    COMMAND = "command"
    COMMAND_RESULT = "command.result"
    RECEIPT = "receipt"
    NODE_CONFIG = "node.config"
    CONFIG_RESULT = "config.result"


class DeviceKind(StrEnum):
    DOOR = "door"
    COUNTER = "counter"
    CAMERA = "camera"
    SPEAKER = "speaker"


class AccessResult(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"


class DenyReason(StrEnum):
    UNKNOWN_CREDENTIAL = "unknown_credential"
    EXPIRED = "expired"
    OUTSIDE_SCHEDULE = "outside_schedule"
    BLOCKED = "blocked"
    LOCKDOWN = "lockdown"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
    UNKNOWN = "unknown"


class DoorMode(StrEnum):
    NORMAL = "normal"
    UNLOCKED = "unlocked"
    LOCKDOWN = "lockdown"


class AlertPhase(StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


class CameraAlertKind(StrEnum):
    INTRUSION = "intrusion"
    LOITERING = "loitering"
    CROWD = "crowd"
    TAMPER_COVERED = "tamper_covered"
    TAMPER_BLURRED = "tamper_blurred"
    TAMPER_MOVED = "tamper_moved"
    OBJECT_LEFT = "object_left"


class SpeakerFault(StrEnum):
    AMPLIFIER = "amplifier"
    LINE_OPEN = "line_open"
    LINE_SHORT = "line_short"
    OVERHEAT = "overheat"
    POWER = "power"


class DeviceCondition(StrEnum):
    """How a device's driver finds the device (`device.health`)."""

    OK = "ok"
    UNREACHABLE = "unreachable"  # no connection, no answer, or heartbeats missed
    AUTH_FAILED = "auth_failed"  # refused our account (a password changed on the device)
    SLOW = "slow"  # answers, but slower than the driver's timeout
    BAD_INPUT = "bad_input"  # sends what the driver cannot read (dropped and counted)
    CLOCK_SKEW = "clock_skew"  # its clock is far off; the agent's time is used instead


class CommandStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ConfigStatus(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"


class SpeakerPriority(StrEnum):
    ROUTINE = "routine"
    NOTICE = "notice"
    EMERGENCY = "emergency"


class SpeechLanguage(StrEnum):
    """The language of a spoken text (BCP 47), for speakers that speak it at the edge."""

    ZH_CN = "zh-CN"
    EN = "en"


def now() -> datetime:
    """The current time as the contract wants it: aware, in UTC."""
    return datetime.now(UTC)


class EnvelopeFields(TypedDict):
    v: Literal[1]
    id: uuid.UUID
    ts: datetime
    seq: int


def envelope(
    seq: int, *, id: uuid.UUID | None = None, ts: datetime | None = None
) -> EnvelopeFields:
    """The envelope of a new edge message: contract version, a fresh id, now, and `seq`."""
    return {"v": CONTRACT_VERSION, "id": id or uuid.uuid4(), "ts": ts or now(), "seq": seq}


class Envelope(Strict):
    """Fields every edge message carries."""

    # No defaults on the wire: a message without its own id or time could not be deduplicated
    # or placed in time, so the edge must set both (see `envelope`).
    v: Literal[1] = Field(description="contract version")
    id: uuid.UUID = Field(description="made at the edge; the platform stores an id once")
    ts: AwareDatetime = Field(description="device timestamp, with zone")
    seq: int = Field(
        ge=0,
        description="the node's data sequence number, +1 per data message; a birth or death"
        " carries the latest one, so the platform can tell whether anything is missing",
    )


class DeviceMessage(Envelope):
    device: DeviceId


class DoorAccess(DeviceMessage):
    """A card, code or face presented at a door; the credential is hashed at the site."""

    type: Literal[MessageType.DOOR_ACCESS] = MessageType.DOOR_ACCESS
    result: AccessResult
    credential: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 of the raw credential with the site key"
    )
    direction: Direction = Direction.UNKNOWN
    reason: DenyReason | None = Field(default=None, description="why access was denied")

    @model_validator(mode="after")
    def _reason_only_when_denied(self) -> DoorAccess:
        if self.result is AccessResult.GRANTED and self.reason is not None:
            raise ValueError("a granted access has no deny reason")
        return self


class DoorForced(DeviceMessage):
    """The door opened without a valid access or an exit request."""

    type: Literal[MessageType.DOOR_FORCED] = MessageType.DOOR_FORCED


class DoorHeldOpen(DeviceMessage):
    """The door has stayed open past the controller's own limit."""

    type: Literal[MessageType.DOOR_HELD_OPEN] = MessageType.DOOR_HELD_OPEN
    open_s: float = Field(gt=0, le=86_400 * 7, description="seconds the door has been open")


class DoorState(DeviceMessage):
    """The door's current physical and lock state."""

    type: Literal[MessageType.DOOR_STATE] = MessageType.DOOR_STATE
    open: bool
    locked: bool
    mode: DoorMode = DoorMode.NORMAL


class Occupancy(DeviceMessage):
    """A people-counter reading for one zone: who is inside, and the flow since the last one."""

    type: Literal[MessageType.OCCUPANCY] = MessageType.OCCUPANCY
    zone: ZoneName
    count: int = Field(ge=0, le=1_000_000)
    entered: int = Field(ge=0, le=1_000_000)
    exited: int = Field(ge=0, le=1_000_000)


class CameraAlert(DeviceMessage):
    """One phase (start, update, end) of one camera alert."""

    type: Literal[MessageType.CAMERA_ALERT] = MessageType.CAMERA_ALERT
    alert_id: uuid.UUID = Field(description="the same for start, updates and end of one alert")
    phase: AlertPhase
    kind: CameraAlertKind
    zone: ZoneName | None = None
    score: float = Field(ge=0.0, le=1.0, description="detector confidence")
    objects: int | None = Field(default=None, ge=0, description="objects seen, for crowding")
    snapshot: str | None = Field(
        default=None, max_length=512, description="the id of its camera.snapshot message, if any"
    )


# A snapshot is a small JPEG (320 pixels wide is plenty to recognise a scene); the limit keeps
# the message well under the ingest's payload limit once base64-encoded.
SNAPSHOT_MAX_BYTES = 40_000


class CameraSnapshot(DeviceMessage):
    """The picture of a camera alert: the scene with the zone and the objects drawn. The alert's
    `snapshot` field holds this message's id."""

    type: Literal[MessageType.CAMERA_SNAPSHOT] = MessageType.CAMERA_SNAPSHOT
    alert_id: uuid.UUID = Field(description="the alert it shows")
    width: int = Field(ge=16, le=1920)
    height: int = Field(ge=16, le=1080)
    jpeg: str = Field(
        max_length=(SNAPSHOT_MAX_BYTES + 2) // 3 * 4, description="the JPEG image, base64"
    )

    @field_validator("jpeg")
    @classmethod
    def _a_jpeg(cls, value: str) -> str:
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"jpeg is not base64: {exc}") from None
        if not data.startswith(b"\xff\xd8\xff"):
            raise ValueError("jpeg is not a JPEG image")
        return value

    def image(self) -> bytes:
        return base64.b64decode(self.jpeg)


class CameraStatus(DeviceMessage):
    """Whether the agent is reading and analysing a camera's stream: sent when that changes and
    every minute while it does not, so the platform knows a quiet camera from a dead one."""

    type: Literal[MessageType.CAMERA_STATUS] = MessageType.CAMERA_STATUS
    online: bool
    fps: float = Field(ge=0, le=1000, description="frames analysed per second lately")
    detail: str | None = Field(default=None, max_length=200, description="why it is offline")


class SpeakerStatus(DeviceMessage):
    """A broadcast speaker's state."""

    type: Literal[MessageType.SPEAKER_STATUS] = MessageType.SPEAKER_STATUS
    online: bool
    volume: int = Field(ge=0, le=100)
    playing: bool
    clip: str | None = Field(default=None, max_length=128)
    fault: SpeakerFault | None = None


_FAULT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class DeviceHealth(DeviceMessage):
    """What a device's driver finds of the device itself: reachable, accepting our account,
    answering in time, sending what we can read, keeping time. Sent when that changes (and by
    some drivers every few minutes), so the platform shows why a device is silent or suspect."""

    type: Literal[MessageType.DEVICE_HEALTH] = MessageType.DEVICE_HEALTH
    online: bool = Field(description="false: the device cannot be reached or refuses us")
    condition: DeviceCondition
    detail: str | None = Field(default=None, max_length=200, description="what the driver saw")
    faults: dict[str, int] = Field(
        default_factory=dict,
        max_length=32,
        description="problems counted since the agent started, by name (e.g. malformed_xml)",
    )
    clock_offset_s: float | None = Field(
        default=None, ge=-1e9, le=1e9, description="the device's clock minus the agent's"
    )

    @field_validator("faults")
    @classmethod
    def _fault_counts(cls, faults: dict[str, int]) -> dict[str, int]:
        for name, count in faults.items():
            if not _FAULT_NAME.match(name) or count < 0:
                raise ValueError(
                    f"fault {name[:40]!r}: {count} is not a fault name (a-z, 0-9, _) with a count"
                )
        return faults


class DeviceInfo(Strict):
    """One device in a node's inventory."""

    id: DeviceId
    kind: DeviceKind
    model: str | None = Field(default=None, max_length=64)


class NodeBirth(Envelope):
    """Published retained on every connect: the node is up, with this birth sequence."""

    type: Literal[MessageType.NODE_BIRTH] = MessageType.NODE_BIRTH
    bdseq: int = Field(ge=0, description="birth/death sequence, +1 on every connect")
    devices: tuple[DeviceInfo, ...] = Field(max_length=10_000)
    software: str = Field(default="", max_length=64)
    config_version: int | None = Field(
        default=None,
        ge=0,
        description="the configuration version the node runs (0: its site file's own devices);"
        " absent from nodes older than configuration push",
    )


class NodeDeath(Envelope):
    """The node's last will: stale unless `bdseq` matches the current birth."""

    type: Literal[MessageType.NODE_DEATH] = MessageType.NODE_DEATH
    bdseq: int = Field(ge=0)


class DoorUnlock(Strict):
    action: Literal["door.unlock"] = "door.unlock"
    duration_s: int | None = Field(
        default=10,
        ge=1,
        le=86_400,
        description="relocks after this many seconds; null: stays unlocked until a lock command",
    )


class DoorLock(Strict):
    action: Literal["door.lock"] = "door.lock"


class DoorLockdown(Strict):
    action: Literal["door.lockdown"] = "door.lockdown"
    active: bool = Field(default=True, description="false releases the lockdown")


class SpeakerPlay(Strict):
    action: Literal["speaker.play"] = "speaker.play"
    text: str | None = Field(default=None, min_length=1, max_length=2000)
    clip: str | None = Field(default=None, min_length=1, max_length=128)
    priority: SpeakerPriority = SpeakerPriority.ROUTINE
    repeat: int = Field(default=1, ge=1, le=20)
    # Absent (null) means zh-CN, so a command without it reads the same to an older agent.
    language: SpeechLanguage | None = None

    @model_validator(mode="after")
    def _text_or_clip(self) -> SpeakerPlay:
        if (self.text is None) == (self.clip is None):
            raise ValueError("play needs exactly one of text or clip")
        return self


class SpeakerStop(Strict):
    action: Literal["speaker.stop"] = "speaker.stop"


class SpeakerVolume(Strict):
    action: Literal["speaker.volume"] = "speaker.volume"
    level: int = Field(ge=0, le=100)


CommandAction = Annotated[
    DoorUnlock | DoorLock | DoorLockdown | SpeakerPlay | SpeakerStop | SpeakerVolume,
    Field(discriminator="action"),
]


class Command(Strict):
    """A command flowing down to one device; the platform tracks its result by `id`."""

    type: Literal[MessageType.COMMAND] = MessageType.COMMAND
    v: Literal[1] = Field(description="contract version")
    id: uuid.UUID = Field(description="made by the platform; a node executes an id once")
    ts: AwareDatetime = Field(description="when it was issued")
    device: DeviceId
    deadline: AwareDatetime = Field(
        description="not executed after this instant; at most 300 s after `ts`"
    )
    action: CommandAction
    sig: str | None = Field(
        default=None,
        max_length=200,
        description="the platform's Ed25519 signature (base64) of the command's JSON object"
        " without `sig`, keys sorted, no spaces, UTF-8; the edge refuses a command without a"
        " valid one",
    )


class CommandResult(DeviceMessage):
    """What became of a command, reported by the node that received it."""

    type: Literal[MessageType.COMMAND_RESULT] = MessageType.COMMAND_RESULT
    command_id: uuid.UUID
    status: CommandStatus
    detail: str | None = Field(default=None, max_length=500)


# Receipts list sequence numbers as inclusive ranges: a batch holds long runs of one node's messages.
SeqRange = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


class Receipt(Strict):
    """Sent by the platform to a node after each commit: these of its messages (by `seq`) are
    stored for good, or recorded as rejected, so the node may forget them. Until then a node keeps
    every message in its outbox, whatever the broker answered: a broker's PUBACK only says it has
    the message, not that it will survive a crash."""

    type: Literal[MessageType.RECEIPT] = MessageType.RECEIPT
    v: Literal[1] = Field(description="contract version")
    ts: AwareDatetime = Field(description="when the messages were committed")
    seqs: tuple[SeqRange, ...] = Field(
        min_length=1, max_length=10_000, description="inclusive [first, last] ranges of seq"
    )

    @field_validator("seqs")
    @classmethod
    def _ordered_ranges(cls, value: tuple[SeqRange, ...]) -> tuple[SeqRange, ...]:
        if any(first > last for first, last in value):
            raise ValueError("a range's first seq is above its last")
        return value


def seq_ranges(seqs: Iterable[int]) -> tuple[SeqRange, ...]:
    """Sequence numbers as sorted, merged inclusive ranges."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return tuple((a, b) for a, b in out)


class ConfigDevice(Strict):
    """One device of a node's configuration: what its driver needs."""

    id: DeviceId
    kind: DeviceKind
    driver: str = Field(min_length=1, max_length=32, description="the edge driver that reads it")
    model: str | None = Field(default=None, max_length=64)
    zone: str | None = Field(default=None, max_length=64)
    settings: dict[str, JsonValue] = Field(
        default_factory=dict, description="the driver's settings, checked by the driver"
    )


class NodeConfig(Strict):
    """A node's devices, published retained by the platform and signed like a command; the node
    applies a version newer than the one it runs without a restart, and answers it."""

    type: Literal[MessageType.NODE_CONFIG] = MessageType.NODE_CONFIG
    v: Literal[1] = Field(description="contract version")
    ts: AwareDatetime = Field(description="when it was issued")
    site: str = Field(pattern=ID_PATTERN, description="the node's venue")
    node: str = Field(pattern=ID_PATTERN, description="the node it is for; another node refuses it")
    version: int = Field(ge=1, description="the configuration version; +1 on every change")
    devices: tuple[ConfigDevice, ...] = Field(max_length=10_000)
    sig: str | None = Field(
        default=None,
        max_length=200,
        description="the platform's Ed25519 signature, made as a command's; the node refuses a"
        " configuration without a valid one",
    )

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, value: tuple[ConfigDevice, ...]) -> tuple[ConfigDevice, ...]:
        ids = [d.id for d in value]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"device ids appear twice: {doubled}")
        return value


class ConfigResult(Envelope):
    """The node's answer to a configuration: applied, or refused with the reason (the old one
    keeps running). Like a birth it carries the node's latest `seq` and is not a data message."""

    type: Literal[MessageType.CONFIG_RESULT] = MessageType.CONFIG_RESULT
    version: int = Field(ge=0, description="the configuration version answered")
    status: ConfigStatus
    reason: str | None = Field(default=None, max_length=2000, description="why it was refused")

    @model_validator(mode="after")
    def _reason_when_refused(self) -> ConfigResult:
        if (self.status is ConfigStatus.REFUSED) != (self.reason is not None):
            raise ValueError("a refused configuration has a reason, an applied one none")
        return self


DeviceEvent = (
    DoorAccess
    | DoorForced
    | DoorHeldOpen
    | DoorState
    | Occupancy
    | CameraAlert
    | CameraSnapshot
    | CameraStatus
    | SpeakerStatus
    | DeviceHealth
)
EdgeMessage = DeviceEvent | NodeBirth | NodeDeath | CommandResult | ConfigResult

Message = Annotated[
    EdgeMessage | Command | Receipt | NodeConfig,
    Field(discriminator="type"),
]

DEVICE_EVENT_TYPES: frozenset[MessageType] = frozenset(
    MessageType(t.model_fields["type"].default) for t in DeviceEvent.__args__
)

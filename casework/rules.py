"""Rules: what turns device messages into incidents, and what clears them.

`evaluate` looks at one newly stored message and returns signals: raise an incident, clear one,
start or cancel a timer for a rule with a duration. `casework.incidents` applies them in the same
transaction as the message, so an incident exists exactly when its message is stored.

Each rule has built-in settings (`DEFAULTS`), which the `rule_overrides` table changes per venue
kind or per venue.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from casework.titles import Title
from casework.venues import VenueInfo
from gateway import messages as m
from gateway.codec import Inbound

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]


class Severity(StrEnum):
    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"


class Rule(StrEnum):
    DOOR_FORCED = "door_forced"
    DOOR_HELD_OPEN = "door_held_open"
    DENIED_BURST = "denied_burst"
    OVER_CAPACITY = "over_capacity"
    FAR_OVER_CAPACITY = "far_over_capacity"
    INSIDE_WHEN_CLOSED = "inside_when_closed"
    CAMERA_INTRUSION = "camera_intrusion"
    CAMERA_LOITERING = "camera_loitering"
    CAMERA_CROWD = "camera_crowd"
    CAMERA_TAMPER = "camera_tamper"
    CAMERA_OBJECT_LEFT = "camera_object_left"
    SPEAKER_FAULT = "speaker_fault"
    DEVICE_OFFLINE = "device_offline"
    NODE_OFFLINE = "node_offline"
    COMMAND_UNDELIVERED = "command_undelivered"
    EMERGENCY_PROPOSED = "emergency_proposed"


class RuleSettings(BaseModel):
    """One rule's settings; fields a rule does not use are ignored by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="off: the rule raises nothing")
    severity: Severity = Field(description="colour of the incidents it raises")
    after_hours_severity: Severity | None = Field(
        default=None, description="colour when the venue is closed (camera intrusion)"
    )
    for_s: float = Field(default=0, ge=0, description="how long the condition must last")
    limit: float = Field(default=0, ge=0, description="the rule's threshold (seconds, a count)")
    window_s: float = Field(default=0, ge=0, description="time window for counted events")
    factor: float = Field(default=1.0, gt=0, description="multiple of capacity")
    emergency_level: Literal["grid", "community", "subdistrict", "district", "city"] | None = Field(
        default=None,
        description="raising this rule proposes emergency mode for the venue's ancestor at"
        " this level (grid, community, subdistrict, district, city); a person confirms it",
    )
    emergency_acts_alone: bool = Field(
        default=False,
        description="with emergency_level: start the emergency with no person confirming (an"
        " admin's choice; audited as the rule acting alone)",
    )


DEFAULTS: dict[Rule, RuleSettings] = {
    Rule.DOOR_FORCED: RuleSettings(severity=Severity.RED),
    Rule.DOOR_HELD_OPEN: RuleSettings(severity=Severity.YELLOW, limit=60),
    Rule.DENIED_BURST: RuleSettings(severity=Severity.YELLOW, limit=5, window_s=120),
    Rule.OVER_CAPACITY: RuleSettings(severity=Severity.YELLOW, for_s=120),
    Rule.FAR_OVER_CAPACITY: RuleSettings(severity=Severity.RED, factor=1.5),
    Rule.INSIDE_WHEN_CLOSED: RuleSettings(severity=Severity.YELLOW, for_s=900),
    Rule.CAMERA_INTRUSION: RuleSettings(
        severity=Severity.YELLOW, after_hours_severity=Severity.RED
    ),
    Rule.CAMERA_LOITERING: RuleSettings(severity=Severity.GREEN),
    Rule.CAMERA_CROWD: RuleSettings(severity=Severity.YELLOW),
    Rule.CAMERA_TAMPER: RuleSettings(severity=Severity.YELLOW),
    Rule.CAMERA_OBJECT_LEFT: RuleSettings(severity=Severity.YELLOW),
    Rule.SPEAKER_FAULT: RuleSettings(severity=Severity.YELLOW),
    Rule.DEVICE_OFFLINE: RuleSettings(severity=Severity.YELLOW, for_s=120, limit=600),
    Rule.NODE_OFFLINE: RuleSettings(severity=Severity.RED, for_s=120),
    Rule.COMMAND_UNDELIVERED: RuleSettings(severity=Severity.RED),
    Rule.EMERGENCY_PROPOSED: RuleSettings(severity=Severity.RED),
}

# Messages that say how a device is now, each replacing the one before: only a device's newest
# of a kind (by its timestamp, then the node's sequence) speaks of the present, so an older one
# arriving late is stored but neither raises nor clears anything. Events (a forced door, a camera
# alert) happened when they happened and are judged whenever they arrive.
STATES = frozenset(
    {m.MessageType.OCCUPANCY, m.MessageType.DOOR_STATE, m.MessageType.SPEAKER_STATUS,
     m.MessageType.CAMERA_STATUS}
)  # fmt: skip

CLEAR_BELOW = 0.9  # share of capacity a count must fall to for over-capacity incidents to clear

_CAMERA_RULES = {
    m.CameraAlertKind.INTRUSION: Rule.CAMERA_INTRUSION,
    m.CameraAlertKind.LOITERING: Rule.CAMERA_LOITERING,
    m.CameraAlertKind.CROWD: Rule.CAMERA_CROWD,
    m.CameraAlertKind.TAMPER_COVERED: Rule.CAMERA_TAMPER,
    m.CameraAlertKind.TAMPER_BLURRED: Rule.CAMERA_TAMPER,
    m.CameraAlertKind.TAMPER_MOVED: Rule.CAMERA_TAMPER,
    m.CameraAlertKind.OBJECT_LEFT: Rule.CAMERA_OBJECT_LEFT,
}
# Camera alerts that end by themselves also end their incident; an intrusion needs a person, and
# so does an object left behind (someone picking it up is no all-clear: what was it?).
_RESOLVED_BY_END = {Rule.CAMERA_LOITERING, Rule.CAMERA_CROWD, Rule.CAMERA_TAMPER}


def key(rule: Rule, subject: str) -> str:
    """The dedup key: one open incident per rule and subject (a device or a node)."""
    return f"{rule.value}:{subject}"


@dataclass(frozen=True, slots=True)
class Raise:
    """Open an incident, or count a repeat on the open one with the same key."""

    rule: Rule
    subject: str
    severity: Severity
    venue: VenueInfo
    ts: datetime
    device: str | None = None
    node: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    emergency_level: str | None = None
    emergency_alone: bool = False  # the rule may start the emergency without a person

    @property
    def key(self) -> str:
        return key(self.rule, self.subject)

    @property
    def title(self) -> Title:
        """What happened, as a code (the rule) with the names it shows; the device's name is
        added where the incident is written (casework.incidents), from the registry's table."""
        params: dict[str, Any] = {"venue": self.venue.name or self.venue.id,
                                  "venue_id": self.venue.id}  # fmt: skip
        if self.device is not None:
            params["device_id"] = self.device
        if self.node is not None:
            params["node_id"] = self.node
        if self.rule is Rule.EMERGENCY_PROPOSED:  # the area it is proposed for
            params["area_id"] = self.detail.get("area")
            params["area"] = self.detail.get("area_name") or self.detail.get("area")
        return Title(self.rule.value, params)


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition is over: resolve the open incident with this key, if any, unless that
    incident's latest evidence is newer than `ts` (a late message must not rewrite the present).
    `ts` None: the platform's own judgement, now."""

    key: str
    reason: str
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Raise `then` at `due` unless cancelled first; an existing timer keeps its earlier time."""

    key: str
    due: datetime
    then: Raise


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop a rule's timer, unless what started it is newer than `ts` (None: whatever)."""

    key: str
    ts: datetime | None = None


Signal = Raise | Clear | StartTimer | CancelTimer


class RuleBook:
    """Settings per rule, venue kind and venue; re-read from `rule_overrides` periodically."""

    def __init__(self, refresh_s: float = 30.0) -> None:
        self._refresh_s = refresh_s
        self._loaded_at = float("-inf")
        self._by_kind: dict[tuple[str, Rule], RuleSettings] = {}
        self._by_venue: dict[tuple[str, Rule], RuleSettings] = {}

    def refresh_if_due(self, conn: Conn) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        by_kind: dict[tuple[str, Rule], RuleSettings] = {}
        by_venue: dict[tuple[str, Rule], RuleSettings] = {}
        rows = conn.execute(
            "SELECT venue_kind::text, venue_id, rule, settings FROM rule_overrides"
        ).fetchall()
        for kind, venue, rule_name, settings in rows:
            try:
                rule = Rule(str(rule_name))
                merged = DEFAULTS[rule].model_dump() | dict(settings)  # type: ignore[call-overload]
                value = RuleSettings.model_validate(merged)
            except ValueError as exc:  # a bad row must not stop the ingest: keep the defaults
                log.error("rule override ignored rule=%s venue_kind=%s venue=%s: %s",
                          rule_name, kind, venue, exc)  # fmt: skip
                continue
            if venue is not None:
                by_venue[(str(venue), rule)] = value
            else:
                by_kind[(str(kind), rule)] = value
        self._by_kind, self._by_venue = by_kind, by_venue
        self._loaded_at = time.monotonic()

    def smallest(self, rule: Rule, field: str) -> float:
        """The smallest value of a setting across the defaults and every override of a rule."""
        values = [DEFAULTS[rule], *(v for (_, r), v in self._by_kind.items() if r is rule),
                  *(v for (_, r), v in self._by_venue.items() if r is rule)]  # fmt: skip
        return min(float(getattr(v, field)) for v in values)

    def settings(self, rule: Rule, venue: VenueInfo) -> RuleSettings:
        return (
            self._by_venue.get((venue.id, rule))
            or self._by_kind.get((venue.kind, rule))
            or DEFAULTS[rule]
        )


_STATUS = m.SpeakerStatus | m.CameraStatus | m.DeviceHealth  # messages that may say "down"


# Messages that say nothing of the device's state now: a command result comes from the node, for
# a device that may not answer at all; a snapshot or a clip part is a by-product of an alert,
# made or sent after it (a clip is encoded after the stream may have dropped), so it must never
# cancel the offline timer of a camera that was just cut.
_NO_SIGN = m.CommandResult | m.CameraSnapshot | m.CameraClip


def sign_of_life(msg: m.DeviceMessage) -> bool | None:
    """What a device's message says of the device: alive (True), down by its own report
    (False), or nothing (None, see _NO_SIGN)."""
    if isinstance(msg, _NO_SIGN):
        return None
    return not (isinstance(msg, _STATUS) and not msg.online)


def evaluate(
    inbound: Inbound,
    venue: VenueInfo,
    book: RuleBook,
    denied: Mapping[uuid.UUID, int] | None = None,
) -> list[Signal]:
    """The signals one newly stored message gives rise to. `denied`: for each denied swipe, the
    door's denied swipes within the burst rule's window (`denied_counts`, for a batch at once)."""
    msg = inbound.message
    node = inbound.topic.node

    def rule_on(rule: Rule) -> RuleSettings | None:
        s = book.settings(rule, venue)
        return s if s.enabled else None

    def raise_(rule: Rule, subject: str, s: RuleSettings, **kw: Any) -> Raise:
        severity = kw.pop("severity", s.severity)
        return Raise(rule, subject, severity, venue, msg.ts, node=node,
                     emergency_level=s.emergency_level, emergency_alone=s.emergency_acts_alone,
                     **kw)  # fmt: skip

    out: list[Signal] = []
    life = sign_of_life(msg) if isinstance(msg, m.DeviceMessage) else None
    if isinstance(msg, m.DeviceMessage) and life:
        out.append(CancelTimer(key(Rule.DEVICE_OFFLINE, msg.device), msg.ts))
        out.append(Clear(key(Rule.DEVICE_OFFLINE, msg.device), "the device reported again", msg.ts))
    match msg:
        case m.DoorForced():
            if s := rule_on(Rule.DOOR_FORCED):
                out.append(raise_(Rule.DOOR_FORCED, msg.device, s, device=msg.device))
        case m.DoorHeldOpen():
            s = rule_on(Rule.DOOR_HELD_OPEN)
            if s and msg.open_s >= s.limit:
                out.append(raise_(Rule.DOOR_HELD_OPEN, msg.device, s, device=msg.device,
                                  detail={"open_s": msg.open_s}))  # fmt: skip
        case m.DoorState(open=False):
            out.append(Clear(key(Rule.DOOR_HELD_OPEN, msg.device), "the door closed", msg.ts))
        case m.DoorAccess(result=m.AccessResult.DENIED):
            s = rule_on(Rule.DENIED_BURST)
            if s and (denied or {}).get(msg.id, 0) >= s.limit:
                out.append(raise_(Rule.DENIED_BURST, msg.device, s, device=msg.device,
                                  detail={"within_s": s.window_s, "at_least": s.limit}))  # fmt: skip
        case m.Occupancy():
            out += _occupancy(msg, venue, rule_on, raise_)
        case m.CameraAlert():
            rule = _CAMERA_RULES[msg.kind]
            subject = f"{msg.device}:{msg.kind.value}"
            if msg.phase is m.AlertPhase.START and (s := rule_on(rule)):
                severity = s.severity
                if s.after_hours_severity is not None and not venue.is_open(msg.ts):
                    severity = s.after_hours_severity
                detail = {"kind": msg.kind.value, "zone": msg.zone, "score": msg.score,
                          "alert_id": str(msg.alert_id), "snapshot": msg.snapshot}  # fmt: skip
                out.append(raise_(rule, subject, s, device=msg.device, severity=severity,
                                  detail=detail))  # fmt: skip
            elif msg.phase is m.AlertPhase.END and rule in _RESOLVED_BY_END:
                out.append(Clear(key(rule, subject), "the camera alert ended", msg.ts))
        case m.SpeakerStatus():
            if msg.fault is not None:
                if s := rule_on(Rule.SPEAKER_FAULT):
                    out.append(raise_(Rule.SPEAKER_FAULT, msg.device, s, device=msg.device,
                                      detail={"fault": msg.fault.value}))  # fmt: skip
            else:
                out.append(Clear(key(Rule.SPEAKER_FAULT, msg.device), "the fault cleared", msg.ts))
    if isinstance(msg, _STATUS) and life is False and (s := rule_on(Rule.DEVICE_OFFLINE)):
        detail = {}
        if isinstance(msg, m.CameraStatus | m.DeviceHealth) and msg.detail:
            detail["detail"] = msg.detail
        if isinstance(msg, m.DeviceHealth):
            detail["condition"] = msg.condition.value
        then = raise_(Rule.DEVICE_OFFLINE, msg.device, s, device=msg.device, detail=detail)
        out.append(StartTimer(then.key, msg.ts + timedelta(seconds=s.for_s), then))
    return out


def _occupancy(msg: m.Occupancy, venue: VenueInfo, rule_on: Any, raise_: Any) -> list[Signal]:
    out: list[Signal] = []
    detail = {"count": msg.count, "capacity": venue.capacity, "zone": msg.zone}

    def lasting(rule: Rule, holds: bool, cleared: str, over: bool | None = None) -> list[Signal]:
        """A condition that must last `for_s`: start its timer, or cancel and clear it. With
        `over` given, the condition is over only when `over` is true (a dead band in between)."""
        k = key(rule, msg.device)
        if not holds:
            if over is None or over:
                return [CancelTimer(k, msg.ts), Clear(k, cleared, msg.ts)]
            return []
        if s := rule_on(rule):
            then = raise_(rule, msg.device, s, device=msg.device, detail=detail)
            return [StartTimer(k, msg.ts + timedelta(seconds=s.for_s), then)]
        return []

    if venue.capacity:
        far = rule_on(Rule.FAR_OVER_CAPACITY)
        if far and msg.count >= venue.capacity * far.factor:
            out.append(raise_(Rule.FAR_OVER_CAPACITY, msg.device, far, device=msg.device,
                              detail=detail))  # fmt: skip
        # Hysteresis: over capacity clears only below CLEAR_BELOW of it, so a count hovering at
        # the limit does not open and close an incident (and a task) on every reading.
        back = msg.count <= venue.capacity * CLEAR_BELOW
        out += lasting(Rule.OVER_CAPACITY, msg.count > venue.capacity, "back within capacity",
                       over=back)  # fmt: skip
        if back:
            out.append(
                Clear(key(Rule.FAR_OVER_CAPACITY, msg.device), "back within capacity", msg.ts)
            )
    closed = msg.count > 0 and not venue.is_open(msg.ts)
    out += lasting(Rule.INSIDE_WHEN_CLOSED, closed, "nobody inside, or the venue is open")
    return out


def denied_counts(
    conn: Conn, swipes: Sequence[tuple[m.DoorAccess, VenueInfo]], book: RuleBook
) -> dict[uuid.UUID, int]:
    """For each denied swipe (whose venue has the burst rule on): the denied swipes of its door
    within the rule's window up to it, stored ones included, in one query for the batch."""
    asked: list[tuple[uuid.UUID, str, datetime, float]] = []
    for msg, venue in swipes:
        s = book.settings(Rule.DENIED_BURST, venue)
        if msg.result is m.AccessResult.DENIED and s.enabled:
            asked.append((msg.id, msg.device, msg.ts, s.window_s))
    if not asked:
        return {}
    rows = conn.execute(
        """SELECT u.id, (SELECT count(*) FROM door_events e
                         WHERE e.device_id = u.device AND e.type = 'door.access'
                           AND e.result = 'denied' AND e.ts > u.ts - make_interval(secs => u.w)
                           AND e.ts <= u.ts)
           FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::float8[])
                AS u(id, device, ts, w)""",
        ([a[0] for a in asked], [a[1] for a in asked], [a[2] for a in asked],
         [a[3] for a in asked]),
    ).fetchall()  # fmt: skip
    return {r[0]: int(str(r[1])) for r in rows if isinstance(r[0], uuid.UUID)}


def node_signals(
    inbound: Inbound, venue: VenueInfo, book: RuleBook, *, died: bool, now: datetime
) -> list[Signal]:
    """A node's birth clears its offline incident; its (current) death starts the offline timer.

    The timer counts from `now`, not from the death's timestamp: a will is written when the node
    connects, so its timestamp is the start of the connection, not the moment it ended."""
    node = inbound.topic.node
    offline_key = key(Rule.NODE_OFFLINE, node)
    if not died:
        return [CancelTimer(offline_key), Clear(offline_key, "the node is back")]
    s = book.settings(Rule.NODE_OFFLINE, venue)
    if not s.enabled:
        return []
    then = Raise(Rule.NODE_OFFLINE, node, s.severity, venue, now, node=node,
                 emergency_level=s.emergency_level,
                 emergency_alone=s.emergency_acts_alone)  # fmt: skip
    return [StartTimer(offline_key, now + timedelta(seconds=s.for_s), then)]

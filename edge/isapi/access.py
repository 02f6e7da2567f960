"""The `isapi` door driver: one door of a Hikvision access controller (docs/drivers/isapi.md).

The controller reports on its alert stream (`/ISAPI/Event/notification/alertStream`) a JSON
`AccessControllerEvent` for each thing its door sees, named by a major and a minor event code
(Hikvision's published access-control event codes: major 5 "event", 3 "operation", 1 "alarm",
2 "exception"). `MAPPING` turns them into readings: a card, fingerprint or face granted or denied
(`AccessSeen` with the raw card number, which the agent hashes with the site key before it
leaves), the door opened and closed, opened abnormally (forced), open too long (held open), the
lock released and closed, and the remain-open and remain-closed states beginning and ending.
The door's state when the stream (re)connects, and every `report_every_s`, comes from
`/ISAPI/AccessControl/AcsWorkStatus?format=json`; after a reconnect, what the stream missed comes
from the controller's event log (`POST /ISAPI/AccessControl/AcsEvent?format=json`, from the last
serial number seen), each event taken once. The stream itself is read by the shared
`edge.isapi.reader.EventReader`.

Our door commands go to `PUT /ISAPI/AccessControl/RemoteControl/door/{N}` (see `COMMANDS`), and
each is answered with the controller's own ResponseStatus: a refusal fails the command with the
controller's words. An event that cannot be read or has no mapping is counted, logged and shown
as the door's health (edge.health); the stream reads on. Nothing else stops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge import drivers as d
from edge.isapi.reader import EventReader
from edge.isapi.session import IsapiRefused, IsapiSettings, IsapiUnavailable
from edge.isapi.stream import Event
from gateway import messages as m

log = logging.getLogger(__name__)

DRIVER = "isapi"
ALERT_STREAM = "/ISAPI/Event/notification/alertStream"
WORK_STATUS = "/ISAPI/AccessControl/AcsWorkStatus?format=json"
EVENT_LOG = "/ISAPI/AccessControl/AcsEvent?format=json"
_LOG_PAGE = 30  # events per page of the log search (controllers allow up to 30 or so)
_LOG_PAGES = 20  # at most this many pages after a reconnect (600 events)
_SEEN = 4096  # serial numbers remembered, so an event from the log and the stream counts once
ACS_EVENT = "AccessControllerEvent"
_XMLNS = "http://www.isapi.org/ver20/XMLSchema"

# Major event types (Hikvision access-control event codes).
MAJOR_ALARM, MAJOR_EXCEPTION, MAJOR_OPERATION, MAJOR_EVENT = 1, 2, 3, 5


class Kind(StrEnum):
    """What an event code means for the door."""

    GRANTED = "granted"
    DENIED = "denied"
    OPENED = "opened"
    CLOSED = "closed"
    FORCED = "forced"
    HELD_OPEN = "held_open"
    UNLOCKED = "unlocked"
    LOCKED = "locked"
    REMAIN_OPEN = "remain_open"
    REMAIN_OPEN_END = "remain_open_end"
    REMAIN_CLOSED = "remain_closed"
    REMAIN_CLOSED_END = "remain_closed_end"
    IGNORED = "ignored"  # known, and nothing for the platform (e.g. our own remote commands)


@dataclass(frozen=True, slots=True)
class Code:
    name: str  # Hikvision's name of the minor code
    kind: Kind
    reason: m.DenyReason | None = None


_E, _O = MAJOR_EVENT, MAJOR_OPERATION
_UNKNOWN, _SCHEDULE = m.DenyReason.UNKNOWN_CREDENTIAL, m.DenyReason.OUTSIDE_SCHEDULE
# (major, minor) -> meaning. Documented table: docs/drivers/isapi.md, "Access controller".
MAPPING: dict[tuple[int, int], Code] = {
    (_E, 0x01): Code("LEGAL_CARD_PASS", Kind.GRANTED),
    (_E, 0x02): Code("CARD_AND_PSW_PASS", Kind.GRANTED),
    (_E, 0x03): Code("CARD_AND_PSW_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x06): Code("CARD_NO_RIGHT", Kind.DENIED, m.DenyReason.BLOCKED),
    (_E, 0x07): Code("CARD_INVALID_PERIOD", Kind.DENIED, _SCHEDULE),
    (_E, 0x08): Code("CARD_OUT_OF_DATE", Kind.DENIED, m.DenyReason.EXPIRED),
    (_E, 0x09): Code("INVALID_CARD", Kind.DENIED, _UNKNOWN),
    (_E, 0x0A): Code("ANTI_SNEAK_FAIL", Kind.DENIED, m.DenyReason.BLOCKED),
    (_E, 0x10): Code("MULTI_VERIFY_SUCCESS", Kind.GRANTED),
    (_E, 0x13): Code("ALWAYS_OPEN_BEGIN", Kind.REMAIN_OPEN),
    (_E, 0x14): Code("ALWAYS_OPEN_END", Kind.REMAIN_OPEN_END),
    (_E, 0x15): Code("LOCK_OPEN", Kind.UNLOCKED),
    (_E, 0x16): Code("LOCK_CLOSE", Kind.LOCKED),
    (_E, 0x17): Code("DOOR_BUTTON_PRESS", Kind.IGNORED),
    (_E, 0x18): Code("DOOR_BUTTON_RELEASE", Kind.IGNORED),
    (_E, 0x19): Code("DOOR_OPEN_NORMAL", Kind.OPENED),
    (_E, 0x1A): Code("DOOR_CLOSE_NORMAL", Kind.CLOSED),
    (_E, 0x1B): Code("DOOR_OPEN_ABNORMAL", Kind.FORCED),
    (_E, 0x1C): Code("DOOR_OPEN_TIMEOUT", Kind.HELD_OPEN),
    (_E, 0x1D): Code("ALARMOUT_ON", Kind.IGNORED),
    (_E, 0x1E): Code("ALARMOUT_OFF", Kind.IGNORED),
    (_E, 0x1F): Code("ALWAYS_CLOSE_BEGIN", Kind.REMAIN_CLOSED),
    (_E, 0x20): Code("ALWAYS_CLOSE_END", Kind.REMAIN_CLOSED_END),
    (_E, 0x25): Code("DOORBELL_RINGING", Kind.IGNORED),
    (_E, 0x26): Code("FINGERPRINT_COMPARE_PASS", Kind.GRANTED),
    (_E, 0x27): Code("FINGERPRINT_COMPARE_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x28): Code("CARD_FINGERPRINT_VERIFY_PASS", Kind.GRANTED),
    (_E, 0x29): Code("CARD_FINGERPRINT_VERIFY_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x3C): Code("FACE_AND_CARD_VERIFY_PASS", Kind.GRANTED),
    (_E, 0x3D): Code("FACE_AND_CARD_VERIFY_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x4B): Code("FACE_VERIFY_PASS", Kind.GRANTED),
    (_E, 0x4C): Code("FACE_VERIFY_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x4D): Code("EMPLOYEENO_AND_FACE_VERIFY_PASS", Kind.GRANTED),
    (_E, 0x4E): Code("EMPLOYEENO_AND_FACE_VERIFY_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x50): Code("FACE_RECOGNIZE_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x65): Code("EMPLOYEENO_AND_PW_PASS", Kind.GRANTED),
    (_E, 0x66): Code("EMPLOYEENO_AND_PW_FAIL", Kind.DENIED, _UNKNOWN),
    (_E, 0x71): Code("CERTIFICATE_BLACK_LIST", Kind.DENIED, m.DenyReason.BLOCKED),
    (_E, 0x83): Code("HEART_BEAT", Kind.IGNORED),
    (_E, 0x97): Code("PASSWORD_MISMATCH", Kind.DENIED, _UNKNOWN),
    (_E, 0x98): Code("EMPLOYEE_NO_NOT_EXIST", Kind.DENIED, _UNKNOWN),
    (_E, 0x99): Code("COMBINED_VERIFY_PASS", Kind.GRANTED),
    # Operations the controller logs for remote commands (ours among them): the state they
    # change arrives as its own event (ALWAYS_OPEN_BEGIN…) and from AcsWorkStatus.
    (_O, 0x400): Code("REMOTE_OPEN_DOOR", Kind.IGNORED),
    (_O, 0x401): Code("REMOTE_CLOSE_DOOR", Kind.IGNORED),
    (_O, 0x402): Code("REMOTE_ALWAYS_OPEN", Kind.IGNORED),
    (_O, 0x403): Code("REMOTE_ALWAYS_CLOSE", Kind.IGNORED),
}


class Command(StrEnum):
    """`<cmd>` of `RemoteControlDoor`."""

    OPEN = "open"
    CLOSE = "close"  # back to controlled: locked, normal access control
    ALWAYS_OPEN = "alwaysOpen"  # remain open ("free"): unlocked until told otherwise
    ALWAYS_CLOSE = "alwaysClose"  # remain closed ("forbidden"): every credential refused


# Our commands and what goes to the controller (docs/drivers/isapi.md).
COMMANDS = {
    "unlock": Command.ALWAYS_OPEN,  # with a duration: `close` is sent when it runs out
    "lock": Command.CLOSE,
    "lockdown": Command.ALWAYS_CLOSE,
    "release": Command.CLOSE,
}

# AcsWorkStatus.doorStatus: 1 sleep, 2 remain open (free), 3 remain closed (forbidden), 4 normal
_MODES = {1: m.DoorMode.NORMAL, 2: m.DoorMode.UNLOCKED, 3: m.DoorMode.LOCKDOWN,
          4: m.DoorMode.NORMAL}  # fmt: skip


def remote_control_body(cmd: Command) -> bytes:
    """The XML body of `PUT /ISAPI/AccessControl/RemoteControl/door/{N}`."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<RemoteControlDoor version="2.0"'
        f' xmlns="{_XMLNS}"><cmd>{cmd.value}</cmd></RemoteControlDoor>'
    ).encode()


class IsapiDoorSettings(IsapiSettings):
    """The `settings` of a door with the `isapi` driver: the controller's account (the shared
    ISAPI settings) and which of its doors this is."""

    door: int = Field(default=1, ge=1, le=256, description="the door's number on the controller")
    entry_readers: list[int] = Field(
        default=[1], max_length=16, description="card reader numbers on the way in (odd: in)"
    )
    exit_readers: list[int] = Field(
        default=[2], max_length=16, description="card reader numbers on the way out"
    )
    held_open_s: float = Field(
        default=60.0, gt=0, le=86_400,
        description="the controller's own open-door timeout (it reports held open after it)",
    )  # fmt: skip
    report_every_s: float = Field(
        default=60.0, ge=1, le=3600, description="seconds between door states read from the device"
    )

    @field_validator("exit_readers")
    @classmethod
    def _apart(cls, readers: list[int], info: Any) -> list[int]:
        both = set(readers) & set(info.data.get("entry_readers") or [])
        if both:
            raise ValueError(f"reader {min(both)} is an entry reader too; give each one way")
        return readers


class _Acs(BaseModel):
    """The fields of an AccessControllerEvent this driver reads (JSON numbers, or XML text)."""

    model_config = ConfigDict(extra="ignore")

    majorEventType: int = Field(ge=0)
    subEventType: int = Field(ge=0)
    cardNo: str | None = Field(default=None, max_length=64)
    employeeNoString: str | None = Field(default=None, max_length=64)
    cardReaderNo: int | None = None
    doorNo: int | None = None
    serialNo: int | None = None


class Unreadable(Exception):
    """An event or status that cannot be read; `fault` names it."""

    def __init__(self, fault: str, detail: str) -> None:
        super().__init__(detail)
        self.fault = fault


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """One AccessControllerEvent, read: what it means and what came with it."""

    code: Code
    door: int | None
    credential: str | None
    reader: int | None
    time: datetime | None  # the device's dateTime
    serial: int | None = None  # the controller's event number (its log's order)


def read_event(event: Event) -> DoorEvent | None:
    """The door event in an alert-stream event; None for a heartbeat. Unreadable for an event
    that is not an access-controller event, lacks its codes, or has codes with no mapping."""
    if event.type.lower() == "heartbeat" or (
        event.type.lower() == "videoloss" and event.state == "inactive"
    ):
        return None  # Hikvision's keep-alives on the stream
    if event.type != ACS_EVENT:
        raise Unreadable("unknown_event", f"an event of type {event.type!r} (not a door event)")
    body = event.data.get(ACS_EVENT)
    if not isinstance(body, dict):
        raise Unreadable("malformed_event", f"an {ACS_EVENT} without its {ACS_EVENT} object")
    try:
        acs = _Acs.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unreadable(
            "malformed_event", f"an {ACS_EVENT} with a bad {where}: {first['msg']}"
        ) from None
    return _door_event(
        acs.majorEventType, acs.subEventType, card=acs.cardNo, employee=acs.employeeNoString,
        reader=acs.cardReaderNo, door=acs.doorNo, at=event.time, serial=acs.serialNo,
    )  # fmt: skip


def _door_event(
    major: int, minor: int, *, card: str | None, employee: str | None, reader: int | None,
    door: int | None, at: datetime | None, serial: int | None,
) -> DoorEvent:  # fmt: skip
    code = MAPPING.get((major, minor))
    if code is None:
        raise Unreadable(
            "unknown_event",
            f"an {ACS_EVENT} with major {major} minor {minor} (0x{minor:x}) this driver does"
            " not know",
        )
    credential = None
    if card:
        credential = card.strip()
    elif employee:
        credential = f"employee:{employee.strip()}"  # a face or fingerprint
    return DoorEvent(code, door, credential, reader, at, serial)


class _Logged(BaseModel):
    """One event of the controller's log (`AcsEvent.InfoList`)."""

    model_config = ConfigDict(extra="ignore")

    major: int = Field(ge=0)
    minor: int = Field(ge=0)
    time: datetime | None = None
    cardNo: str | None = Field(default=None, max_length=64)
    employeeNoString: str | None = Field(default=None, max_length=64)
    cardReaderNo: int | None = None
    doorNo: int | None = None
    serialNo: int = Field(ge=0)


class _LogPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    responseStatusStrg: str = "NO MATCH"
    InfoList: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)


def event_search(search_id: str, position: int, after_serial: int, page: int) -> dict[str, Any]:
    """The body of `POST /ISAPI/AccessControl/AcsEvent?format=json`: every event (major and
    minor 0: all) from serial number `after_serial + 1` on, one page from `position`."""
    return {"AcsEventCond": {"searchID": search_id, "searchResultPosition": position,
                             "maxResults": page, "major": 0, "minor": 0,
                             "beginSerialNo": after_serial + 1, "timeReverseOrder": False}}  # fmt: skip


def read_work_status(data: Any, door: int) -> tuple[bool, bool, m.DoorMode]:
    """(open, locked, mode) of door `door` from an AcsWorkStatus answer (JSON)."""
    status = data.get("AcsWorkStatus") if isinstance(data, dict) else None
    if not isinstance(status, dict):
        raise Unreadable("malformed_json", "an AcsWorkStatus answer without AcsWorkStatus")

    def value(field: str) -> int:
        values = status.get(field)
        if (
            not isinstance(values, list)
            or len(values) < door
            or not isinstance(values[door - 1], int)
        ):
            raise Unreadable(
                "malformed_json", f"AcsWorkStatus.{field} has no value for door {door}"
            )
        return int(values[door - 1])

    magnetic, lock, mode = value("magneticStatus"), value("doorLockStatus"), value("doorStatus")
    if magnetic not in (0, 1):
        raise Unreadable("door_contact_fault", f"door {door}'s contact reports alarm {magnetic}"
                         " (2 short circuit, 3 open circuit, 4 exception): check its wiring")  # fmt: skip
    if lock not in (0, 1):
        raise Unreadable("lock_fault", f"door {door}'s lock reports alarm {lock}"
                         " (2 short circuit, 3 open circuit, 4 exception): check its wiring")  # fmt: skip
    return magnetic == 1, lock == 0, _MODES.get(mode, m.DoorMode.NORMAL)


class IsapiDoor(EventReader, d.DoorController):
    """One door of a Hikvision access controller, over ISAPI (the alert stream is read by the
    shared EventReader; the door's state and the event log by a thread of its own)."""

    settings: IsapiDoorSettings

    def __init__(self, device_id: str, settings: IsapiDoorSettings, model: str | None = None):
        d.DoorController.__init__(self, device_id, model=model or "hikvision-acs")
        self.settings = settings
        self.setup(settings)
        self.is_open: bool | None = None  # None until first known
        self.locked = True
        self.mode = m.DoorMode.NORMAL
        self._lock = threading.RLock()  # the door's state: the stream, the poller, commands
        self._open_since: float | None = None
        self._relock_at: float | None = None
        self._poll_now = threading.Event()
        self._last_poll = float("-inf")
        self._due = True  # read the state at the next chance (start, reconnect, failed read)
        self._where = f"access controller {settings.address} door {settings.door}"
        self._opened_once = False
        self._catch_up = False  # after a reconnect: fetch from the log what the stream missed
        self._last_serial: int | None = None
        self._seen: deque[tuple[int, str]] = deque(maxlen=_SEEN)
        self._seen_set: set[tuple[int, str]] = set()

    # --- life -----------------------------------------------------------------------------------

    def start(self, emit: d.Emit) -> None:
        EventReader.start(self, emit)
        self.spawn(self._poll_loop, "isapi-door")

    def stop(self) -> None:
        self._stop.set()
        self._poll_now.set()
        EventReader.stop(self)

    # --- the alert stream (EventReader calls these) ---------------------------------------------

    def connected(self) -> None:
        """The stream (re)connected: read the door's state now, and after a reconnect fetch the
        events the controller logged meanwhile (the stream does not resend them)."""
        if self._opened_once:
            self._catch_up = True
        self._opened_once = True
        self.read_state()

    def on_event(self, event: Event, ts: datetime | None) -> None:
        """One decoded event of the stream, `ts` its checked time (None: the clock is off)."""
        try:
            door_event = read_event(event)
        except Unreadable as exc:
            self._unreadable(exc.fault, str(exc))
            return
        if door_event is not None:
            self._take_event(door_event, ts)

    def _unreadable(self, fault: str, detail: str) -> None:
        self.health.problem(m.DeviceCondition.BAD_INPUT, fault,
                            f"{self._where}: {detail}; the event was skipped", online=True)  # fmt: skip

    def _take_event(self, event: DoorEvent, ts: datetime | None, *, logged: bool = False) -> None:
        if event.door is not None and event.door != self.settings.door:
            return  # another door of this controller (a device entry of its own)
        if not self._first_time(event, logged):
            return  # already had from the log (or the stream)
        self._apply(event, ts)

    def _logged_time(self, at: datetime | None) -> datetime | None:
        """A logged event's time: its own (it may be minutes old), unless the device's clock is
        known to be off or the time is ahead of the agent's (then the agent's time)."""
        if at is None or self.health.condition is m.DeviceCondition.CLOCK_SKEW:
            return None
        if at.tzinfo is not None and at > datetime.now(UTC) + timedelta(seconds=1):
            return self.health.device_time(at)  # reported if far ahead; kept if just ahead
        return at

    def _first_time(self, event: DoorEvent, logged: bool) -> bool:
        """Not seen before. An event is its serial number and time: a controller that restarts
        numbers from 1 again, at other times."""
        if event.serial is None:
            return True
        key = (event.serial, event.time.isoformat() if event.time else "")
        with self._lock:
            if key in self._seen_set:
                return False
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(key)
            self._seen_set.add(key)
            # The stream's latest is where the log search starts (after a restart, lower).
            if not logged or self._last_serial is None or event.serial > self._last_serial:
                self._last_serial = event.serial
            return True

    def _apply(self, ev: DoorEvent, ts: datetime | None) -> None:
        k = ev.code.kind
        with self._lock:
            before = self._state()
            if k in (Kind.GRANTED, Kind.DENIED):
                granted = k is Kind.GRANTED
                reason = None if granted else ev.code.reason
                if not granted and self.mode is m.DoorMode.LOCKDOWN:
                    reason = m.DenyReason.LOCKDOWN
                self.send(d.AccessSeen(self.id, granted=granted,
                                        raw_credential=ev.credential or "unidentified",
                                        direction=self._direction(ev.reader), reason=reason,
                                        ts=ts))  # fmt: skip
            elif k is Kind.OPENED:
                self._opened()
            elif k is Kind.CLOSED:
                self.is_open, self._open_since = False, None
            elif k is Kind.FORCED:
                log.warning("door forced device=%s (%s)", self.id, self._where)
                self.send(d.ForcedSeen(self.id, ts=ts))
                self._opened()
            elif k is Kind.HELD_OPEN:
                since = self._open_since
                open_s = self.settings.held_open_s
                if since is not None:
                    open_s = max(open_s, time.monotonic() - since)
                self.is_open = True
                self.send(d.HeldOpenSeen(self.id, open_s=round(open_s, 1), ts=ts))
            elif k is Kind.UNLOCKED:
                self.locked = False
            elif k is Kind.LOCKED:
                self.locked = True
            elif k is Kind.REMAIN_OPEN:
                self.locked, self.mode = False, m.DoorMode.UNLOCKED
            elif k is Kind.REMAIN_CLOSED:
                self.locked, self.mode = True, m.DoorMode.LOCKDOWN
            elif k in (Kind.REMAIN_OPEN_END, Kind.REMAIN_CLOSED_END):
                self.locked, self.mode = True, m.DoorMode.NORMAL
            if self._state() != before and self.is_open is not None:
                self._report(ts)
        self.health.ok()

    def _opened(self) -> None:
        if not self.is_open:
            self._open_since = time.monotonic()
        self.is_open = True

    def _direction(self, reader: int | None) -> m.Direction:
        if reader in self.settings.entry_readers:
            return m.Direction.IN
        if reader in self.settings.exit_readers:
            return m.Direction.OUT
        return m.Direction.UNKNOWN

    # --- the door's state from the device -------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._poll_now.wait(self._until_next())
            self._poll_now.clear()
            try:
                self._poll_once()
            except Exception:  # a bug here must not end the door's state (nor a stop race)
                if self._stop.is_set():
                    return  # the session was closed under a request: stopping
                log.exception("isapi door poll failed device=%s", self.id)
                self._stop.wait(1.0)

    def _poll_once(self) -> None:
        if self._stop.is_set():
            return
        self._relock_if_due()
        if self._stop.is_set():
            return
        if self._catch_up:
            self._read_log()
        if self._last_poll + self.settings.report_every_s <= time.monotonic() or self._due:
            self._read_state()

    def _until_next(self) -> float:
        now = time.monotonic()
        wait = self._last_poll + self.settings.report_every_s - now
        if self._relock_at is not None:
            wait = min(wait, self._relock_at - now)
        return max(0.05, wait)

    def read_state(self) -> None:
        """Read the door's state from the device now, and report it."""
        self._due = True
        self._poll_now.set()

    def _read_state(self) -> None:
        self._last_poll = time.monotonic()
        try:
            answer = self.session.request("GET", WORK_STATUS)
            state = read_work_status(_json(answer.content), self.settings.door)
        except IsapiUnavailable:
            self._due = True  # the session counted and reported it; read again after connect
            return
        except Unreadable as exc:
            self._due = False
            self.health.problem(m.DeviceCondition.BAD_INPUT, exc.fault,
                                f"{self._where}: {exc}", online=True)  # fmt: skip
            return
        self._due = False
        with self._lock:
            is_open, self.locked, self.mode = state
            if is_open and not self.is_open:
                self._open_since = time.monotonic()
            elif not is_open:
                self._open_since = None
            self.is_open = is_open
            self._report(None)

    def _read_log(self) -> None:
        """Fetch from the controller's event log the events after the last one seen (by serial
        number), page by page, and take each as if it came on the stream."""
        self._catch_up = False
        after = self._last_serial
        if after is None:
            return  # nothing seen yet: the state read at connect is all there is
        search, position, taken = uuid.uuid4().hex, 0, 0
        for _ in range(_LOG_PAGES):
            try:
                answer = self.session.request(
                    "POST", EVENT_LOG, json=event_search(search, position, after, _LOG_PAGE)
                )
                page = _LogPage.model_validate(_json(answer.content).get("AcsEvent") or {})
            except IsapiRefused as exc:
                log.info("event log not read device=%s: %s", self.id, exc)
                return  # a controller without the log search: the state read is all there is
            except IsapiUnavailable:
                self._catch_up = True  # reported; again after the next connect
                return
            except (Unreadable, ValidationError, AttributeError) as exc:
                self._unreadable(
                    "malformed_json", f"an event log answer that cannot be read: {exc}"
                )
                return
            for info in page.InfoList:
                try:
                    got = _Logged.model_validate(info)
                    if got.serialNo <= after:
                        continue  # firmware that ignores beginSerialNo answers from the start
                    event = _door_event(got.major, got.minor, card=got.cardNo,
                                        employee=got.employeeNoString, reader=got.cardReaderNo,
                                        door=got.doorNo, at=got.time, serial=got.serialNo)  # fmt: skip
                except ValidationError as exc:
                    self._unreadable("malformed_event", f"a logged event that cannot be read: "
                                     f"{exc.errors()[0]['msg']}")  # fmt: skip
                    continue
                except Unreadable as exc:
                    self._unreadable(exc.fault, f"in the event log: {exc}")
                    continue
                self._take_event(event, self._logged_time(event.time), logged=True)
                taken += 1
            position += len(page.InfoList)
            if page.responseStatusStrg != "MORE" or not page.InfoList:
                break
        if taken:
            log.info("event log read after a reconnect device=%s events=%d (each taken once)",
                     self.id, taken)  # fmt: skip

    def _state(self) -> tuple[bool | None, bool, m.DoorMode]:
        return self.is_open, self.locked, self.mode

    def _report(self, ts: datetime | None) -> None:
        self.send(d.DoorStateSeen(self.id, open=bool(self.is_open), locked=self.locked,
                                   mode=self.mode, ts=ts))  # fmt: skip

    # --- commands (the agent's command thread) --------------------------------------------------

    def _remote(self, cmd: Command) -> None:
        """Send one RemoteControlDoor command; CommandFailed with the controller's words."""
        path = f"/ISAPI/AccessControl/RemoteControl/door/{self.settings.door}"
        try:
            self.session.request("PUT", path, content=remote_control_body(cmd))
        except IsapiRefused as exc:
            log.warning("door command refused device=%s cmd=%s: %s", self.id, cmd.value, exc)
            raise d.CommandFailed(f"{self._where} refused {cmd.value}: {exc}") from None
        except IsapiUnavailable as exc:
            raise d.CommandFailed(f"{self._where}: {cmd.value} failed: {exc}") from None

    def _command(self, cmd: Command, *, locked: bool, mode: m.DoorMode) -> None:
        self._remote(cmd)
        with self._lock:
            # The controller's own event for it may have come first (and been reported).
            before = self._state()
            self.locked, self.mode = locked, mode
            if self.is_open is not None and self._state() != before:
                self._report(None)

    def _relock_if_due(self) -> None:
        at = self._relock_at
        if at is None or time.monotonic() < at:
            return
        try:
            self._remote(Command.CLOSE)
        except d.CommandFailed as exc:
            log.warning("relock failed device=%s (tried again): %s", self.id, exc)
            self._relock_at = time.monotonic() + min(5.0, self.settings.backoff_max_s)
            return
        self._relock_at = None
        with self._lock:
            self.locked, self.mode = True, m.DoorMode.NORMAL
            if self.is_open is not None:
                self._report(None)

    def unlock(self, duration_s: int | None) -> None:
        self._command(COMMANDS["unlock"], locked=False, mode=m.DoorMode.UNLOCKED)
        self._relock_at = None if duration_s is None else time.monotonic() + duration_s
        self._poll_now.set()

    def lock(self) -> None:
        self._relock_at = None
        self._command(COMMANDS["lock"], locked=True, mode=m.DoorMode.NORMAL)

    def lockdown(self, active: bool) -> None:
        self._relock_at = None
        if active:
            self._command(COMMANDS["lockdown"], locked=True, mode=m.DoorMode.LOCKDOWN)
        else:
            self._command(COMMANDS["release"], locked=True, mode=m.DoorMode.NORMAL)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unreadable("malformed_json", f"an answer that is no JSON: {exc}") from None

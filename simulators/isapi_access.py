"""A Hikvision access controller over ISAPI, wired to a behavioural door (SimDoor).

Written from Hikvision's published ISAPI access-control documents, not from our driver: what the
door model does becomes `AccessControllerEvent` JSON parts on the alert stream (major 5 event
codes: LEGAL_CARD_PASS 0x01, INVALID_CARD 0x09, CARD_OUT_OF_DATE 0x08, CARD_INVALID_PERIOD 0x07,
CARD_NO_RIGHT 0x06, DOOR_OPEN_NORMAL 0x19, DOOR_CLOSE_NORMAL 0x1a, DOOR_OPEN_ABNORMAL 0x1b,
DOOR_OPEN_TIMEOUT 0x1c, ALWAYS_OPEN_BEGIN/END 0x13/0x14, ALWAYS_CLOSE_BEGIN/END 0x1f/0x20;
major 3 operation codes REMOTE_OPEN_DOOR 0x400… for each remote command), the door's state is
`GET /ISAPI/AccessControl/AcsWorkStatus?format=json`, and `PUT
/ISAPI/AccessControl/RemoteControl/door/N` with a `RemoteControlDoor` body (`open`, `close`,
`alwaysOpen`, `alwaysClose`) moves the simulated door and is answered with a `ResponseStatus`
(statusCode 1 OK; 3 Device Error with the model's words when the lock is jammed; 4 Invalid
Operation or 5/6 Invalid XML Format/Content for a bad request). Every event is kept in the
controller's log, searched by `POST /ISAPI/AccessControl/AcsEvent?format=json` (`AcsEventCond`:
major/minor, serial numbers, times, paged at most 30 a page). The HTTP server, digest
authentication, the alert stream and the fault switches are the shared ISAPI server's
(simulators/isapi_http.py). The door does nothing by itself: scenarios and tests drive it.
"""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from edge import drivers as d
from gateway import messages as m
from simulators.devices import SimDoor
from simulators.engine import Engine, SimClock
from simulators.isapi_http import JSON, IsapiServer, Reply, Request, isapi_time, response_status
from simulators.venues import Venue

XMLNS = "http://www.isapi.org/ver20/XMLSchema"
WORK_STATUS = "/ISAPI/AccessControl/AcsWorkStatus"
EVENT_LOG = "/ISAPI/AccessControl/AcsEvent"
MAX_RESULTS = 30  # the most events one page of the log search gives
REMOTE_CONTROL = "/ISAPI/AccessControl/RemoteControl/door/{n}"
OPEN_DURATION_S = 5  # the door's own "open duration" for a plain `open`

# Event (major 5) minor codes by what the model did.
GRANTED = 0x01
DENIED = {
    m.DenyReason.UNKNOWN_CREDENTIAL: 0x09,  # INVALID_CARD: no such card
    m.DenyReason.EXPIRED: 0x08,  # CARD_OUT_OF_DATE
    m.DenyReason.OUTSIDE_SCHEDULE: 0x07,  # CARD_INVALID_PERIOD
    m.DenyReason.BLOCKED: 0x06,  # CARD_NO_RIGHT
    m.DenyReason.LOCKDOWN: 0x06,  # remain closed: the card has no right now
}
ALWAYS_OPEN_BEGIN, ALWAYS_OPEN_END = 0x13, 0x14
LOCK_OPEN, LOCK_CLOSE = 0x15, 0x16
DOOR_OPEN_NORMAL, DOOR_CLOSE_NORMAL = 0x19, 0x1A
DOOR_OPEN_ABNORMAL, DOOR_OPEN_TIMEOUT = 0x1B, 0x1C
ALWAYS_CLOSE_BEGIN, ALWAYS_CLOSE_END = 0x1F, 0x20
# Operation (major 3) minor codes for remote commands.
REMOTE = {"open": 0x400, "close": 0x401, "alwaysOpen": 0x402, "alwaysClose": 0x403}


class _QuietDoor(SimDoor):
    """A SimDoor without spontaneous swipes, forced or held doors: only what it is told."""

    def plan(self, now: object) -> None:
        pass


def refusal(url: str, code: int, sub: str, message: str | None = None) -> Reply:
    """A ResponseStatus refusing a request; newer ISAPI firmware adds errorCode and errorMsg
    (the device's own words) after subStatusCode."""
    reply = response_status(url, code, sub, http=200 if code in (2, 3) else 400)
    if message is None:
        return reply
    extra = (f"<errorCode>{0x30000000 + code}</errorCode>\n"
             f"<errorMsg>{escape(message)}</errorMsg>\n</ResponseStatus>")  # fmt: skip
    return Reply(reply.status, reply.body.replace(b"</ResponseStatus>", extra.encode()),
                 reply.content_type)  # fmt: skip


class AccessPanel:
    """The controller's door logic behind its ISAPI paths: the SimDoor, its events as the device
    would write them, remote control and the work status. `push(body)` hands each event part
    (JSON bytes) to the alert stream; `clock()` is the device's clock (it may be set wrong)."""

    def __init__(
        self,
        door: SimDoor | None = None,
        *,
        door_id: str = "door-1",
        door_no: int = 1,
        speed: float = 1.0,
        push: Callable[[bytes], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`door`: the behavioural model to wire (a fleet's, which scenarios drive); without it a
        quiet door of its own on its own engine (simulated time `speed` times real time)."""
        self.door_no = door_no
        self.engine: Engine | None = None
        if door is None:
            self.engine = Engine(SimClock(speed))
            venue = Venue(site="sim", node="sim", secret="", kind="community_centre",
                          capacity=10, open_24h=True)  # fmt: skip
            door = _QuietDoor(door_id, venue, self.engine, seed=1, report_every_s=3600)
        self.door = door
        self.push: Callable[[bytes], None] = push or (lambda body: None)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.sent: list[dict[str, Any]] = []  # every event sent, in order
        self.commands: list[str] = []  # every RemoteControlDoor cmd carried out
        self._serial = 0
        self._forced = False  # the next opening is the forced one just reported
        self._last: tuple[bool, bool, m.DoorMode] | None = None
        self.remain_open = False  # alwaysOpen: unlocked until told otherwise
        self._was_remain = False
        self._mutex = threading.Lock()

    def start(self) -> None:
        if self.engine is not None:
            self.engine.start()
        self._last = self._state()
        self.door.start(self._reading)

    def stop(self) -> None:
        self.door.stop()
        if self.engine is not None:
            self.engine.stop()

    # --- the model's readings become the device's events -----------------------------------------

    def _state(self) -> tuple[bool, bool, m.DoorMode]:
        return self.door.is_open, self.door.locked, self.door.mode

    def _reading(self, reading: d.Reading) -> None:
        match reading:
            case d.AccessSeen(granted=True):
                self.event(5, GRANTED, card=_card_no(reading.raw_credential),
                           reader=1 if reading.direction is not m.Direction.OUT else 2)  # fmt: skip
            case d.AccessSeen():
                minor = DENIED.get(reading.reason or m.DenyReason.UNKNOWN_CREDENTIAL, 0x09)
                self.event(5, minor, card=_card_no(reading.raw_credential),
                           reader=1 if reading.direction is not m.Direction.OUT else 2)  # fmt: skip
            case d.ForcedSeen():
                self._forced = not self.door.is_open  # its opening follows: said by this one
                self.event(5, DOOR_OPEN_ABNORMAL)
            case d.HeldOpenSeen():
                self.event(5, DOOR_OPEN_TIMEOUT)
            case d.DoorStateSeen():
                self._changes()

    def _changes(self) -> None:
        """The events for what changed in the door since the last reading."""
        before, now = self._last, self._state()
        was_remain, self._was_remain = self._was_remain, self.remain_open
        self._last = now
        if before is None or before == now:
            return  # a periodic report: the device sends nothing for it
        was_open, was_locked, was_mode = before
        is_open, locked, mode = now
        said = False
        if mode != was_mode:
            if was_mode is m.DoorMode.LOCKDOWN:
                said = bool(self.event(5, ALWAYS_CLOSE_END))
            elif was_mode is m.DoorMode.UNLOCKED and was_remain:
                said = bool(self.event(5, ALWAYS_OPEN_END))
            if mode is m.DoorMode.LOCKDOWN:
                said = bool(self.event(5, ALWAYS_CLOSE_BEGIN))
            elif mode is m.DoorMode.UNLOCKED and self.remain_open:
                said = bool(self.event(5, ALWAYS_OPEN_BEGIN))
        if locked != was_locked and not said:
            self.event(5, LOCK_CLOSE if locked else LOCK_OPEN)
        if is_open != was_open:
            if is_open and self._forced:
                self._forced = False  # DOOR_OPEN_ABNORMAL said it already
            else:
                self.event(5, DOOR_OPEN_NORMAL if is_open else DOOR_CLOSE_NORMAL)

    def event(
        self, major: int, minor: int, *, card: str | None = None, reader: int | None = None,
        door: int | None = None, raw: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Send one AccessControllerEvent (as a DS-K2600-series controller writes it)."""
        with self._mutex:
            self._serial += 1
            acs: dict[str, Any] = {
                "deviceName": "Access Controller",
                "majorEventType": major,
                "subEventType": minor,
                "doorNo": self.door_no if door is None else door,
                "serialNo": self._serial,
                "currentVerifyMode": "cardOrFaceOrFp",
                "attendanceStatus": "undefined",
                "statusValue": 0,
                "mask": "unknown",
                "purePwdVerifyEnable": True,
            }
            if card is not None:
                acs.update(cardNo=card, cardType=1, cardReaderKind=1, cardReaderNo=reader or 1,
                           verifyNo=self._serial, userType="normal")  # fmt: skip
            body: dict[str, Any] = {
                "ipAddress": "127.0.0.1",
                "portNo": 80,
                "protocol": "HTTP",
                "macAddress": "44:19:b6:00:00:01",
                "channelID": 1,
                "dateTime": isapi_time(self.clock()),
                "activePostCount": 1,
                "eventType": "AccessControllerEvent",
                "eventState": "active",
                "eventDescription": "Access Controller Event",
                "AccessControllerEvent": acs,
            }
            if raw is not None:
                body = raw
            self.sent.append(body)
            self.push(json.dumps(body, ensure_ascii=False, indent="\t").encode())
            return body

    # --- ISAPI requests --------------------------------------------------------------------------

    def work_status(self) -> Reply:
        """`GET /ISAPI/AccessControl/AcsWorkStatus?format=json` (one door)."""
        is_open, locked, mode = self._state()
        if mode is m.DoorMode.LOCKDOWN:
            status = 3  # remain closed
        elif mode is m.DoorMode.UNLOCKED and self.remain_open:
            status = 2  # remain open
        else:
            status = 4  # normal (controlled)
        answer = {
            "AcsWorkStatus": {
                "doorLockStatus": [0 if locked else 1],
                "doorStatus": [status],
                "magneticStatus": [1 if is_open else 0],
                "caseStatus": [0],
                "batteryVoltage": 0,
                "batteryLowVoltage": False,
                "powerSupplyStatus": "ACPowerSupply",
                "multiDoorInterlockStatus": "close",
                "antiSneakStatus": "close",
                "hostAntiDismantleStatus": "close",
                "cardReaderOnlineStatus": [1, 1],
                "cardReaderAntiDismantleStatus": [0, 0],
                "cardReaderVerifyMode": [1, 1],
                "cardNum": len(self.door.cards),
            }
        }
        return Reply(200, json.dumps(answer).encode(), JSON)

    def search(self, path: str, body: bytes) -> Reply:
        """`POST /ISAPI/AccessControl/AcsEvent?format=json`: the event log, searched by
        `AcsEventCond` (major/minor 0: all; `beginSerialNo`/`endSerialNo`; `startTime`/`endTime`;
        paged by `searchResultPosition` and `maxResults`)."""
        try:
            cond = json.loads(body)["AcsEventCond"]
            search_id = str(cond["searchID"])
            position = int(cond["searchResultPosition"])
            most = min(int(cond["maxResults"]), MAX_RESULTS)
            major, minor = int(cond.get("major", 0)), int(cond.get("minor", 0))
            first = int(cond.get("beginSerialNo", 0))
            last = int(cond.get("endSerialNo", 2**31))
            start = _when(cond.get("startTime"))
            end = _when(cond.get("endTime"))
        except (ValueError, KeyError, TypeError):
            return refusal(path, 6, "badParameters", "AcsEventCond is missing or wrong")
        with self._mutex:
            logged = [e for e in self.sent if isinstance(e.get("AccessControllerEvent"), dict)]
        found = []
        for e in logged:
            acs, at = e["AccessControllerEvent"], _when(e.get("dateTime"))
            if (major and acs["majorEventType"] != major) or (
                minor and acs["subEventType"] != minor
            ):
                continue
            if not first <= acs["serialNo"] <= last:
                continue
            if (start and at and at < start) or (end and at and at > end):
                continue
            info = {"major": acs["majorEventType"], "minor": acs["subEventType"],
                    "time": e["dateTime"], "doorNo": acs.get("doorNo"),
                    "serialNo": acs["serialNo"], "type": 0,
                    "currentVerifyMode": acs.get("currentVerifyMode", "invalid")}  # fmt: skip
            for field in ("cardNo", "cardType", "cardReaderNo", "employeeNoString", "name"):
                if field in acs:
                    info[field] = acs[field]
            found.append(info)
        page = found[position : position + most]
        more = position + len(page) < len(found)
        answer = {"AcsEvent": {"searchID": search_id,
                               "responseStatusStrg": "MORE" if more else "OK" if page else "NO MATCH",
                               "numOfMatches": len(page), "totalMatches": len(found),
                               "InfoList": page}}  # fmt: skip
        return Reply(200, json.dumps(answer).encode(), JSON)

    def remote_control(self, path: str, body: bytes) -> Reply:
        """`PUT /ISAPI/AccessControl/RemoteControl/door/N` answered with a ResponseStatus."""
        found = re.fullmatch(r"/ISAPI/AccessControl/RemoteControl/door/(\d+)", path)
        if found is None or int(found.group(1)) != self.door_no:
            return refusal(path, 4, "invalidID", "no such door")
        if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
            return refusal(path, 5, "badXmlFormat")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return refusal(path, 5, "badXmlFormat")
        cmd_el = root.find(f"{{{XMLNS}}}cmd")
        if cmd_el is None:
            cmd_el = root.find("cmd")
        if root.tag.rsplit("}", 1)[-1] != "RemoteControlDoor" or cmd_el is None:
            return refusal(path, 6, "badXmlContent")
        cmd = (cmd_el.text or "").strip()
        actions: dict[str, Callable[[], None]] = {
            "open": lambda: self.door.unlock(OPEN_DURATION_S),
            "close": self.door.lock,
            "alwaysOpen": lambda: self.door.unlock(None),
            "alwaysClose": lambda: self.door.lockdown(True),
        }
        action = actions.get(cmd)
        if action is None:
            return refusal(path, 6, "badParameters", f"unknown cmd {cmd[:40]!r}")
        try:
            # Set first: the model reports the change from inside the call.
            was, self.remain_open = self.remain_open, cmd == "alwaysOpen"
            try:
                action()
            except d.CommandFailed:
                self.remain_open = was
                raise
        except d.CommandFailed as exc:
            return refusal(path, 3, "deviceError", str(exc))
        self.commands.append(cmd)
        self.event(3, REMOTE[cmd])
        return response_status(path)


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value)


def _card_no(raw: str) -> str:
    """The model's cards are `card-00012345`; the device knows the number."""
    return raw.removeprefix("card-")


class AccessController:
    """A one-door access controller (a DS-K2601-style panel) on 127.0.0.1:`port` (0: any free
    port): the shared ISAPI server with this controller's routes and events. The fault switches
    are the server's (`server.delay_s`, `server.clock_offset_s`, `server.inject`,
    `server.half_close`, `server.halt`/`serve`, `server.password`)."""

    def __init__(
        self,
        port: int = 0,
        *,
        door: SimDoor | None = None,
        door_id: str = "door-1",
        username: str = "admin",
        password: str = "Acs-12345",
        speed: float = 1.0,
        heartbeat_s: float = 10.0,
    ) -> None:
        self.server = IsapiServer(
            port, username=username, password=password, model="DS-K2601T",
            device_type="ACS", serial="DS-K2601T20261201V010100ENAC0000001",
            mac="44:19:b6:00:00:01", heartbeat_s=heartbeat_s,
        )  # fmt: skip
        self.panel = AccessPanel(door, door_id=door_id, speed=speed, push=self._push,
                                 clock=self.server.now)  # fmt: skip
        self.door = self.panel.door
        self.server.route("GET", WORK_STATUS, self._work_status)
        self.server.route("PUT", REMOTE_CONTROL.format(n=self.panel.door_no), self._remote)
        self.server.route("POST", EVENT_LOG, self._search)
        self.log_search = True  # False: firmware without the event-log search (notSupport)
        self._stopping = threading.Event()
        self._power: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def driver_settings(self) -> dict[str, object]:
        """The `isapi` driver's site-file settings for this controller's door."""
        return {"host": "127.0.0.1", "port": self.server.port, "username": self.server.username,
                "password": self.server.password, "door": self.panel.door_no}  # fmt: skip

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()  # first: its port is known from here on
        self.panel.start()
        self._power = threading.Thread(target=self._follow_power, name="isapi-acs", daemon=True)
        self._power.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._power is not None:
            self._power.join(10)
        self.server.stop()
        self.panel.stop()

    def _follow_power(self) -> None:
        """A model cut off (a scenario's `cut`) is a controller without power: it stops
        answering, and answers again when restored."""
        off = False
        while not self._stopping.wait(0.2):
            if self.door.offline != off:
                off = self.door.offline
                if off:
                    self.server.halt()
                else:
                    self.server.serve()

    def _push(self, body: bytes) -> None:
        self.server.publish(body, JSON)

    def _work_status(self, request: Request) -> Reply:
        if request.query.get("format") != "json":
            return refusal(request.path, 4, "notSupport", "this controller answers ?format=json")
        return self.panel.work_status()

    def _search(self, request: Request) -> Reply:
        if not self.log_search:
            return refusal(request.path, 4, "notSupport")
        if request.query.get("format") != "json":
            return refusal(request.path, 4, "notSupport", "this controller answers ?format=json")
        return self.panel.search(request.path, request.body)

    def _remote(self, request: Request) -> Reply:
        return self.panel.remote_control(request.path, request.body)

    # --- scenario hooks -------------------------------------------------------------------------

    def swipe(self, granted: bool = True) -> dict[str, Any]:
        """Someone presents a card; the event sent."""
        self.door.swipe(granted)
        return next(e for e in reversed(self.panel.sent)
                    if e["AccessControllerEvent"]["majorEventType"] == 5
                    and "cardNo" in e["AccessControllerEvent"])  # fmt: skip

"""ONVIF event notifications (WS-BaseNotification as profiled by the ONVIF Core spec) read from a
PullMessages answer, and the topics this driver maps to camera alerts.

A notification names its topic as a concrete topic expression (`tns1:RuleEngine/FieldDetector/
ObjectsInside`, the prefix bound to http://www.onvif.org/ver10/topics) and carries a tt:Message:
`UtcTime`, `PropertyOperation` (Initialized when a subscription starts, Changed, Deleted), Source
items naming what raised it (video source, analytics configuration, rule) and Data items with the
state (`IsMotion`, `State`, `IsInside`, ...). Detectors are properties, started and ended by their
state; a line crossing is a single event (ObjectId), an alert that starts and ends at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import messages as m

TOPICS_NS = "http://www.onvif.org/ver10/topics"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
TT = "http://www.onvif.org/ver10/schema"


@dataclass(frozen=True, slots=True)
class Mapping:
    """How one topic becomes a camera alert: its kind, and the Data item holding its state
    (None: a single event, no state)."""

    kind: m.CameraAlertKind
    state: str | None


# ONVIF topic (without the tns1: prefix) -> alert. Our alert kinds have no plain "motion": a
# camera's motion and field detectors report something moving where the installer drew the
# detector, which is what an intrusion zone means here (docs/drivers/onvif.md).
_I, _MOVED = m.CameraAlertKind.INTRUSION, m.CameraAlertKind.TAMPER_MOVED
_COVERED, _BLURRED = m.CameraAlertKind.TAMPER_COVERED, m.CameraAlertKind.TAMPER_BLURRED
TOPICS: dict[str, Mapping] = {
    "VideoSource/MotionAlarm": Mapping(_I, "State"),
    "RuleEngine/CellMotionDetector/Motion": Mapping(_I, "IsMotion"),
    "RuleEngine/FieldDetector/ObjectsInside": Mapping(_I, "IsInside"),
    "RuleEngine/LineDetector/Crossed": Mapping(_I, None),
    "RuleEngine/TamperDetector/Tamper": Mapping(_COVERED, "IsTamper"),
    **{f"VideoSource/{condition}/{service}": Mapping(kind, "State")
       for condition, kind in (("GlobalSceneChange", _MOVED), ("ImageTooDark", _COVERED),
                               ("ImageTooBright", _COVERED), ("ImageTooBlurry", _BLURRED))
       for service in ("ImagingService", "AnalyticsService")},
}  # fmt: skip

# Topics a camera sends that are no camera alerts and no mistakes: ignored without a fault. The
# recording service's view of a tamper condition repeats the imaging or analytics service's.
QUIET_BRANCHES = ("Monitoring/", "Device/", "Media/", "RecordingConfig/", "RecordingHistory/",
                  "Configuration/")  # fmt: skip
QUIET_RECORDING = "/RecordingService"


def quiet(topic: str) -> bool:
    """A topic that is ignored without a fault."""
    return topic.startswith(QUIET_BRANCHES) or (
        topic.startswith("VideoSource/") and topic.endswith(QUIET_RECORDING)
    )


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification as read, before mapping: the ONVIF topic without its prefix ('' for a
    topic that is not ONVIF's), the raw topic, the message's items."""

    topic: str
    raw_topic: str
    utc_time: datetime | None
    operation: str
    source: dict[str, str]
    data: dict[str, str]


class Malformed(ValueError):
    """A notification that cannot be read; the message says what is missing."""


def notifications(envelope: Any) -> list[Notification | Malformed]:
    """Every wsnt:NotificationMessage in a PullMessages answer's envelope (lxml), read or not."""
    if envelope is None:
        return []
    out: list[Notification | Malformed] = []
    for holder in envelope.iter(f"{{{WSNT}}}NotificationMessage"):
        try:
            out.append(_read(holder))
        except Malformed as exc:
            out.append(exc)
    return out


def _read(holder: Any) -> Notification:
    topic_el = holder.find(f"{{{WSNT}}}Topic")
    raw = (topic_el.text or "").strip() if topic_el is not None else ""
    if not raw:
        raise Malformed("a notification without a topic")
    # An ONVIF topic is `tns1:A/B/C` with the prefix bound to the ONVIF topic namespace; one
    # with another prefix anywhere (a vendor's, as `tns1:Device/tnsaxis:Sensor/PIR`) is not.
    head, _, rest = raw.partition("/")
    prefix, _, first = head.rpartition(":")
    namespace = topic_el.nsmap.get(prefix) if prefix else None
    ours = namespace == TOPICS_NS and ":" not in rest
    topic = f"{first}/{rest}".rstrip("/") if ours else ""
    message = holder.find(f"{{{WSNT}}}Message/{{{TT}}}Message")
    if message is None:
        raise Malformed(f"a {raw} notification without a tt:Message")
    when = None
    stamp = message.get("UtcTime")
    if stamp:
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise Malformed(f"a {raw} notification with UtcTime {stamp[:40]!r}") from None
    return Notification(
        topic=topic, raw_topic=raw[:120], utc_time=when,
        operation=message.get("PropertyOperation") or "",
        source=_items(message, "Source"), data=_items(message, "Data"),
    )  # fmt: skip


def _items(message: Any, part: str) -> dict[str, str]:
    found = message.find(f"{{{TT}}}{part}")
    if found is None:
        return {}
    return {
        str(item.get("Name")): str(item.get("Value") or "")
        for item in found.iter(f"{{{TT}}}SimpleItem")
        if item.get("Name")
    }


def is_true(value: str) -> bool:
    """An xs:boolean's value."""
    return value.strip().lower() in ("true", "1")

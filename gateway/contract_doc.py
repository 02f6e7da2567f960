"""The human-readable wire contract (docs/contract.md), generated from the models themselves.

`python -m gateway.contract_doc > docs/contract.md` writes it; a test fails when the page and the
code disagree, so the page cannot drift.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from gateway import codec, topics
from gateway import messages as m

TINY_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
    "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDMoooqdb+Rr7ns/wC9f8D/2Q=="
)
TINY_WEBM = (
    "GkXfo59ChoEBQveBAULygQRC84EIQoKEd2VibUKHgQJChYECGFOAZwEAAAAAAAHWEU2bdLpNu4tTq4QVSalmU6yB"
    "oU27i1OrhBZUrmtTrIHYTbuMU6uEElTDZ1OsggEbTbuMU6uEHFO7a1OsggHA7AEAAAAAAABZAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAVSalmsirXsYMPQkBNgI1MYXZmNjIuMTIuMTAyV0GNTGF2ZjYyLjEyLjEwMkSJiEB5AAAAAAAA"
    "FlSua76uAQAAAAAAADXXgQFzxYi/s6+2n6obmZyBACK1nIN1bmSIgQCGhVZfVlA4g4EBI+ODhAvrwgDghrCBELqB"
    "EBJUw2fYc3OgY8CAZ8iaRaOHRU5DT0RFUkSHjUxhdmY2Mi4xMi4xMDJzc7JjwItjxYi/s6+2n6obmWfIoUWjiERV"
    "UkFUSU9ORIeTMDA6MDA6MDAuNDAwMDAwMDAwAB9DtnXD54EAo6OBAACAEAIAnQEqEAAQAABHCIWFiIWEiAGiEABg"
    "b3D+/vl3AKOZgQDIALEBAAEQDRAAwAGB/6BgBhD+/nHwABxTu2uRu4+zgQC3iveBAfGCAXjwgQM="
)
SITE, NODE = "v0001", "v0001-edge"
_TS = datetime(2026, 11, 25, 8, 30, 0, 125000, tzinfo=UTC)
_CREDENTIAL = "3f" * 32


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n, version=4)


def _env(n: int, seq: int) -> m.EnvelopeFields:
    """Envelope fields of example `n`."""
    return m.envelope(seq, id=_id(n), ts=_TS)


@dataclass(frozen=True, slots=True)
class Example:
    """One message type: what it means, where it goes and a valid instance."""

    title: str
    summary: str
    topic: str
    message: m.Message


EXAMPLES: list[Example] = [
    Example(
        "Door access",
        "A card, code or face presented at a door, granted or denied. The raw credential never "
        "leaves the site: `credential` is its HMAC-SHA256 with the site's secret.",
        topics.event(SITE, NODE, "v0001-door1", m.MessageType.DOOR_ACCESS),
        m.DoorAccess(
            **_env(1, 101), device="v0001-door1", result=m.AccessResult.DENIED,
            credential=_CREDENTIAL, direction=m.Direction.IN, reason=m.DenyReason.EXPIRED,
        ),
    ),
    Example(
        "Door forced open",
        "The door opened without a valid access or an exit request.",
        topics.event(SITE, NODE, "v0001-door1", m.MessageType.DOOR_FORCED),
        m.DoorForced(**_env(2, 102), device="v0001-door1"),
    ),
    Example(
        "Door held open",
        "The door has stayed open past the controller's own limit; repeated while it stays open.",
        topics.event(SITE, NODE, "v0001-door1", m.MessageType.DOOR_HELD_OPEN),
        m.DoorHeldOpen(**_env(3, 103), device="v0001-door1", open_s=75.0),
    ),
    Example(
        "Door state",
        "The door's physical and lock state, on every change.",
        topics.event(SITE, NODE, "v0001-door1", m.MessageType.DOOR_STATE),
        m.DoorState(
            **_env(4, 104), device="v0001-door1", open=False, locked=True,
            mode=m.DoorMode.NORMAL,
        ),
    ),
    Example(
        "Occupancy",
        "A people counter's reading for one zone: how many are inside, and the flow since the "
        "previous reading.",
        topics.event(SITE, NODE, "v0001-counter2", m.MessageType.OCCUPANCY),
        m.Occupancy(
            **_env(5, 105), device="v0001-counter2", zone="main", count=37,
            entered=4, exited=1,
        ),
    ),
    Example(
        "Camera alert",
        "One phase (start, update, end) of one camera alert: intrusion, loitering, crowd, or "
        "tampering (covered, blurred, moved). The same `alert_id` ties the phases together.",
        topics.event(SITE, NODE, "v0001-camera3", m.MessageType.CAMERA_ALERT),
        m.CameraAlert(
            **_env(6, 106), device="v0001-camera3", alert_id=_id(60),
            phase=m.AlertPhase.START, kind=m.CameraAlertKind.INTRUSION, zone="back-yard",
            score=0.91, objects=1, snapshot=str(_id(61)),
        ),
    ),
    Example(
        "Camera snapshot",
        "The picture of a camera alert (the alert's `snapshot` is this message's `id`): a small "
        "JPEG, base64, of the privacy-masked scene with the zone and the objects drawn, at most "
        f"{m.SNAPSHOT_MAX_BYTES:,} bytes. Sent right after the alert's start; a node under "
        "pressure drops snapshots before alerts. (This example carries a 16 by 16 image.)",
        topics.event(SITE, NODE, "v0001-camera3", m.MessageType.CAMERA_SNAPSHOT),
        m.CameraSnapshot(
            **_env(61, 110), device="v0001-camera3", alert_id=_id(60),
            width=16, height=16, jpeg=TINY_JPEG,
        ),
    ),
    Example(
        "Camera clip",
        "One part of the video clip of a camera alert (`alert_id`): the privacy-masked, analysed "
        "frames from a few seconds before the alert's start to a few after, as WebM (VP8). A clip "
        f"is cut into `parts` pieces of {m.CLIP_PART_BYTES:,} bytes (the last shorter), at most "
        f"{m.CLIP_MAX_PARTS} ({m.CLIP_MAX_BYTES:,} bytes); each part repeats what the clip is "
        "(`clip_id`, size, SHA-256 of the whole, times, format), and the platform joins them "
        "once all are stored and agree. Sent after the alert through the outbox like everything "
        "else; a full outbox drops clip parts before anything else. (This example is a whole "
        "clip in one part: 16 by 16, two frames.)",
        topics.event(SITE, NODE, "v0001-camera3", m.MessageType.CAMERA_CLIP),
        m.CameraClip(
            **_env(65, 113), device="v0001-camera3", clip_id=_id(66), alert_id=_id(60), part=0,
            parts=1, mime="video/webm", width=16, height=16, fps=5.0, start=_TS,
            end=_TS + timedelta(seconds=0.2), size=len(base64.b64decode(TINY_WEBM)),
            sha256=hashlib.sha256(base64.b64decode(TINY_WEBM)).hexdigest(), data=TINY_WEBM,
        ),
    ),
    Example(
        "Camera status",
        "Whether the edge agent is reading and analysing a camera's stream, and how many frames "
        "per second it analyses: sent when that changes and every minute, so a quiet camera is "
        "told from a dead one. Offline for two minutes raises `device_offline`.",
        topics.event(SITE, NODE, "v0001-camera3", m.MessageType.CAMERA_STATUS),
        m.CameraStatus(
            **_env(62, 111), device="v0001-camera3", online=False, fps=0.0,
            detail="stream ended; reconnecting in 8 s",
        ),
    ),
    Example(
        "Speaker status",
        "A broadcast speaker's state: online, volume, what it plays, and any fault.",
        topics.event(SITE, NODE, "v0001-speaker4", m.MessageType.SPEAKER_STATUS),
        m.SpeakerStatus(
            **_env(7, 107), device="v0001-speaker4", online=True, volume=70,
            playing=False, fault=m.SpeakerFault.LINE_OPEN,
        ),
    ),
    Example(
        "Device health",
        "What a real-hardware driver (ISAPI, ONVIF, Modbus, HTTP speaker) finds of its device:"
        " reachable, accepting the account, answering in time, sending what it can read, keeping"
        " time. Sent when that changes. `online: false` for two minutes raises `device_offline`"
        " with the condition and detail; `faults` counts each kind of problem since the agent"
        " started.",
        topics.event(SITE, NODE, "v0001-door1", m.MessageType.DEVICE_HEALTH),
        m.DeviceHealth(
            **_env(63, 112), device="v0001-door1", online=False,
            condition=m.DeviceCondition.AUTH_FAILED,
            detail="401 Unauthorized from 10.0.5.31: the device refused the account; check the"
            " password in the site file",
            faults={"auth_failed": 3, "malformed_xml": 1},
        ),
    ),
    Example(
        "Node birth",
        "Published retained on every connect, with the birth/death sequence `bdseq` (+1 on every "
        "connect), the node's device inventory and the configuration version it runs (0: its site "
        "file's own devices; absent from older nodes). It makes the node and the listed devices "
        "online.",
        topics.birth(SITE, NODE),
        m.NodeBirth(
            **_env(8, 0), bdseq=12, software="gridwatch-edge 0.1.0", config_version=3,
            devices=(
                m.DeviceInfo(id="v0001-door1", kind=m.DeviceKind.DOOR, model="ZK-C3"),
                m.DeviceInfo(id="v0001-counter2", kind=m.DeviceKind.COUNTER),
            ),
        ),
    ),
    Example(
        "Node death",
        "The node's last will, set at connect with the same `bdseq` as its birth. A death whose "
        "`bdseq` is not the current birth's is stale and ignored.",
        topics.death(SITE, NODE),
        m.NodeDeath(**_env(9, 0), bdseq=12),
    ),
    Example(
        "Command",
        "Flows down from the platform to one device: door unlock (for a duration), lock, lockdown; "
        "speaker play (text or clip, priority; a text's `language`, zh-CN when absent), stop, "
        "volume. Not executed after `deadline`. "
        "Signed by the platform (`sig`, Ed25519 over the object without `sig`, keys sorted, no "
        "spaces, UTF-8); the edge answers `rejected` to one unsigned or badly signed, valid "
        "more than 300 s after `ts`, or issued in the future, and ignores a retained one. "
        "`duration_s: null` unlocks until a lock command.",
        topics.command(SITE, NODE, "v0001-speaker4"),
        m.Command(
            v=m.CONTRACT_VERSION, id=_id(10), ts=_TS, device="v0001-speaker4", deadline=_TS + timedelta(seconds=30),
            action=m.SpeakerPlay(
                text="Typhoon warning: please go to the nearest shelter.",
                priority=m.SpeakerPriority.EMERGENCY, repeat=3,
            ),
        ),
    ),
    Example(
        "Command result",
        "What became of a command: done, failed, rejected or expired.",
        topics.command_result(SITE, NODE, "v0001-speaker4"),
        m.CommandResult(
            **_env(11, 108), device="v0001-speaker4", command_id=_id(10),
            status=m.CommandStatus.DONE,
        ),
    ),
    Example(
        "Receipt",
        "Flows down from the platform to a node after each commit: these of the node's messages "
        "(by `seq`, as inclusive ranges) are stored in the database, or recorded as rejected. A "
        "node keeps every message in its outbox until a receipt covers it, and sends what stays "
        "unconfirmed again after a reconnect or a timeout (ids make that harmless): a PUBACK only "
        "says the broker has the message, not that it survives the broker.",
        topics.receipt(SITE, NODE),
        m.Receipt(v=m.CONTRACT_VERSION, ts=_TS, seqs=((100, 108), (111, 111))),
    ),
    Example(
        "Node configuration",
        "Published retained by the platform whenever a node's devices change in the registry: "
        "every enabled device with its driver and settings, and a version (+1 on every change). "
        "Signed like a command (`sig`). The node applies a version newer than the one it runs "
        "without a restart (drivers of new devices start, of removed ones stop, of changed ones "
        "restart, the others keep running), keeps it across restarts, and answers it; it "
        "ignores the version it runs (the retained copy on every reconnect) and refuses one "
        "unsigned, for another node or older than its own. Up to "
        f"{codec.CONFIG_MAX_PAYLOAD:,} bytes.",
        topics.config(SITE, NODE),
        m.NodeConfig(
            v=m.CONTRACT_VERSION, ts=_TS, site=SITE, node=NODE, version=4,
            devices=(
                m.ConfigDevice(id="v0001-door1", kind=m.DeviceKind.DOOR, driver="simulated",
                               model="ZK-C3", zone="main", settings={"report_every_s": 30}),
                m.ConfigDevice(id="v0001-counter2", kind=m.DeviceKind.COUNTER, driver="simulated"),
            ),
        ),
    ),
    Example(
        "Configuration result",
        "The node's answer to a configuration: `applied` (its births now report that version) "
        "or `refused` with the reason (an unknown driver, settings a driver cannot use, a bad "
        "signature), and the old configuration keeps running. Like a birth it carries the "
        "node's latest `seq`: it is not a data message and no receipt covers it.",
        topics.config_result(SITE, NODE),
        m.ConfigResult(
            **_env(12, 108), version=4, status=m.ConfigStatus.REFUSED,
            reason="devices.v0001-door1.driver: unknown driver 'zkteco' (available: opencv,"
            " simulated)",
        ),
    ),
]  # fmt: skip

_COMMAND_ACTIONS: list[type[BaseModel]] = [
    m.DoorUnlock, m.DoorLock, m.DoorLockdown, m.SpeakerPlay, m.SpeakerStop, m.SpeakerVolume,
]  # fmt: skip


def _fields(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    schema = model.model_json_schema()
    props: dict[str, dict[str, object]] = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, info in model.model_fields.items():
        prop = props.get(name, {})
        kind = _type_of(prop, schema)
        meaning = info.description or ""
        # The discriminator has a default in Python but must be on the wire.
        needed = name in required or name in ("type", "action")
        lines.append(f"| `{name}` | {kind} | {'yes' if needed else 'no'} | {meaning} |")
    return lines


def _type_of(prop: dict[str, object], schema: dict[str, object]) -> str:
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "$ref" in prop:
        return _ref_type(str(prop["$ref"]), schema)
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list):
        return " or ".join(_type_of(o, schema) for o in options if o.get("type") != "null")
    enum = prop.get("enum")
    if isinstance(enum, list):
        return " \\| ".join(f"`{v}`" for v in enum)
    kind = str(prop.get("type", "object"))
    fmt = prop.get("format")
    if kind == "array":
        items = prop.get("items")
        return f"list of {_type_of(items, schema) if isinstance(items, dict) else 'any'}"
    return f"{kind} ({fmt})" if fmt else kind


def _ref_type(ref: str, schema: dict[str, object]) -> str:
    name = ref.rsplit("/", 1)[-1]
    defs = schema.get("$defs", {})
    target = defs.get(name, {}) if isinstance(defs, dict) else {}
    if isinstance(target, dict) and "enum" in target:
        return " \\| ".join(f"`{v}`" for v in target["enum"])
    return name


def render() -> str:
    """The whole contract page as Markdown."""
    out = [
        "# The wire contract",
        "",
        "Generated from `gateway/` by `python -m gateway.contract_doc > docs/contract.md`; a test",
        "fails when this page and the code disagree. Do not edit by hand.",
        "",
        f"MQTT v5, QoS 1, JSON payloads (UTF-8) of at most {codec.DEFAULT_MAX_PAYLOAD:,} bytes "
        "by default.",
        f"Contract version: `v = {m.CONTRACT_VERSION}`. Every message an edge node publishes "
        "carries `v`, an `id` made at the edge (a UUID: the platform stores the same id once), the "
        "device's own timestamp `ts` (ISO 8601 with a zone) and `seq`, the node's sequence number. "
        "Unknown fields are refused.",
        "",
        "## Topics",
        "",
        "Namespaced by site (venue) and edge node, so the broker's ACL confines a node to its own "
        "subtree. Site, node and device ids match `" + topics.ID_PATTERN + "`.",
        "",
        "| topic | direction | carries | retained |",
        "|---|---|---|---|",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.BIRTH}` | node → platform | node birth | yes |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.DEATH}` | node → platform | node death (last will) | no |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.EVENT}/{{device}}/{{type}}` | node → platform | device events and telemetry | no |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.COMMAND}/{{device}}` | platform → node | commands | no |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.COMMAND_RESULT}/{{device}}` | node → platform | command results | no |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.RECEIPT}` | platform → node | receipts: which messages are stored | no |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.CONFIG}` | platform → node | the node's configuration (signed) | yes |",
        f"| `{topics.ROOT}/{{site}}/{{node}}/{topics.Channel.CONFIG_RESULT}` | node → platform | the node's answer to it | no |",
        "",
        "A node may publish only under its own `gw/v1/{site}/{node}/` subtree (birth, death, evt, "
        "cmdres, cfgres) and subscribe only to its own `cmd/#`, `ack` and `cfg`; the broker refuses anything else, "
        "subscriptions included (at SUBACK). Of what nodes publish, only the birth is retained. The ingest "
        "also checks every message against the device registry: a message about a device that is "
        "not that node's is rejected, whatever the topic says.",
        "",
        "The ingest consumes with an MQTT v5 shared subscription (`$share/{group}/…`, the group a "
        "random name set at installation, the only one the broker lets it join) so that several "
        "workers split the load; births and deaths go to every worker whole, so each applies "
        "presence in the order the broker saw it.",
        "",
        "## Messages",
        "",
    ]  # fmt: skip
    for ex in EXAMPLES:
        payload = json.loads(codec.encode(ex.message))
        out += [
            f"### {ex.title} (`{ex.message.type}`)",
            "",
            ex.summary,
            "",
            f"Topic: `{ex.topic}`",
            "",
            *_fields(type(ex.message)),
            "",
            "```json",
            json.dumps(payload, indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    out += [
        "## Command actions",
        "",
        "The `action` object of a command, by its `action` field.",
        "",
    ]
    for action in _COMMAND_ACTIONS:
        name = action.model_fields["action"].default
        out += [f"### `{name}`", "", *_fields(action), ""]
    out += [
        "## Rejections",
        "",
        "What the ingest cannot store is kept in `rejected_messages` with one of these reasons, "
        "counted in `gridwatch_ingest_rejected_total{reason}`, and acknowledged so it cannot loop.",
        "",
        "| reason | meaning |",
        "|---|---|",
        *[f"| `{r.value}` | {_REASON_TEXT[r]} |" for r in codec.RejectReason],
        "",
    ]
    return "\n".join(out)


_REASON_TEXT = {
    codec.RejectReason.OVERSIZED: "the payload is larger than the ingest's limit",
    codec.RejectReason.BAD_TOPIC: "the topic is not a gridwatch topic",
    codec.RejectReason.NOT_JSON: "the payload is not valid JSON",
    codec.RejectReason.UNKNOWN_TYPE: "no `type`, or a type the contract does not have",
    codec.RejectReason.UNSUPPORTED_VERSION: "a contract version this platform does not speak",
    codec.RejectReason.SCHEMA: "a field is missing, unknown or out of range",
    codec.RejectReason.TOPIC_MISMATCH: "the message is not the kind its topic says",
    codec.RejectReason.UNKNOWN_NODE: "no enabled node of that id at that site",
    codec.RejectReason.UNKNOWN_DEVICE: "the device is not registered",
    codec.RejectReason.DISABLED_DEVICE: "the device is disabled in the registry; its messages"
    " are refused until it is enabled again",
    codec.RejectReason.FOREIGN_DEVICE: "the device belongs to another node",
    codec.RejectReason.OUTSIDE_GROUP: "the node's venue lies outside the areas this broker's"
    " ingest group carries (a partitioned province): no receipt, so the node keeps the message"
    " for the broker that carries it",
    codec.RejectReason.CONFLICT: "an id already stored with other content (the first version "
    "stands)",
    codec.RejectReason.UNSTORABLE: "valid, but the database refused it",
    codec.RejectReason.IMPLAUSIBLE: "valid, but far outside what the device can measure (an"
    " occupancy over 5x the venue's capacity and over 100, or over 5,000 without one)",
}

if __name__ == "__main__":
    print(render(), end="")

"""The wire contract: topics, message models, codec and the contract page (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import codec, topics
from gateway import messages as m
from gateway.codec import DecodeError, RejectReason
from gateway.contract_doc import EXAMPLES, render

ROOT = Path(__file__).resolve().parent.parent


def test_every_message_type_has_an_example() -> None:
    assert {ex.message.type for ex in EXAMPLES} == set(m.MessageType)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda ex: str(ex.message.type))
def test_round_trip(example: object) -> None:
    assert isinstance(example, type(EXAMPLES[0]))
    payload = codec.encode(example.message)
    inbound = codec.decode_for_topic(example.topic, payload)
    assert inbound.message == example.message
    assert str(inbound.topic) == example.topic
    assert codec.encode(inbound.message) == payload


def test_contract_page_is_current() -> None:
    page = (ROOT / "docs" / "contract.md").read_text()
    assert page == render(), (
        "docs/contract.md is stale: python -m gateway.contract_doc > docs/contract.md"
    )


def _door_forced() -> dict[str, object]:
    return json.loads(codec.encode(EXAMPLES[1].message))


def _with(**changes: object) -> bytes:
    data = _door_forced() | changes
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


FORCED_TOPIC = EXAMPLES[1].topic


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (FORCED_TOPIC, b"{not json", RejectReason.NOT_JSON),
        (FORCED_TOPIC, b"\xff\xfe", RejectReason.NOT_JSON),
        (FORCED_TOPIC, b'{"v": 1}', RejectReason.UNKNOWN_TYPE),
        (FORCED_TOPIC, _with(type="door.exploded"), RejectReason.UNKNOWN_TYPE),
        (FORCED_TOPIC, _with(v=2), RejectReason.UNSUPPORTED_VERSION),
        (FORCED_TOPIC, _with(id=None), RejectReason.SCHEMA),
        (FORCED_TOPIC, _with(ts=None), RejectReason.SCHEMA),
        (FORCED_TOPIC, _with(ts="2026-11-25T08:30:00"), RejectReason.SCHEMA),  # no zone
        (FORCED_TOPIC, _with(seq=-1), RejectReason.SCHEMA),
        (FORCED_TOPIC, _with(colour="red"), RejectReason.SCHEMA),
        (FORCED_TOPIC, _with(device="bad/device"), RejectReason.SCHEMA),
        (FORCED_TOPIC, _with(seq="7"), RejectReason.SCHEMA),  # strict: no coercion
        (FORCED_TOPIC.replace("door.forced", "door.state"), _with(), RejectReason.TOPIC_MISMATCH),
        (FORCED_TOPIC.replace("v0001-door1", "v0001-door2"), _with(), RejectReason.TOPIC_MISMATCH),
        ("gw/v1/v0001/v0001-edge/birth", _with(), RejectReason.TOPIC_MISMATCH),
        ("gw/v1/v0001/v0001-edge/evt/x", _with(), RejectReason.BAD_TOPIC),
        ("other/topic/entirely/here/x", _with(), RejectReason.BAD_TOPIC),
        ("gw/v1/v0001/v0001-edge/gossip/x", _with(), RejectReason.BAD_TOPIC),
        (FORCED_TOPIC, b" " * (codec.DEFAULT_MAX_PAYLOAD + 1), RejectReason.OVERSIZED),
    ],
)
def test_refused_with_reason(topic: str, payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(DecodeError) as err:
        codec.decode_for_topic(topic, payload)
    assert err.value.reason is reason
    assert err.value.detail


@pytest.mark.parametrize(
    ("model", "fields", "error"),
    [
        (m.DoorAccess, {"result": "granted", "reason": "expired"}, "no deny reason"),
        (m.SpeakerPlay, {}, "exactly one of text or clip"),
        (m.SpeakerPlay, {"text": "hello", "clip": "c1"}, "exactly one of text or clip"),
    ],
)
def test_model_rules(model: type[m.Strict], fields: dict[str, object], error: str) -> None:
    base: dict[str, object] = {}
    if model is m.DoorAccess:
        base = {**m.envelope(1), "device": "d1", "credential": "ab" * 32}
    with pytest.raises(ValueError, match=error):
        model.model_validate_json(json.dumps(base | fields, default=str))


def test_messages_are_immutable() -> None:
    msg = EXAMPLES[0].message
    with pytest.raises(ValueError, match="frozen"):
        msg.seq = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "topic",
    [
        topics.birth("s1", "n1"),
        topics.death("s1", "n1"),
        topics.event("s1", "n1", "d1", "occupancy"),
        topics.command("s1", "n1", "d1"),
        topics.command_result("s1", "n1", "d1"),
    ],
)
def test_topic_round_trip(topic: str) -> None:
    assert str(topics.parse(topic)) == topic


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "-lead", "x" * 65, "sp ace"])
def test_ids_that_would_break_topics_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid node"):
        topics.birth("s1", bad)


def test_ingest_filters_use_a_shared_subscription() -> None:
    filters = topics.ingest_filters("ingest")
    assert all(f.startswith("$share/ingest/gw/v1/") for f in filters)
    assert topics.ingest_filters(None) == [f.removeprefix("$share/ingest/") for f in filters]


def _command(action: object) -> m.Command:
    now = m.now()
    return m.Command(
        v=1, id=EXAMPLES[0].message.id, ts=now, device="v0001-door1",
        deadline=now, action=action,  # type: ignore[arg-type]
    )  # fmt: skip


# Every optional field of every command action, at a value other than its default (null among
# them where null is allowed and is not the default).
_ACTIONS = [
    m.DoorUnlock(duration_s=None),
    m.DoorUnlock(duration_s=300),
    m.DoorLock(),
    m.DoorLockdown(active=False),
    m.SpeakerPlay(text="Flood", priority=m.SpeakerPriority.EMERGENCY, repeat=3),
    m.SpeakerPlay(clip="siren-1"),
    m.SpeakerStop(),
    m.SpeakerVolume(level=0),
]


@pytest.mark.parametrize("action", _ACTIONS, ids=repr)
def test_command_round_trip_keeps_every_optional_field(action: object) -> None:
    command = _command(action)
    decoded = codec.decode(codec.encode(command))
    assert decoded == command
    assert isinstance(decoded, m.Command)
    assert decoded.action == action


def test_an_unlock_until_locked_says_so_on_the_wire() -> None:
    wire = json.loads(codec.encode(_command(m.DoorUnlock(duration_s=None))))
    assert wire["action"] == {"action": "door.unlock", "duration_s": None}


def _models(annotation: object) -> list[type[m.Strict]]:
    args = getattr(annotation, "__args__", None)
    if args is None:
        return (
            [annotation]
            if isinstance(annotation, type) and issubclass(annotation, m.Strict)
            else []
        )
    return [t for a in args for t in _models(a)]


@pytest.mark.parametrize("model", _models(m.EdgeMessage), ids=lambda t: t.__name__)
def test_edge_messages_have_no_null_that_differs_from_absent(model: type[m.Strict]) -> None:
    """The codec leaves null fields out of edge messages (its fast path); that is only right
    while no field of theirs allows null with a default other than null."""
    for name, info in model.model_fields.items():
        allows_null = "None" in str(info.annotation)
        assert not allows_null or info.default is None or info.is_required(), (model, name)


def _example(kind: m.MessageType) -> object:
    return next(ex for ex in EXAMPLES if ex.message.type is kind)


def test_a_birth_from_a_node_older_than_configuration_push_still_validates() -> None:
    birth = _example(m.MessageType.NODE_BIRTH)
    data = json.loads(codec.encode(birth.message))  # type: ignore[attr-defined]
    del data["config_version"]
    inbound = codec.decode_for_topic(birth.topic, json.dumps(data).encode())  # type: ignore[attr-defined]
    assert isinstance(inbound.message, m.NodeBirth) and inbound.message.config_version is None


def test_a_configuration_for_another_node_does_not_belong_on_this_nodes_topic() -> None:
    config = _example(m.MessageType.NODE_CONFIG)
    data = json.loads(codec.encode(config.message))  # type: ignore[attr-defined]
    data["node"] = "v0002-edge"
    with pytest.raises(DecodeError) as err:
        codec.decode_for_topic(config.topic, json.dumps(data).encode())  # type: ignore[attr-defined]
    assert err.value.reason is RejectReason.TOPIC_MISMATCH


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"status": m.ConfigStatus.REFUSED}, "has a reason"),
        ({"status": m.ConfigStatus.APPLIED, "reason": "no"}, "has a reason"),
    ],
)
def test_a_refused_configuration_says_why(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        m.ConfigResult(**m.envelope(1), version=2, **fields)  # type: ignore[arg-type]


def test_configuration_answers_are_shared_and_presence_is_not() -> None:
    shared, whole = topics.ingest_subscriptions("g1")
    assert "$share/g1/gw/v1/+/+/cfgres" in shared
    assert whole == ["gw/v1/+/+/birth", "gw/v1/+/+/death"]

"""Rule evaluation on single messages (no services: occupancy rules do not query the database)."""

from __future__ import annotations

import pytest

from casework.rules import CancelTimer, Clear, Raise, RuleBook, StartTimer, evaluate
from casework.venues import VenueInfo
from gateway import codec, topics
from gateway import messages as m
from ingest import plausible

VENUE = VenueInfo("v1", "community_centre", 100, False, True, {}, "Asia/Shanghai", "g1", "c.d.g1")


def signals_for(count: int) -> list[type]:
    reading = m.Occupancy(**m.envelope(1), device="v1-counter1", zone="main", count=count,
                          entered=0, exited=0)  # fmt: skip
    inbound = codec.Inbound(
        topics.parse(topics.event("v1", "v1-edge", "v1-counter1", "occupancy")), reading
    )
    out = evaluate(inbound, VENUE, RuleBook())
    return [type(s) for s in out if "capacity" in getattr(s, "key", "")]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (105, [StartTimer]),  # over: the timer starts (an incident if it lasts)
        (150, [Raise, StartTimer]),  # far over: at once, and the over-capacity timer
        (95, []),  # dead band: neither raised nor cleared, so hovering does not flap
        (90, [CancelTimer, Clear, Clear]),  # clearly back: timer cancelled, both cleared
    ],
)
def test_capacity_rules_have_a_dead_band(count: int, expected: list[type]) -> None:
    assert signals_for(count) == expected


@pytest.mark.parametrize(
    ("capacity", "count", "believed"),
    [
        (100, 500, True),
        (100, 501, False),  # more than five times the capacity
        (10, 100, True),  # a small venue still holds a crowd of 100
        (10, 101, False),
        (None, 5_000, True),  # no capacity: the fixed limit
        (None, 1_000_000, False),
    ],
)
def test_implausible_counts_are_rejected_with_their_reason(
    capacity: int | None, count: int, believed: bool
) -> None:
    venue = VenueInfo("v1", "community_centre", capacity, False, True, {}, "Asia/Shanghai", "g1",
                      "c.d.g1")  # fmt: skip
    reading = m.Occupancy(**m.envelope(1), device="v1-counter1", zone="main", count=count,
                          entered=0, exited=0)  # fmt: skip
    inbound = codec.Inbound(
        topics.parse(topics.event("v1", "v1-edge", "v1-counter1", "occupancy")), reading
    )
    if believed:
        plausible.check(inbound, venue)
        return
    with pytest.raises(codec.DecodeError) as err:
        plausible.check(inbound, venue)
    assert err.value.reason is codec.RejectReason.IMPLAUSIBLE
    assert str(count) in err.value.detail and "check the counter" in err.value.detail

"""Readings too far outside what a device can measure to be true: rejected with their reason
before any rule sees them, so one bad counter cannot raise incidents (or propose emergencies)."""

from __future__ import annotations

from casework.venues import VenueInfo
from gateway.codec import DecodeError, Inbound, RejectReason
from gateway.messages import Occupancy

CAPACITY_FACTOR = 5  # a count above five times the venue's capacity is not a count
NO_CAPACITY_LIMIT = 5_000  # for a venue without a capacity: more than a large station holds
SMALLEST_LIMIT = 100  # a crowd can gather at a bus-stop-sized venue


def occupancy_limit(venue: VenueInfo) -> int:
    """The highest count believed at a venue."""
    if not venue.capacity:
        return NO_CAPACITY_LIMIT
    return max(CAPACITY_FACTOR * venue.capacity, SMALLEST_LIMIT)


def check(inbound: Inbound, venue: VenueInfo | None) -> None:
    """Raise DecodeError (implausible) for a reading no device of the venue could make."""
    msg = inbound.message
    if isinstance(msg, Occupancy) and venue is not None:
        limit = occupancy_limit(venue)
        if max(msg.count, msg.entered, msg.exited) > limit:
            raise DecodeError(
                RejectReason.IMPLAUSIBLE,
                f"occupancy {msg.count} (entered {msg.entered}, exited {msg.exited}) at {venue.id}"
                f" is over {limit} ({CAPACITY_FACTOR}x its capacity of {venue.capacity}, at least"
                f" {SMALLEST_LIMIT}); check the counter"
                if venue.capacity
                else f"occupancy {msg.count} at {venue.id} is over {limit}, the limit for a venue"
                " without a capacity; check the counter",
            )

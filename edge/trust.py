"""Whether a command may be executed: signed by the platform, and within its validity window.

The broker alone is not enough: anyone holding a service account could publish a command. A
command the platform did not sign, one valid for longer than `MAX_VALIDITY`, or one issued in
the future is refused with its reason, and the node answers it `rejected`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway import messages as m
from gateway.signing import SigningError, Verifier

MAX_VALIDITY = timedelta(seconds=300)  # deadline - ts at most
MAX_SKEW = timedelta(seconds=120)  # ts ahead of our clock at most (a node's clock may be off)


class Refusal(StrEnum):
    NO_KEY = "no_key"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    TOO_LONG = "too_long"
    FROM_FUTURE = "from_future"
    RETAINED = "retained"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    detail: str


def check(
    command: m.Command, payload: bytes, verifier: Verifier | None, now: datetime
) -> Refused | None:
    """Why `command` (received as `payload`) must not be executed; None if it may be."""
    if verifier is None:
        return Refused(
            Refusal.NO_KEY,
            "this node has no command_key in its site file, so it executes no command",
        )
    if command.sig is None:
        return Refused(Refusal.UNSIGNED, "not signed by the platform")
    try:
        verifier.verify(payload)
    except SigningError as exc:
        return Refused(Refusal.BAD_SIGNATURE, f"not signed by the platform: {exc}")
    if command.deadline - command.ts > MAX_VALIDITY:
        return Refused(
            Refusal.TOO_LONG,
            f"valid for {(command.deadline - command.ts).total_seconds():.0f} s,"
            f" more than {MAX_VALIDITY.total_seconds():.0f} s",
        )
    if command.ts > now + MAX_SKEW:
        return Refused(Refusal.FROM_FUTURE, f"issued in the future ({command.ts.isoformat()})")
    return None

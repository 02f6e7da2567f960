"""The channel interface: a recipient, a message, and what a send came to."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class Recipient(BaseModel):
    """A person as a channel sees them: a name, a language and their contact points."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    name: str
    language: str  # "zh-CN" | "en"
    phone: str | None = None
    email: str | None = None
    wecom_id: str | None = None
    dingtalk_id: str | None = None


class Message(BaseModel):
    """One message, already in the recipient's language; channels format it."""

    model_config = ConfigDict(frozen=True)

    key: str  # idempotency key: f"{delivery_id}" (or digest id), sent to providers that take one
    kind: str  # the event kind, e.g. "task.dispatched" ("digest" for a digest)
    severity: str | None  # "red" | "yellow" | "green" | None
    title: str
    body: str  # plain text, a few lines; channels format it (markdown for robots)
    link: str | None  # the short signed link that opens the task, if any


class Sent(BaseModel):
    """The provider took the message."""

    provider_ref: str | None = None


class Retry(BaseModel):
    """A passing failure (timeout, 5xx, 429, a provider's rate-limit code): try again later."""

    reason: str
    after_s: float | None = None  # from Retry-After or the provider's code; None: back off


class Failed(BaseModel):
    """A permanent failure (bad address, auth, rejected): final, fall back to the next channel."""

    reason: str


Outcome = Sent | Retry | Failed


class Channel(Protocol):
    """A way to reach a person; `send` never raises for provider trouble."""

    name: str  # "wecom" | "dingtalk" | "sms" | "voice" | "email" | "webhook" | "console"
    per_minute: int | None  # the provider's limit per sender (DingTalk robot: 20); None: none known

    def address(self, recipient: Recipient) -> str | None:
        """Where this channel reaches the person; None: they cannot be reached on it."""
        ...

    def send(self, message: Message, recipient: Recipient) -> Outcome:
        """Send one message; provider trouble becomes Retry or Failed, never an exception."""
        ...

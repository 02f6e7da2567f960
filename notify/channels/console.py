"""The console channel: the person's notification centre (and the live stream) in the web
console. A console delivery is 'sent' when it is written; nothing leaves the platform."""

from __future__ import annotations

from notify.channels.base import Message, Outcome, Recipient, Sent


class ConsoleChannel:
    name = "console"
    per_minute: int | None = None

    def address(self, recipient: Recipient) -> str | None:
        return recipient.person_id

    def send(self, message: Message, recipient: Recipient) -> Outcome:
        return Sent(provider_ref=None)  # the row is the message: the inbox reads it

"""A generic templated HTTP SMS gateway, for providers without an adapter of their own."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote_plus

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from notify.channels._adapter import (
    Adapter,
    ChannelSettings,
    http_client,
    passing_trouble,
    secret_missing,
)
from notify.channels._format import phone_digits, plain
from notify.channels.base import Failed, Message, Outcome, Recipient, Sent


class Method(StrEnum):
    POST = "POST"
    PUT = "PUT"


class SmsHttpSettings(ChannelSettings):
    """The gateway's URL, the body template and the bearer token."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_NOTIFY_SMS_HTTP_",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    url: str = Field(default="", description="the gateway's send URL")
    method: Method = Field(default=Method.POST, description="the HTTP method")
    content_type: str = Field(
        default="application/json",
        description="the body's type: JSON values are JSON-escaped, form values URL-encoded",
    )
    body_template: str = Field(
        default='{"to": "{phone}", "text": "{text}", "id": "{key}"}',
        description="the body, with {phone}, {text} and {key} (the idempotency key) put in",
    )
    token: SecretStr | None = Field(
        default=None, description="sent as 'Authorization: Bearer ...' (secret; needed if enabled)"
    )
    success_status: list[int] = Field(
        default=[200, 201, 202], description="HTTP statuses that mean the gateway took it"
    )
    per_minute: int | None = Field(
        default=None, ge=1, description="the gateway's limit a minute; unset: none known"
    )
    text_max_chars: int = Field(default=300, ge=20, description="longer texts are cut")
    ca_file: Path | None = Field(
        default=None, description="a CA file to trust instead of the system's; unset: system CAs"
    )

    def missing_secrets(self) -> list[str]:
        missing = [] if self.url else ["url"]
        return missing + (["token"] if secret_missing(self.token) else [])

    def https_fields(self) -> list[str]:
        return ["url"]


class SmsHttpChannel(Adapter):
    """Fills the body template for each message and posts it."""

    name = "sms"

    def __init__(self, settings: SmsHttpSettings) -> None:
        settings.require_secrets()
        assert settings.token is not None
        self.settings = settings
        self.per_minute = settings.per_minute
        self._headers = {
            "Authorization": f"Bearer {settings.token.get_secret_value()}",
            "Content-Type": settings.content_type,
        }
        self._client = http_client(settings.timeout_s, settings.ca_file)

    def address(self, recipient: Recipient) -> str | None:
        return phone_digits(recipient.phone)

    def body(self, message: Message, recipient: Recipient, address: str) -> str:
        """The template with its placeholders filled, each value escaped for the body's type."""
        text = plain(message, recipient.language)[: self.settings.text_max_chars]
        values = {"phone": address, "text": text, "key": message.key}
        if "json" in self.settings.content_type:
            escaped = {k: json.dumps(v, ensure_ascii=False)[1:-1] for k, v in values.items()}
        elif "x-www-form-urlencoded" in self.settings.content_type:
            escaped = {k: quote_plus(v) for k, v in values.items()}
        else:
            escaped = values
        body = self.settings.body_template
        # Plain replacement, not str.format: the template's own braces (JSON) stay as they are
        # and a message's text cannot reach anything but its own placeholder.
        for name, value in escaped.items():
            body = body.replace("{" + name + "}", value)
        return body

    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        response = self._client.request(
            self.settings.method.value,
            self.settings.url,
            content=self.body(message, recipient, address).encode(),
            headers=self._headers,
        )
        if response.status_code in self.settings.success_status:
            return Sent(provider_ref=response.headers.get("x-request-id"))
        trouble = passing_trouble(response)
        if trouble:
            return trouble
        return Failed(reason=f"gateway answered {response.status_code}")

    def close(self) -> None:
        self._client.close()

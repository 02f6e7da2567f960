"""What every adapter shares: the settings base, the send wrapper, metrics and HTTP answers."""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import Counter, Histogram
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from notify.channels.base import Failed, Message, Outcome, Recipient, Retry, Sent

log = logging.getLogger(__name__)

# httpx logs every request's URL at INFO, and some providers take their key in the URL (a WeCom
# robot's key, a DingTalk robot's access_token): keep those lines out of the logs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

PROVIDER_REQUESTS = Counter(
    "gridwatch_notify_provider_requests_total",
    "Messages handed to a channel's provider, by channel and outcome (sent, retry, failed)",
    ["channel", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "gridwatch_notify_provider_seconds",
    "Time a channel's provider took to answer one message",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class ChannelSettings(BaseSettings):
    """Fields every channel has; each channel's class sets its own env prefix."""

    enabled: bool = Field(default=False, description="send on this channel")
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="longest wait for the provider; then retried"
    )

    def missing_secrets(self) -> list[str]:
        """Names of the environment variables this channel needs but lacks."""
        return []

    def require_secrets(self) -> None:
        """Raise ValueError naming the variables when a secret the channel needs is missing."""
        prefix = str(self.model_config.get("env_prefix", ""))
        missing = self.missing_secrets()
        if missing:
            names = ", ".join(f"{prefix}{name.upper()}" for name in missing)
            raise ValueError(
                f"the {prefix.removeprefix('GRIDWATCH_NOTIFY_').rstrip('_').lower()} channel is "
                f"enabled but {names} is not set: set it, or set {prefix}ENABLED=false"
            )

    def check_production(self) -> None:
        """Refuse an enabled channel without its secrets, or one that would send in clear."""
        if not self.enabled:
            return
        self.require_secrets()
        prefix = str(self.model_config.get("env_prefix", ""))
        for name in self.https_fields():
            url = str(getattr(self, name))
            if not url.startswith("https://"):
                raise ValueError(f"{prefix}{name.upper()} must be an https:// URL in production")

    def https_fields(self) -> list[str]:
        """Fields holding a URL that must be https in production."""
        return []


def secret_missing(value: SecretStr | None) -> bool:
    """Whether a secret setting is unset or blank."""
    return value is None or not value.get_secret_value().strip()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying TLS context: the system's CAs, or only the given CA file."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def http_client(timeout_s: float, ca_file: Path | None = None) -> httpx.Client:
    """One client per channel, kept for its connections; every phase bounded by the timeout."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s), verify=tls_context(ca_file), follow_redirects=False
    )


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def passing_trouble(response: httpx.Response) -> Retry | None:
    """Retry for a 429 (with its Retry-After) or a 5xx; None for anything else."""
    if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
        return Retry(
            reason="429 too many requests", after_s=retry_after(response.headers.get("retry-after"))
        )
    if response.status_code >= 500:
        return Retry(reason=f"provider answered {response.status_code}")
    return None


def json_object(response: httpx.Response) -> dict[str, object] | None:
    """The answer's JSON object, or None when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


ROBOT_OK = 0
ROBOT_BUSY = -1  # "system busy": both robots' own code for trying again


def robot_outcome(response: httpx.Response, *, rate_limited: int) -> Outcome:
    """A group robot's answer (WeCom's and DingTalk's read alike): errcode 0 is sent; its
    rate-limit code waits the robot's minute; busy is tried again; any other code is final."""
    trouble = passing_trouble(response)
    if trouble:
        return trouble
    data = json_object(response)
    if data is None:
        return Failed(reason=f"robot answered {response.status_code} without JSON")
    errcode, errmsg = data.get("errcode"), str(data.get("errmsg", ""))[:200]
    if errcode == ROBOT_OK:
        return Sent(provider_ref=None)
    if errcode == rate_limited:
        return Retry(reason=f"robot rate limit ({errcode} {errmsg})", after_s=60.0)
    if errcode == ROBOT_BUSY:
        return Retry(reason=f"robot busy ({errcode} {errmsg})")
    return Failed(reason=f"robot refused the message ({errcode} {errmsg})")


class Adapter(ABC):
    """The send wrapper: address check, provider call, trouble to outcomes, metrics and logs."""

    name: str
    per_minute: int | None = None

    @abstractmethod
    def address(self, recipient: Recipient) -> str | None:
        """Where this person is reached on the channel; None: they cannot be."""

    @abstractmethod
    def _send(self, message: Message, recipient: Recipient, address: str) -> Outcome:
        """The provider call itself, its answer read as an outcome."""

    def send(self, message: Message, recipient: Recipient) -> Outcome:
        """Send one message; provider trouble becomes Retry or Failed, never an exception."""
        address = self.address(recipient)
        if address is None:
            outcome: Outcome = Failed(reason=f"{recipient.person_id} has no {self.name} address")
            self._record(message, recipient, outcome)
            return outcome
        started = time.monotonic()
        try:
            outcome = self._send(message, recipient, address)
        except httpx.TimeoutException:
            outcome = Retry(reason="provider timed out")
        except httpx.TransportError as error:
            # The exception's text never holds the URL (which may carry a robot's key).
            outcome = Retry(reason=f"provider unreachable ({type(error).__name__})")
        PROVIDER_SECONDS.labels(self.name).observe(time.monotonic() - started)
        self._record(message, recipient, outcome)
        return outcome

    def _record(self, message: Message, recipient: Recipient, outcome: Outcome) -> None:
        kind = type(outcome).__name__.lower()
        PROVIDER_REQUESTS.labels(self.name, kind).inc()
        if isinstance(outcome, Sent):
            log.info(
                "%s: sent message %s to %s (ref %s)",
                self.name, message.key, recipient.person_id, outcome.provider_ref,
            )  # fmt: skip
        else:
            log.warning(
                "%s: message %s to %s not sent (%s): %s",
                self.name, message.key, recipient.person_id, kind, outcome.reason,
            )  # fmt: skip

    def close(self) -> None:
        """Release the channel's connections (a channel that keeps none has nothing to do)."""
        return None

"""A thin layer over paho-mqtt 2: MQTT v5 clients configured the way every gridwatch part needs."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr

log = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE = 1


class PublishOutcome(StrEnum):
    """What a QoS 1 PUBACK means for the message's sender."""

    DELIVERED = "delivered"
    RETRY = "retry"  # the broker took it but gave it to no one, or is busy: send again later
    REFUSED = "refused"  # not authorized, malformed, too large: sending again cannot help


# PUBACK reason codes after which the same message should be sent again later.
_RETRY_CODES = frozenset(
    {
        # Nobody is subscribed. Telemetry topics have exactly one subscriber, the ingest's shared
        # subscription, which Mosquitto 2.0 does not restore from its store after a restart:
        # until the ingest reconnects and subscribes again, the broker would drop the message.
        0x10,
        0x89,  # server busy
        0x97,  # quota exceeded
    }
)


def publish_outcome(reason: ReasonCode) -> PublishOutcome:
    """Classify the broker's answer to a QoS 1 publish."""
    if reason.value in _RETRY_CODES:
        return PublishOutcome.RETRY
    return PublishOutcome.REFUSED if reason.is_failure else PublishOutcome.DELIVERED


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it reaches the network


class MqttSettings(BaseModel):
    """How to reach the broker and who to be there."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(default="127.0.0.1", description="broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(default=None, description="broker account")
    password: SecretStr | None = Field(default=None, description="broker account password")
    tls_ca: FilePath | None = Field(
        default=None, description="CA bundle; when set, the connection uses TLS"
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive")

    def as_account(self, username: str, password: str | None = None) -> MqttSettings:
        """The same broker, as another account (the password kept when none is given)."""
        changes: dict[str, object] = {"username": username}
        if password is not None:
            changes["password"] = SecretStr(password)
        return self.model_copy(update=changes)


class ConnectionWatch:
    """Tracks a client's connection state for code that must wait for it or report it."""

    def __init__(self, name: str, account: str | None = None) -> None:
        self.name = name
        self.account = account
        self.connected = threading.Event()
        self.last_reason: str = "never connected"
        self.refusal: str | None = None  # the broker's reason for refusing the last CONNECT

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.last_reason = str(reason)
        if reason.is_failure:
            if self.refusal != str(reason) or reason.value not in _CREDENTIALS_REFUSED:
                log.error("mqtt connect refused client=%s reason=%s%s", self.name, reason,
                          _what_to_check(self.account, reason))  # fmt: skip
            self.refusal = str(reason)
            return
        self.refusal = None
        log.info("mqtt connected client=%s session_present=%s", self.name, flags.session_present)
        self.connected.set()

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.last_reason = str(reason)
        level = logging.WARNING if reason.is_failure else logging.INFO
        log.log(level, "mqtt disconnected client=%s reason=%s", self.name, reason)


# CONNACK reason codes for credentials the broker does not take: bad user name or password
# (134) and not authorised (135, what Mosquitto's dynamic-security plugin answers for a wrong
# secret, an unknown account and a disabled one alike).
_CREDENTIALS_REFUSED = frozenset({134, 135})


def _what_to_check(account: str | None, reason: ReasonCode) -> str:
    """For a refusal of the credentials: which account, and what its owner should check."""
    if reason.value not in _CREDENTIALS_REFUSED or account is None:
        return ""
    return (
        f": the broker refused the credentials of account {account!r} ({reason}): check the"
        " secret in the site file, whether the node is disabled (`gridwatch node show"
        f" {account}`), or re-enrol it; retrying meanwhile"
    )


def new_client(
    client_id: str,
    settings: MqttSettings,
    *,
    manual_ack: bool = False,
    max_inflight: int = 1000,
    reconnect: bool = True,
) -> tuple[mqtt.Client, ConnectionWatch]:
    """An MQTT v5 client with credentials, TLS and connection tracking set up (not yet
    connected). `reconnect=False`: a lost connection stays lost (paho does not reconnect)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
        reconnect_on_failure=reconnect,
    )
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca is not None:
        client.tls_set(ca_certs=str(settings.tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(max_inflight)
    # paho's own queue is unbounded by default; callers that need a bound keep their own.
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    watch = ConnectionWatch(client_id, settings.username)
    client.on_connect = watch.on_connect
    client.on_disconnect = watch.on_disconnect
    return client, watch


def connect_properties(
    *, session_expiry_s: int | None = None, receive_maximum: int | None = None
) -> Properties:
    """CONNECT properties: how long the broker keeps our session, and how much it may send unacked."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session_expiry_s is not None:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def connect_async(
    client: mqtt.Client,
    settings: MqttSettings,
    *,
    clean_start: bool,
    properties: Properties | None = None,
) -> None:
    """Start connecting in paho's network thread; reconnects are automatic from then on."""
    client.connect_async(
        settings.host,
        settings.port,
        keepalive=settings.keepalive_s,
        clean_start=clean_start,
        properties=properties,
    )
    client.loop_start()

"""Mosquitto configuration: accounts, ACLs and limits, rendered from the node registry.

Two listeners, each with its own accounts (`per_listener_settings true`):

- the edge listener, where every edge node logs in with its own account, its client id is forced
  to its user name (so no node can take over another's session) and the ACL confines it to its
  own topic subtree;
- the service listener, for the platform's own services (ingest workers, API replicas), which
  keep their own client ids so that several workers can share one subscription. Bind it to an
  internal address only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, FilePath, model_validator

from gateway import topics
from gateway.client import is_loopback

# PBKDF2-SHA512 in Mosquitto's own `$7$` format. Node secrets are random 256-bit tokens, so the
# iteration count guards nothing a brute force could reach; it is kept moderate because the
# broker hashes on every connect, and a city's 200 nodes reconnect at once after an outage.
HASH_ITERATIONS = 10_000
_SALT_BYTES = 12
_HASH_BYTES = 64


class ServiceRole(StrEnum):
    INGEST = "ingest"
    API = "api"


class NodeAccount(BaseModel):
    """An edge node's broker account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(pattern=topics.ID_PATTERN)
    node: str = Field(pattern=topics.ID_PATTERN)
    password_hash: str = Field(pattern=r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


class ServiceAccount(BaseModel):
    """A platform service's broker account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(pattern=topics.ID_PATTERN)
    role: ServiceRole
    password_hash: str = Field(pattern=r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


class BrokerOptions(BaseModel):
    """Where the broker listens and keeps its data, and its queue limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge_host: str = Field(default="0.0.0.0", description="address edge nodes connect to")
    edge_port: int = Field(default=1883, ge=1, le=65535, description="edge listener port")
    service_host: str = Field(
        default="127.0.0.1", description="internal address for ingest and api; never public"
    )
    service_port: int = Field(default=1884, ge=1, le=65535, description="service listener port")
    max_queued_messages: int = Field(
        default=2_000_000, ge=1, description="per-session queue above the in-flight window"
    )
    max_queued_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="per-session queue size in bytes"
    )
    max_inflight_messages: int = Field(default=1000, ge=1, le=65535)
    max_packet_size: int = Field(
        default=256 * 1024, ge=1024, description="bytes; larger packets disconnect"
    )
    autosave_interval_s: int = Field(default=30, ge=1, description="how often the store is written")
    user: str | None = Field(
        default=None, description="system user the broker drops to when started as root"
    )
    # --- TLS on the edge listener (item 14) ---
    tls_cert: FilePath | None = Field(
        default=None, description="the edge listener's certificate (PEM, chain after it)"
    )
    tls_key: FilePath | None = Field(default=None, description="its private key (PEM)")
    tls_ca: FilePath | None = Field(
        default=None, description="CA bundle Mosquitto uses to check client certificates"
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> BrokerOptions:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-ca needs --tls-cert and --tls-key")
        return self

    @property
    def edge_tls(self) -> bool:
        return self.tls_cert is not None

    def plaintext_exposure(self) -> str | None:
        """Why the edge listener would carry node secrets in plaintext over a network, if it would."""
        if self.edge_tls or is_loopback(self.edge_host):
            return None
        return (
            f"the edge listener binds {self.edge_host}, which other machines can reach, without"
            " TLS: node secrets and every message would cross the network in plaintext; give"
            " --tls-cert and --tls-key, or --edge-host 127.0.0.1 behind a TLS-terminating proxy"
        )


def hash_password(
    password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None
) -> str:
    """Hash a password the way Mosquitto's password file expects it."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_secret() -> str:
    """A fresh random credential for a node or a service."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The generated files, by name inside the broker's configuration folder."""

    config: str
    edge_passwd: str
    edge_acl: str
    service_passwd: str
    service_acl: str

    def write(self, folder: Path) -> Path:
        """Write every file into `folder` (private modes) and return the main configuration path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        for name, text in (
            ("edge.passwd", self.edge_passwd),
            ("edge.acl", self.edge_acl),
            ("service.passwd", self.service_passwd),
            ("service.acl", self.service_acl),
            ("mosquitto.conf", self.config),
        ):
            path = folder / name
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.chmod(0o600 if "passwd" in name else 0o644)
            tmp.replace(path)
        return folder / "mosquitto.conf"


def node_acl(site: str, node: str) -> list[str]:
    """The topics a node may use: publish only under its own subtree, read only its commands."""
    prefix = topics.node_prefix(site, node)
    return [
        f"topic write {topics.birth(site, node)}",
        f"topic write {topics.death(site, node)}",
        f"topic write {prefix}/{topics.Channel.EVENT}/#",
        f"topic write {prefix}/{topics.Channel.COMMAND_RESULT}/#",
        f"topic read {topics.node_commands_filter(site, node)}",
    ]


def service_acl(role: ServiceRole) -> list[str]:
    """What each platform service may do on the broker."""
    root = topics.ROOT
    match role:
        case ServiceRole.INGEST:
            # The ingest's leader publishes the platform's queued commands (emergency mode…).
            return [f"topic read {root}/#", f"topic write {root}/+/+/{topics.Channel.COMMAND}/#"]
        case ServiceRole.API:
            return [
                f"topic write {root}/+/+/{topics.Channel.COMMAND}/#",
                f"topic read {root}/#",
            ]


def _edge_tls(options: BrokerOptions) -> str:
    """The edge listener's TLS lines (nothing without a certificate)."""
    if options.tls_cert is None or options.tls_key is None:
        return "# No TLS: loopback only (see BrokerOptions.plaintext_exposure)\n"
    lines = [
        "# TLS: nodes check this certificate against their tls_ca",
        f"certfile {options.tls_cert.resolve()}",
        f"keyfile {options.tls_key.resolve()}",
        "tls_version tlsv1.2",
    ]
    if options.tls_ca is not None:
        lines.append(f"cafile {options.tls_ca.resolve()}")
    return "\n".join(lines) + "\n"


def render(
    options: BrokerOptions,
    folder: Path,
    nodes: list[NodeAccount],
    services: list[ServiceAccount],
) -> BrokerFiles:
    """Render the Mosquitto configuration for these accounts; `folder` is where it will live."""
    folder = folder.resolve()
    seen: set[str] = set()
    for name in [n.node for n in nodes] + [s.username for s in services]:
        if name in seen:
            raise ValueError(f"broker account {name!r} is defined twice")
        seen.add(name)

    edge_acl = ["# Edge nodes: each confined to its own subtree. Generated; do not edit."]
    for n in sorted(nodes, key=lambda a: a.node):
        edge_acl += ["", f"user {n.node}", *node_acl(n.site, n.node)]
    svc_acl = ["# Platform services. Generated; do not edit."]
    for s in sorted(services, key=lambda a: a.username):
        svc_acl += ["", f"user {s.username}", *service_acl(s.role)]

    config = f"""\
# Mosquitto configuration for gridwatch, generated by `gridwatch broker config`.
# Do not edit by hand: change the registry or the options and generate it again.

per_listener_settings true

# --- Persistence -------------------------------------------------------------------------
# Sessions and queued QoS 1 messages survive a restart. Mosquitto 2.0 writes its store every
# autosave_interval seconds and on a clean shutdown: a clean restart loses nothing, a hard
# crash can lose what was acknowledged since the last save (the edge outbox covers what the
# broker had not yet acknowledged).
persistence true
persistence_location {folder / "data"}/
autosave_interval {options.autosave_interval_s}
# Sessions of clients that never come back are dropped after two weeks.
persistent_client_expiration 14d

# --- Limits, set on purpose --------------------------------------------------------------
# The defaults (1000 queued messages per session, 20 in flight) silently DROP QoS 1 messages
# once an ingest worker falls behind or restarts under load. A worker's persistent session
# must be able to hold a long backlog (hours of a city's traffic), so the queue is sized in
# millions and bounded by bytes instead.
max_queued_messages {options.max_queued_messages}
max_queued_bytes {options.max_queued_bytes}
# Outgoing QoS 1 window for MQTT 3 clients (v5 clients announce their own Receive Maximum);
# the ingest batches up to this many unacknowledged messages per commit.
max_inflight_messages {options.max_inflight_messages}
# Oversized packets disconnect the sender. The ingest's own payload limit is lower, so a
# merely large payload still reaches it and is recorded as rejected rather than vanishing.
max_packet_size {options.max_packet_size}
set_tcp_nodelay true
{f"user {options.user}" if options.user else ""}

# --- Logging -----------------------------------------------------------------------------
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S

# --- Edge listener: one account per node, client id forced to the account name ----------
listener {options.edge_port} {options.edge_host}
allow_anonymous false
use_username_as_clientid true
password_file {folder / "edge.passwd"}
acl_file {folder / "edge.acl"}
{_edge_tls(options)}
# --- Service listener: ingest workers and API replicas; internal address only -------------
listener {options.service_port} {options.service_host}
allow_anonymous false
password_file {folder / "service.passwd"}
acl_file {folder / "service.acl"}
"""
    return BrokerFiles(
        config=config,
        edge_passwd="".join(f"{n.node}:{n.password_hash}\n" for n in nodes),
        edge_acl="\n".join(edge_acl) + "\n",
        service_passwd="".join(f"{s.username}:{s.password_hash}\n" for s in services),
        service_acl="\n".join(svc_acl) + "\n",
    )

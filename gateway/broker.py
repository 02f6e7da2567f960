"""Mosquitto configuration: accounts, roles and limits, rendered from the node registry.

Accounts and access control live in Mosquitto's dynamic-security plugin (shipped with Mosquitto
2.0), which checks subscriptions as well as publishes, per role, deny by default:

- every edge node has its own account and role: it may publish only under its own topic subtree
  and subscribe only to its own commands and receipts; any other subscription (`#`, `$SYS/#`,
  another node's commands, the ingest's shared subscription) is refused at SUBACK;
- each ingest worker slot has an account `PREFIX-SLOT` sharing the ingest role: it subscribes to
  the shared subscription of one configured group only, publishes commands and receipts;
- one control account (`gridwatch-control`) may use the plugin's control topic only: it is the
  broker's administrator, held by the ingest leader, which reconciles the node accounts and roles
  with the registry while the broker runs (registry/broker_sync.py);
- client ids are forced to account names, so no account can take over another's session.

The file written here is the plugin's initial state; once the broker runs, the plugin owns it
(and saves every change into it), and the node accounts change only through the control topic.

There is no account for the API: it never speaks MQTT (commands go through the database).

Two listeners: the edge listener, where nodes connect, and the service listener for the ingest on
an internal address. Both authenticate against the same plugin.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, FilePath, model_validator

from gateway import topics
from gateway.client import is_loopback

# PBKDF2-SHA512 in Mosquitto's own `$7$` format. Node secrets are random 256-bit tokens, so the
# iteration count guards nothing a brute force could reach; it is kept moderate because the
# broker hashes on every connect, and a city's 200 nodes reconnect at once after an outage.
HASH_ITERATIONS = 10_000
_SALT_BYTES = 12  # Mosquitto's SALT_LEN: the plugin refuses any other length
_HASH_BYTES = 64
_HASH_PATTERN = r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$"
DYNSEC_PLUGIN_NAME = "mosquitto_dynamic_security.so"
DYNSEC_FILE = "dynamic-security.json"
INGEST_ROLE = "ingest"
CONTROL_ROLE = "control"
CONTROL_USER = "gridwatch-control"
NODE_ROLE_PREFIX = "node:"
SECRET_MARK = "secret issued "  # a node account's textdescription: which secret the broker has


class NodeAccount(BaseModel):
    """An edge node's broker account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(pattern=topics.ID_PATTERN)
    node: str = Field(pattern=topics.ID_PATTERN)
    password_hash: str = Field(pattern=_HASH_PATTERN)
    disabled: bool = False
    secret_issued_at: datetime | None = Field(
        default=None, description="when the secret behind the hash was issued (if known)"
    )


def secret_mark(issued_at: datetime | None) -> str:
    """What a node account's textdescription says about its secret, so that the reconcile can
    tell whether the broker has the registry's current one (the broker never shows passwords)."""
    if issued_at is None:
        return ""
    return SECRET_MARK + issued_at.astimezone(UTC).isoformat(timespec="microseconds")


def node_role_name(node: str) -> str:
    return f"{NODE_ROLE_PREFIX}{node}"


class IngestAccounts(BaseModel):
    """The ingest workers' accounts: one per slot (`PREFIX-SLOT`), one password, one role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="ingest", pattern=r"^[A-Za-z0-9_-]{1,48}$")
    slots: int = Field(default=16, ge=1, le=1000, description="worker slots 0..slots-1")
    password_hash: str = Field(pattern=_HASH_PATTERN)
    share_groups: tuple[str, ...] = Field(
        min_length=1, description="shared-subscription groups the ingest may join"
    )

    def usernames(self) -> list[str]:
        return [f"{self.prefix}-{slot}" for slot in range(self.slots)]


class BrokerOptions(BaseModel):
    """Where the broker listens and keeps its data, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge_host: str = Field(default="0.0.0.0", description="address edge nodes connect to")
    edge_port: int = Field(default=1883, ge=1, le=65535, description="edge listener port")
    service_host: str = Field(
        default="127.0.0.1", description="internal address for the ingest; never public"
    )
    service_port: int = Field(default=1884, ge=1, le=65535, description="service listener port")
    max_connections: int = Field(
        default=5_000,
        ge=1,
        description="connections the edge listener holds at most (nodes, and clients that never"
        " send CONNECT, which Mosquitto 2.0 keeps for 90 s)",
    )
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
    log_file: Path | None = Field(
        default=None,
        description="a file the broker also logs to (refused connects are counted from it by"
        " the ingest leader: GRIDWATCH_BROKER_LOG_FILE); default: broker.log in its folder",
    )
    user: str | None = Field(
        default=None, description="system user the broker drops to when started as root"
    )
    plugin: Path | None = Field(
        default=None, description="the dynamic-security plugin; found in the usual places if unset"
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
    """Hash a password the way Mosquitto expects it (`$7$iterations$salt$hash`)."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_secret() -> str:
    """A fresh random credential for a node or a service."""
    return secrets.token_urlsafe(32)


def new_share_group() -> str:
    """A shared-subscription group name nobody can guess."""
    return f"ingest_{secrets.token_hex(12)}"


def find_plugin() -> Path:
    """Where Mosquitto's dynamic-security plugin is installed."""
    candidates = [
        *sorted(glob.glob(f"/usr/lib/*/{DYNSEC_PLUGIN_NAME}")),
        f"/usr/lib/{DYNSEC_PLUGIN_NAME}",
        f"/usr/local/lib/{DYNSEC_PLUGIN_NAME}",
    ]
    for c in candidates:
        if Path(c).exists():
            return Path(c)
    raise RuntimeError(
        f"Mosquitto's dynamic-security plugin ({DYNSEC_PLUGIN_NAME}) was not found: install "
        "Mosquitto 2.0 or newer (Debian: `apt-get install mosquitto`) or give its path"
    )


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def node_role(site: str, node: str) -> dict[str, Any]:
    """A node's role: publish only under its own subtree, read only its commands, receipts and
    configuration."""
    prefix = topics.node_prefix(site, node)
    sends = [
        topics.birth(site, node),
        topics.death(site, node),
        f"{prefix}/{topics.Channel.EVENT}/#",
        f"{prefix}/{topics.Channel.COMMAND_RESULT}/#",
        topics.config_result(site, node),
    ]
    reads = topics.node_subscriptions(site, node)
    acls = [_acl("publishClientSend", t) for t in sends]
    acls += [_acl("subscribeLiteral", t) for t in reads]
    acls += [_acl("publishClientReceive", t) for t in reads]
    return {"rolename": node_role_name(node), "acls": acls}


def ingest_role(share_groups: tuple[str, ...]) -> dict[str, Any]:
    """The ingest: its shared subscription (of the configured groups only) and presence; it
    publishes commands and receipts, and clears retained messages nodes should not have left."""
    root = topics.ROOT
    subs = [f for g in share_groups for f in topics.ingest_subscriptions(g)[0]]
    subs += topics.ingest_subscriptions(share_groups[0])[1]
    sends = [
        f"{root}/+/+/{topics.Channel.COMMAND}/#",
        f"{root}/+/+/{topics.Channel.RECEIPT}",
        f"{root}/+/+/{topics.Channel.CONFIG}",
        # Only ever an empty retained payload, to delete a retained message a node left on a
        # topic where none belongs (see ingest.worker): dynamic security cannot say "retained
        # only", so this is as narrow as it gets.
        f"{root}/+/+/{topics.Channel.EVENT}/#",
        f"{root}/+/+/{topics.Channel.COMMAND_RESULT}/#",
        f"{root}/+/+/{topics.Channel.DEATH}",
    ]
    acls = [_acl("subscribeLiteral", f) for f in subs]
    acls += [_acl("publishClientReceive", f"{root}/#")]
    acls += [_acl("publishClientSend", t) for t in sends]
    return {"rolename": INGEST_ROLE, "acls": acls}


def control_role() -> dict[str, Any]:
    """The broker's administrator: the plugin's control topic and its answers, nothing else."""
    answers = "$CONTROL/dynamic-security/v1/response"
    acls = [
        _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
        _acl("subscribeLiteral", answers),
        _acl("publishClientReceive", answers),
    ]
    return {"rolename": CONTROL_ROLE, "acls": acls}


def _client(
    username: str, password_hash: str, role: str, *, disabled: bool = False, text: str = ""
) -> dict[str, Any]:
    _, _, iterations, salt, digest = password_hash.split("$")
    client: dict[str, Any] = {
        "username": username,
        "password": digest,
        "salt": salt,
        "iterations": int(iterations),
        "roles": [{"rolename": role, "priority": 0}],
    }
    if text:
        client["textdescription"] = text
    if disabled:
        client["disabled"] = True
    return client


def dynsec_config(
    nodes: list[NodeAccount], ingest: IngestAccounts, control_hash: str | None = None
) -> dict[str, Any]:
    """The dynamic-security plugin's file: clients, roles, deny-by-default access. Disabled
    nodes are there, disabled, so the running broker and this file mean the same."""
    names = [n.node for n in nodes] + ingest.usernames() + [CONTROL_USER]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"broker accounts {doubled} are defined twice")
    ordered = sorted(nodes, key=lambda a: a.node)
    clients = [
        _client(n.node, n.password_hash, node_role_name(n.node), disabled=n.disabled,
                text=secret_mark(n.secret_issued_at))
        for n in ordered
    ]  # fmt: skip
    clients += [_client(u, ingest.password_hash, INGEST_ROLE) for u in ingest.usernames()]
    roles = [node_role(n.site, n.node) for n in ordered]
    roles.append(ingest_role(ingest.share_groups))
    if control_hash is not None:
        clients.append(_client(CONTROL_USER, control_hash, CONTROL_ROLE))
        roles.append(control_role())
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The generated files, by name inside the broker's configuration folder."""

    config: str
    dynsec: str

    def write(self, folder: Path) -> Path:
        """Write every file into `folder` (private modes) and return the main configuration path."""
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        (folder / "data").mkdir(exist_ok=True)
        for name, text in ((DYNSEC_FILE, self.dynsec), ("mosquitto.conf", self.config)):
            path = folder / name
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.chmod(0o600)
            tmp.replace(path)
        return folder / "mosquitto.conf"


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
    ingest: IngestAccounts,
    control_hash: str | None = None,
) -> BrokerFiles:
    """Render the Mosquitto configuration for these accounts; `folder` is where it will live.
    `control_hash`: the control account's password hash (no control account without it)."""
    folder = folder.resolve()
    plugin = options.plugin or find_plugin()
    dynsec = json.dumps(dynsec_config(nodes, ingest, control_hash), indent=1) + "\n"
    log_file = (options.log_file or folder / "broker.log").resolve()

    config = f"""\
# Mosquitto configuration for gridwatch, generated by `gridwatch broker config`.
# Do not edit by hand: change the registry or the options and generate it again.

# --- Accounts and access: the dynamic-security plugin, deny by default -------------------
# One set of accounts for both listeners (the plugin does not work per listener in 2.0).
# Subscriptions are checked too: a node may subscribe to its own commands and receipts only.
per_listener_settings false
allow_anonymous false
plugin {plugin}
plugin_opt_config_file {folder / DYNSEC_FILE}

# --- Persistence -------------------------------------------------------------------------
# Sessions and queued QoS 1 messages survive a restart. Mosquitto 2.0 writes its store every
# autosave_interval seconds and on a clean shutdown: a hard crash loses what it acknowledged
# since the last save. Nothing is lost end to end all the same: an edge node forgets a message
# only when the platform's receipt says it is stored in the database, and sends the rest again.
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
# The file is read by the ingest leader, which counts refused connects (broker_refusals).
log_dest stderr
log_dest file {log_file}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S

# --- Edge listener: where the venues' nodes connect ---------------------------------------
listener {options.edge_port} {options.edge_host}
# Client ids are account names, so no account can take over another's session (a listener
# setting in Mosquitto 2.0, whatever per_listener_settings says).
use_username_as_clientid true
# A bound on what a flood of connections can hold; a client that never sends CONNECT is
# dropped after 90 s (fixed in Mosquitto 2.0).
max_connections {options.max_connections}
{_edge_tls(options)}
# --- Service listener: the ingest workers; internal address only --------------------------
listener {options.service_port} {options.service_host}
use_username_as_clientid true
"""
    return BrokerFiles(config=config, dynsec=dynsec)

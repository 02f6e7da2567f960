"""Enrolment: a one-time code an installer exchanges for the node's secret and site file.

An admin makes a code for a node (`create_code`): short enough to type, random enough not to
guess (50 bits, and redemption is throttled), valid for hours, used once; only its SHA-256 is
stored. The edge agent redeems it (`redeem`, behind `POST /api/v1/enrol`) and receives the
node's complete site file with a new secret in it, so no secret travels by message or e-mail.
Every step is in the audit log. A wrong, used or expired code gets the same answer: an
attacker learns nothing about which codes exist.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from pydantic import Field, FilePath, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.client import is_loopback
from ingest import audit
from registry import nodeconfig
from registry.secrets import issue_secret

Conn = psycopg.Connection[Any]

# Crockford's base32 without the letters people confuse (I, L, O, U): 10 characters, 50 bits.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS = 10
_GROUP = 5
MAX_VALID_HOURS = 24 * 7
INVALID = "invalid or expired enrolment code; ask the platform's administrator for a new one"
DEFAULT_OUTBOX = "/var/lib/gridwatch-edge/outbox.db"


class EnrolmentError(ValueError):
    """A node that cannot be enrolled (disabled; the platform not set up for it)."""


class InvalidCode(EnrolmentError):
    """A wrong, used or expired code, or one for a disabled node: always the same sentence."""

    def __init__(self) -> None:
        super().__init__(INVALID)


class EdgeBrokerSettings(BaseSettings):
    """How edge nodes reach the broker, as written into their site files."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_EDGE_BROKER_", frozen=True, extra="ignore"
    )

    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="the broker's edge listener as nodes reach it: mqtts://host:8883 (TLS) or"
        " mqtt://host:1883; written into site files",
    )
    ca_file: FilePath | None = Field(
        default=None,
        description="the CA certificate (PEM) that signed the edge listener's certificate;"
        " copied into site files (needed with mqtts://)",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not mqtt://host:port or mqtts://host:port")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def ca_pem(self) -> str | None:
        return Path(self.ca_file).read_text() if self.ca_file is not None else None


def _hash(code: str) -> bytes:
    return hashlib.sha256(normalise(code).encode()).digest()


def normalise(code: str) -> str:
    """A code as typed (any case, spaces or dashes, O for 0, I or L for 1) to its canonical form."""
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


def _audit(conn: Conn, actor: str, action: str, node_id: str, detail: dict[str, Any],
           client: str) -> None:  # fmt: skip
    audit.write(conn, actor, action, node_id, detail, client)


def enabled_node(conn: Conn, node_id: str) -> str:
    """The node's venue; LookupError / EnrolmentError when it is missing or disabled."""
    row = conn.execute(
        """SELECT n.venue_id, n.disabled OR v.disabled FROM edge_nodes n
           JOIN venues v ON v.id = n.venue_id WHERE n.id = %s""",
        (node_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no edge node {node_id!r}: register it first (gridwatch registry apply)")
    if row[1]:
        raise EnrolmentError(f"edge node {node_id} (or its venue) is disabled: enable it first")
    return str(row[0])


def create_code(
    conn: Conn, node_id: str, actor: str, valid_hours: float = 24, *, client: str = ""
) -> str:
    """A new one-time code for `node_id`, valid `valid_hours`; shown once, only its hash kept.
    Call inside a transaction; it is audited in it."""
    if not 0 < valid_hours <= MAX_VALID_HOURS:
        raise ValueError(f"an enrolment code is valid for 0 to {MAX_VALID_HOURS} hours, not"
                         f" {valid_hours:g}")  # fmt: skip
    enabled_node(conn, node_id)
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    code = "-".join(raw[i : i + _GROUP] for i in range(0, _CODE_CHARS, _GROUP))
    expires = conn.execute(
        """INSERT INTO enrolment_codes (code_hash, node_id, created_by, expires_at)
           VALUES (%s, %s, %s, now() + %s) RETURNING expires_at""",
        (_hash(code), node_id, actor, timedelta(hours=valid_hours)),
    ).fetchone()
    assert expires is not None
    _audit(conn, actor, "node.enrolment_code", node_id,
           {"valid_hours": valid_hours, "expires_at": expires[0].isoformat()}, client)  # fmt: skip
    return code


def redeem(
    conn: Conn, code: str, client: str, edge_broker: EdgeBrokerSettings | None = None
) -> tuple[str, dict[str, Any]]:
    """Use a code once: the node's new secret and its complete site file. InvalidCode for a
    wrong, used or expired code or a disabled node, audited either way. Call inside a
    transaction, and commit it on InvalidCode too (its audit row); roll back on any other
    error, so that the code stays usable."""
    # Taken and marked in one statement: two redemptions of one code cannot both succeed.
    row = conn.execute(
        """UPDATE enrolment_codes c SET used_at = now(), used_from = %s
           FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           WHERE c.code_hash = %s AND n.id = c.node_id AND c.used_at IS NULL
             AND c.expires_at > now() AND NOT n.disabled AND NOT v.disabled
           RETURNING c.node_id, c.created_by""",
        (client[:200], _hash(code)),
    ).fetchone()
    if row is None:
        known = conn.execute(
            """SELECT c.node_id, c.used_at IS NOT NULL, c.expires_at <= now(), n.disabled
               FROM enrolment_codes c JOIN edge_nodes n ON n.id = c.node_id
               WHERE c.code_hash = %s""",
            (_hash(code),),
        ).fetchone()
        why = "unknown code"
        if known is not None:
            why = "used" if known[1] else "expired" if known[2] else "node disabled"
        # The reason is for admins reading the audit log, not for whoever tried the code.
        _audit(conn, "enrolment", "node.enrol.failed", str(known[0]) if known else "",
               {"reason": why}, client)  # fmt: skip
        raise InvalidCode()
    node_id, created_by = str(row[0]), str(row[1])
    secret = issue_secret(conn, node_id)
    site = site_file(conn, node_id, secret, edge_broker or EdgeBrokerSettings())
    _audit(conn, f"node:{node_id}", "node.enrol", node_id,
           {"code_by": created_by, "config_version": site["config_version"]}, client)  # fmt: skip
    return secret, site


def site_file(
    conn: Conn, node_id: str, secret: str, edge_broker: EdgeBrokerSettings
) -> dict[str, Any]:
    """The node's complete site file (as edge.config.SiteConfig reads it): the broker and its
    CA, the node and its venue, the platform's command key, the devices with their drivers at
    the current configuration version, outbox defaults."""
    config = nodeconfig.build(conn, node_id)
    command_key = nodeconfig.command_public_key(conn)
    if command_key is None:
        raise EnrolmentError(
            "the platform's command key is not registered yet (start the ingest once with"
            " GRIDWATCH_COMMAND_KEY_FILE, or run `gridwatch up`): without it the node would"
            " trust no command and no configuration"
        )
    ca = edge_broker.ca_pem()
    if edge_broker.tls and ca is None:
        raise EnrolmentError(
            f"GRIDWATCH_EDGE_BROKER_URL is {edge_broker.url} (TLS) but"
            " GRIDWATCH_EDGE_BROKER_CA_FILE is not set: nodes need the CA that signed the"
            " broker's certificate"
        )
    if not edge_broker.tls and not is_loopback(edge_broker.host):
        raise EnrolmentError(
            f"GRIDWATCH_EDGE_BROKER_URL is {edge_broker.url}: plaintext MQTT to another machine,"
            " which nodes refuse (their secret would cross the network in the clear); use"
            " mqtts://HOST:8883 and GRIDWATCH_EDGE_BROKER_CA_FILE"
        )
    broker: dict[str, Any] = {"host": edge_broker.host, "port": edge_broker.port,
                              "password": secret}  # fmt: skip
    site: dict[str, Any] = {"site": config.site, "node": node_id, "broker": broker}
    if ca is not None:
        site["broker_ca"] = ca
    # The site secret keys the hashing of card numbers at this site; derived from nothing the
    # platform keeps, so credentials' hashes from different sites never match.
    site["site_secret"] = secrets.token_urlsafe(32)
    site["command_key"] = command_key
    site["outbox"] = {"path": DEFAULT_OUTBOX, "durability": "full"}
    site["config_version"] = config.version
    site["devices"] = [
        {k: v for k, v in dev.model_dump(mode="json").items() if v is not None}
        for dev in config.devices
    ]
    return site

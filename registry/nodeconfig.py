"""Each node's configuration, built from the registry and pushed to it over MQTT.

A node's `config_version` (edge_nodes) moves with its devices (a trigger of migration 013);
`config_published` is the last version sent. The leader duty here publishes, retained and
signed with the platform's command key, the configuration of every enabled node whose wanted
version is ahead of the published one: on taking the lead, at once on a `node:<id>` notice, and
on a timer (a publish that failed is tried again). What each node runs is in node_presence
(`config_version` from its birth and answers, `config_error` from a refusal).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from gateway import codec, topics
from gateway import messages as m
from gateway.signing import Signer
from ingest.commands import Publish
from ingest.groups import WHOLE, Scope, within

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
COMMAND_KEY_NAME = "command-signing"  # platform_keys: the public half of the command key
_BATCH = 500
_PUBLISH_WAIT_S = 5.0


def build(conn: Conn, node_id: str) -> m.NodeConfig:
    """The configuration a node should run: its enabled devices, at the registry's version."""
    row = conn.execute(
        "SELECT venue_id, config_version FROM edge_nodes WHERE id = %s", (node_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no edge node {node_id!r}: register it first (gridwatch registry apply)")
    site, version = str(row[0]), int(row[1])
    # Read after the version: a device changed in between only makes this configuration newer
    # than its number, and the next version (already bumped) is sent right after.
    devices = conn.execute(
        """SELECT id, kind::text, driver, model, zone, settings FROM devices
           WHERE node_id = %s AND NOT disabled ORDER BY id""",
        (node_id,),
    ).fetchall()
    return m.NodeConfig(
        v=m.CONTRACT_VERSION, ts=datetime.now(UTC), site=site, node=node_id, version=version,
        devices=tuple(
            m.ConfigDevice(id=str(d), kind=m.DeviceKind(str(k)), driver=str(drv),
                           model=model, zone=zone, settings=settings or {})
            for d, k, drv, model, zone, settings in devices
        ),
    )  # fmt: skip


def payload(config: m.NodeConfig, signer: Signer) -> bytes:
    """The signed wire payload of a configuration."""
    obj = signer.sign(codec.to_wire(config))
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def register_command_key(conn: Conn, signer: Signer) -> None:
    """Publish the command key's public half for whoever writes site files (the API, the
    command line); a different key already there is reported, not replaced."""
    raw = base64.b64decode(signer.public_key())
    row = conn.execute(
        """INSERT INTO platform_keys (name, public_key) VALUES (%s, %s)
           ON CONFLICT (name) DO NOTHING RETURNING name""",
        (COMMAND_KEY_NAME, raw),
    ).fetchone()
    if row is None:
        held = conn.execute(
            "SELECT public_key FROM platform_keys WHERE name = %s", (COMMAND_KEY_NAME,)
        ).fetchone()
        if held is not None and bytes(held[0]) != raw:
            log.error(
                "the command key registered in platform_keys is not this ingest's"
                " (GRIDWATCH_COMMAND_KEY_FILE): site files written now name the other one,"
                " and their nodes refuse this ingest's commands and configurations"
            )


def command_public_key(conn: Conn) -> str | None:
    """The platform's command-signing public key as a site file holds it (base64), if known."""
    row = conn.execute(
        "SELECT public_key FROM platform_keys WHERE name = %s", (COMMAND_KEY_NAME,)
    ).fetchone()
    return base64.b64encode(bytes(row[0])).decode() if row is not None else None


class NodeConfigDuty:
    """The ingest leader's duty (ingest.leader.Duty) of pushing node configurations."""

    name = "node-config"

    def __init__(self, signer: Signer, interval_s: float = 30.0, scope: Scope = WHOLE) -> None:
        """`scope`: the ingest group whose broker carries the nodes configured here."""
        self.signer = signer
        self.scope = scope
        self.interval_s = interval_s
        self._key_registered = False

    def run(self, conn: Conn, publish: Publish, changed: frozenset[str]) -> None:
        if not self._key_registered:
            register_command_key(conn, self.signer)
            self._key_registered = True
        due = conn.execute(
            f"""SELECT n.id FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
               JOIN territory t ON t.id = v.grid_id
               WHERE NOT n.disabled AND n.config_version > n.config_published
                 AND {within("t.path")}
               ORDER BY n.id LIMIT %s""",
            (self.scope.param(), _BATCH),
        ).fetchall()
        for (node_id,) in due:
            self.push(conn, publish, str(node_id))

    def stop(self) -> None:
        """Nothing to let go of: configurations go out on the worker's own connection."""

    def push(self, conn: Conn, publish: Publish, node_id: str) -> bool:
        """Publish one node's configuration (retained) and record it as sent; False if the
        broker did not take it (tried again next round)."""
        config = build(conn, node_id)
        data = payload(config, self.signer)
        if len(data) > codec.CONFIG_MAX_PAYLOAD:
            log.error(
                "configuration of node %s is %d bytes, over the %d a node reads: not sent; give"
                " its devices shorter settings or split them over two nodes",
                node_id, len(data), codec.CONFIG_MAX_PAYLOAD,
            )  # fmt: skip
            return False
        info = publish(topics.config(config.site, node_id), data, retain=True)
        try:
            info.wait_for_publish(_PUBLISH_WAIT_S)
        except (RuntimeError, ValueError) as exc:  # not connected, or the publish failed
            log.warning("configuration not published yet node=%s version=%d: %s",
                        node_id, config.version, exc)  # fmt: skip
            return False
        if not info.is_published():
            return False
        conn.execute(
            """UPDATE edge_nodes SET config_published = %s
               WHERE id = %s AND config_published < %s""",
            (config.version, node_id, config.version),
        )
        log.info("configuration published node=%s site=%s version=%d devices=%d",
                 node_id, config.site, config.version, len(config.devices))  # fmt: skip
        return True


@dataclass(frozen=True, slots=True)
class ConfigState:
    """What a node should run, was sent and runs (for the API and the command line)."""

    wanted: int
    published: int
    running: int | None  # from its birth or answer; None: never said (or an old node)
    error: str | None  # why it refused the last configuration it refused

    @property
    def outdated(self) -> bool:
        """The node does not run the configuration the registry wants."""
        return self.running != self.wanted


STATE_SQL = """SELECT n.config_version, n.config_published, p.config_version, p.config_error
               FROM edge_nodes n LEFT JOIN node_presence p ON p.node_id = n.id"""


def state(conn: Conn, node_id: str) -> ConfigState:
    row = conn.execute(STATE_SQL + " WHERE n.id = %s", (node_id,)).fetchone()
    if row is None:
        raise LookupError(f"no edge node {node_id!r}")
    return ConfigState(int(row[0]), int(row[1]), row[2], row[3])

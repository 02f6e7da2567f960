"""A client for Mosquitto's dynamic-security plugin, over MQTT (`$CONTROL/dynamic-security/v1`).

Commands are JSON objects sent in batches (`{"commands": [...]}`); the plugin answers every batch
with one message on the response topic, `{"responses": [...]}`, one entry per command, carrying
back the `correlationData` string we gave it. The response topic is shared by every admin client,
so answers are matched by that string, never by order. Written for Mosquitto 2.0.11: there,
`createClient`, `modifyClient` and `setClientPassword` take the plain password (the plugin hashes
it); `disableClient`, `deleteClient`, `modifyClient` and `setClientPassword` kick the account's
sessions at once; and every command that changes something makes the plugin write its whole
state file (a batch is not one write), so a command costs time in proportion to the broker's
whole state: creating N accounts one by one is quadratic in N.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.client import QOS_AT_LEAST_ONCE, MqttSettings, connect_async, new_client

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
# The broker refuses packets over its max_packet_size (256 KiB in gateway/broker.py): batches
# stay well under it. The command count bounds how long one batch holds the broker's only
# thread (each command rewrites the plugin's file).
_BATCH_BYTES = 128 * 1024
_BATCH_COMMANDS = 200
_PAGE = 1000  # clients or roles per list command: one answer stays a few hundred KiB

Command = dict[str, Any]


class DynSecError(RuntimeError):
    """The plugin refused commands, or did not answer in time; the message says which."""

    def __init__(self, message: str, failures: Sequence[tuple[Command, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass(frozen=True, slots=True)
class Acl:
    acltype: str
    topic: str
    allow: bool = True
    priority: int = 0

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Acl:
        return cls(
            str(raw["acltype"]), str(raw["topic"]), bool(raw.get("allow", True)),
            int(raw.get("priority", 0)),
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": self.allow,
                "priority": self.priority}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Client:
    """An account as the plugin reports it (its password never leaves the broker)."""

    username: str
    textdescription: str
    disabled: bool
    roles: tuple[str, ...]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Client:
        return cls(
            str(raw["username"]),
            str(raw.get("textdescription") or ""),
            bool(raw.get("disabled", False)),
            tuple(str(r["rolename"]) for r in raw.get("roles") or []),
        )


@dataclass(frozen=True, slots=True)
class Role:
    rolename: str
    acls: frozenset[Acl]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Role:
        return cls(str(raw["rolename"]), frozenset(Acl.of(a) for a in raw.get("acls") or []))


class DynSec:
    """One control connection (MQTT v5, the service listener, the control account)."""

    def __init__(self, settings: MqttSettings, *, timeout_s: float = 15.0) -> None:
        if settings.username is None or settings.password is None:
            raise ValueError("the dynamic-security control account needs a user name and password")
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: mqtt.Client | None = None
        self._lock = threading.Condition()
        self._answers: dict[str, dict[str, Any]] = {}
        self._stray: list[str] = []  # errors the plugin could not tie to a command
        self._subscribed = threading.Event()
        self._prefix = uuid.uuid4().hex[:8]
        self._seq = 0

    # --- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and subscribe to the answers (again, if the last connection was lost)."""
        if self._client is not None and self._client.is_connected() and self._subscribed.is_set():
            return
        self.close()
        user = str(self.settings.username)
        # Never reconnected by paho: two holders of the control account (one client id) would
        # otherwise take the session from each other forever. The next batch connects again.
        client, watch = new_client(user, self.settings, reconnect=False)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        connected = watch.on_connect

        def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
            connected(c, u, flags, reason, props)
            if not reason.is_failure:
                c.subscribe(RESPONSE_TOPIC, qos=QOS_AT_LEAST_ONCE)

        def on_disconnect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, p: Any) -> None:
            watch.on_disconnect(c, u, flags, reason, p)
            self._subscribed.clear()
            with self._lock:
                self._lock.notify_all()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        self._subscribed.clear()
        self._client = client
        connect_async(client, self.settings, clean_start=True)
        if not self._subscribed.wait(self.timeout_s):
            reason = watch.refusal or watch.last_reason
            self.close()
            raise DynSecError(
                f"cannot reach the broker's dynamic-security control as {user!r} at "
                f"{self.settings.host}:{self.settings.port} ({reason}): check that the broker "
                "runs, and GRIDWATCH_BROKER_CONTROL_PASSWORD against the broker configuration"
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._subscribed.clear()

    def __enter__(self) -> DynSec:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_subscribe(
        self, c: mqtt.Client, u: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("dynamic-security answers refused to the control account: %s", reasons)
            return
        self._subscribed.set()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.error("unreadable dynamic-security answer (%d bytes)", len(msg.payload))
            return
        with self._lock:
            for r in responses:
                corr = r.get("correlationData")
                if isinstance(corr, str) and corr.startswith(self._prefix):
                    self._answers[corr] = r
                elif corr is None and r.get("error"):
                    # e.g. "Payload not valid JSON": whichever batch it was, it failed whole.
                    self._stray.append(f"{r.get('command')}: {r.get('error')}")
            self._lock.notify_all()

    # --- commands ---------------------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> list[dict[str, Any]]:
        """Send the commands (in batches, in order) and wait for every answer; the answers in
        command order. DynSecError lists every refused command, after all were tried."""
        cmds = list(commands)
        if not cmds:
            return []
        self.connect()
        assert self._client is not None
        ids: list[str] = []
        for batch in _batches(cmds):
            tagged = []
            for cmd in batch:
                self._seq += 1
                corr = f"{self._prefix}-{self._seq}"
                ids.append(corr)
                tagged.append({**cmd, "correlationData": corr})
            payload = json.dumps({"commands": tagged}, separators=(",", ":"))
            info = self._client.publish(CONTROL_TOPIC, payload, qos=QOS_AT_LEAST_ONCE)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DynSecError(f"dynamic-security commands not sent (paho rc {info.rc})")
        answers = self._wait(ids)
        failures = [(cmd, str(a["error"])) for cmd, a in zip(cmds, answers, strict=True)
                    if a.get("error")]  # fmt: skip
        if failures:
            shown = "; ".join(f"{_describe(c)}: {e}" for c, e in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise DynSecError(f"the broker refused {len(failures)} command(s): {shown}{more}",
                              failures)  # fmt: skip
        return answers

    def _wait(self, ids: list[str]) -> list[dict[str, Any]]:
        # The plugin answers a batch after running all of it, and a big state makes each
        # command slow (it rewrites its whole file): the deadline is for the next answer, and
        # moves on while answers keep coming.
        def settled() -> bool:
            gone = self._client is None or not self._client.is_connected()
            return bool(self._stray) or gone or all(i in self._answers for i in ids)

        def count() -> int:
            return sum(1 for i in ids if i in self._answers)

        started = time.monotonic()
        with self._lock:
            answered = -1
            while not settled():
                if count() == answered:
                    break  # nothing came for timeout_s
                answered = count()
                self._lock.wait_for(partial(_more, settled, count, answered), self.timeout_s)
            stray, self._stray = self._stray, []
            answers = [self._answers.pop(i) for i in ids if i in self._answers]
            for i in ids:
                self._answers.pop(i, None)
        if stray:
            raise DynSecError(f"the broker refused a batch of commands: {'; '.join(stray)}")
        if len(answers) < len(ids):
            gone = self._client is None or not self._client.is_connected()
            why = "lost the connection" if gone else f"gave no answer for {self.timeout_s:.0f} s"
            raise DynSecError(
                f"dynamic security {why} with {len(ids) - len(answers)} of {len(ids)} commands"
                f" unanswered (after {time.monotonic() - started:.0f} s); whether they were"
                " applied is unknown: the next reconcile reads the broker again"
            )
        return answers

    def one(self, command: Command) -> dict[str, Any]:
        return self.execute([command])[0]

    # --- reading ----------------------------------------------------------------------------

    def list_clients(self) -> list[Client]:
        return [Client.of(c) for c in self._list("listClients", "clients")]

    def get_client(self, username: str) -> Client | None:
        return self.get_clients([username]).get(username)

    def get_clients(self, usernames: Sequence[str]) -> dict[str, Client]:
        """The named accounts that exist (absent names are left out)."""
        got = self._get_many("getClient", "username", "client", usernames)
        return {k: Client.of(v) for k, v in got.items()}

    def list_roles(self) -> list[Role]:
        return [Role.of(r) for r in self._list("listRoles", "roles")]

    def get_role(self, rolename: str) -> Role | None:
        return self.get_roles([rolename]).get(rolename)

    def get_roles(self, rolenames: Sequence[str]) -> dict[str, Role]:
        got = self._get_many("getRole", "rolename", "role", rolenames)
        return {k: Role.of(v) for k, v in got.items()}

    def _list(self, command: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            data = self.one({"command": command, "verbose": True, "count": _PAGE,
                             "offset": len(out)})["data"]  # fmt: skip
            page = data.get(key) or []
            out.extend(page)
            if not page or len(out) >= int(data.get("totalCount", 0)):
                return out

    def _get_many(
        self, command: str, field: str, key: str, names: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        cmds = [{"command": command, field: n} for n in names]
        try:
            answers = self.execute(cmds)
        except DynSecError as exc:
            missing = {c[field] for c, e in exc.failures if e.endswith("not found")}
            if len(missing) != len(exc.failures):
                raise
            answers = self.execute([c for c in cmds if c[field] not in missing])
        return {a["data"][key][field]: a["data"][key] for a in answers}

    # --- changing ---------------------------------------------------------------------------

    @staticmethod
    def create_client(
        username: str, password: str, *, roles: Sequence[str] = (), textdescription: str = ""
    ) -> Command:
        return {"command": "createClient", "username": username, "password": password,
                "textdescription": textdescription,
                "roles": [{"rolename": r, "priority": 0} for r in roles]}  # fmt: skip

    @staticmethod
    def delete_client(username: str) -> Command:
        return {"command": "deleteClient", "username": username}

    @staticmethod
    def enable_client(username: str) -> Command:
        return {"command": "enableClient", "username": username}

    @staticmethod
    def disable_client(username: str) -> Command:
        return {"command": "disableClient", "username": username}

    @staticmethod
    def modify_client(
        username: str, *, password: str | None = None, textdescription: str | None = None
    ) -> Command:
        """Change what is given, in one command (one write of the plugin's file); a new password
        kicks the account's sessions."""
        cmd: Command = {"command": "modifyClient", "username": username}
        if password is not None:
            cmd["password"] = password
        if textdescription is not None:
            cmd["textdescription"] = textdescription
        return cmd

    @staticmethod
    def add_client_role(username: str, rolename: str) -> Command:
        return {"command": "addClientRole", "username": username, "rolename": rolename,
                "priority": 0}  # fmt: skip

    @staticmethod
    def remove_client_role(username: str, rolename: str) -> Command:
        return {"command": "removeClientRole", "username": username, "rolename": rolename}

    @staticmethod
    def create_role(rolename: str, acls: Iterable[Acl] = ()) -> Command:
        return {"command": "createRole", "rolename": rolename,
                "acls": [a.as_json() for a in acls]}  # fmt: skip

    @staticmethod
    def delete_role(rolename: str) -> Command:
        return {"command": "deleteRole", "rolename": rolename}

    @staticmethod
    def add_role_acl(rolename: str, acl: Acl) -> Command:
        return {"command": "addRoleACL", "rolename": rolename, **acl.as_json()}

    @staticmethod
    def remove_role_acl(rolename: str, acl: Acl) -> Command:
        return {"command": "removeRoleACL", "rolename": rolename, "acltype": acl.acltype,
                "topic": acl.topic}  # fmt: skip


def _more(settled: Callable[[], bool], count: Callable[[], int], seen: int) -> bool:
    return settled() or count() > seen


def _describe(cmd: Command) -> str:
    """A command for a message: its name and whom it is about, never a password."""
    who = cmd.get("username") or cmd.get("rolename") or ""
    return f"{cmd.get('command')} {who}".strip()


def _batches(cmds: list[Command]) -> Iterable[list[Command]]:
    batch: list[Command] = []
    size = 0
    for cmd in cmds:
        n = len(json.dumps(cmd)) + 64
        if batch and (size + n > _BATCH_BYTES or len(batch) >= _BATCH_COMMANDS):
            yield batch
            batch, size = [], 0
        batch.append(cmd)
        size += n
    if batch:
        yield batch

"""A complete local deployment in one folder: PostgreSQL, Mosquitto and their configuration.

Used by `gridwatch up`, the benchmarks and the tests, so all three run the same set-up.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from gateway.broker import CONTROL_USER, new_secret, new_share_group
from gateway.client import MqttSettings
from gateway.signing import Signer, init_key
from gridwatch import demo
from gridwatch.brokercfg import BrokerAccountsSettings, write_config
from gridwatch.local.services import (
    SUPERUSER,
    LocalMosquitto,
    LocalPostgres,
    free_port,
    scram_verifier,
    write_private,
)
from ingest.migrate import MigrateReport, migrate
from ingest.privileges import ServiceRole
from registry.nodeconfig import register_command_key
from registry.secrets import init_seal_key, register_public_key

log = logging.getLogger(__name__)

DATABASE = "gridwatch"
INGEST_SLOTS = 16  # broker accounts ingest-0..15; the last is left to tests and tools
# The login role each local process signs in to PostgreSQL as, and the group role it is in.
# Migrations, the demo registry and the broker configuration run as the owner (the superuser here).
LOGIN_ROLES = {"ingest": ServiceRole.INGEST, "api": ServiceRole.API, "cli": ServiceRole.CLI}


@dataclass(frozen=True, slots=True)
class Ports:
    postgres: int
    edge: int
    service: int


@dataclass(frozen=True, slots=True)
class DistrictBroker:
    """A further broker of a partitioned stack (a province's district broker), carrying the nodes
    of `areas` for the ingest group `group`; the stack's own broker is the first."""

    group: str
    areas: tuple[str, ...]
    folder: Path
    edge: int
    service: int
    process: LocalMosquitto

    @property
    def log_file(self) -> Path:
        return self.folder / "broker.log"


class ExternalPostgres(LocalPostgres):
    """A PostgreSQL server someone else runs (a TimescaleDB server, production's), reached by an
    administrator's URL: the tests and benchmarks make throwaway databases and login roles on it,
    all named with one random prefix, and `stop` drops them. Nothing else on the server is
    touched: the service logins are `PREFIX_ingest`, `PREFIX_api` and `PREFIX_cli`, never the
    server's own `ingest` or `api`. The URL's password (or the caller's pgpass file) is kept in
    a private pgpass file under `folder`, never in a URL or a log."""

    def __init__(self, url: str, folder: Path) -> None:  # no super(): nothing to install here
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ValueError("the external database URL is not a PostgreSQL URL") from None
        self.folder = folder.resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.passfile = self.folder / "pgpass"
        self._passwords_file = self.folder / "passwords.json"
        self.host = str(params.get("host") or "127.0.0.1")
        self.port = int(params.get("port") or 5432)
        self.admin = str(params.get("user") or SUPERUSER)
        self.admin_db = str(params.get("dbname") or "postgres")
        self.prefix = f"gwtest_{secrets.token_hex(4)}"
        self._admin_password = params.get("password")
        self._inherited = os.environ.get("PGPASSFILE") or str(Path.home() / ".pgpass")
        self._databases: list[str] = []
        self._logins: set[str] = set()

    def login_name(self, role: str) -> str:
        """The server's name for one of our logins (the administrator keeps its own)."""
        return self.admin if role == SUPERUSER else f"{self.prefix}_{role}"

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        db = self.admin_db if dbname == "postgres" else dbname
        return f"postgresql://{self.login_name(user)}@{self.host}:{self.port}/{db}"

    def database_name(self, name: str) -> str:
        """A database name of our own on the shared server."""
        return f"{self.prefix}_{name}"

    @property
    def running(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to start: write the pgpass file and check the administrator can sign in."""
        self._write_passfile()
        os.environ["PGPASSFILE"] = str(self.passfile)
        with psycopg.connect(self.dsn(), connect_timeout=10) as conn:
            conn.execute("SELECT 1")

    def _write_passfile(self) -> None:
        lines = []
        if self._admin_password:
            password = str(self._admin_password).replace("\\", "\\\\").replace(":", "\\:")
            lines.append(f"{self.host}:{self.port}:*:{self.admin}:{password}\n")
        inherited = Path(self._inherited)
        if inherited.resolve() != self.passfile and inherited.is_file():
            lines += [ln + "\n" for ln in inherited.read_text().splitlines()]
        lines += [
            f"{self.host}:{self.port}:*:{self.login_name(r)}:{pw}\n"
            for r, pw in self._passwords().items()
        ]
        write_private(self.passfile, "".join(lines))

    def create_database(self, name: str) -> None:
        super().create_database(name)
        if name not in self._databases:
            self._databases.append(name)

    def ensure_login(self, role: str, member_of: str) -> None:
        name = self.login_name(role)
        verifier = scram_verifier(self.password(role))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            statement = ("ALTER" if exists else "CREATE") + (
                " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}"
            )
            conn.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(verifier)))
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(name))
            )
        self._logins.add(name)

    def drop_database(self, name: str) -> None:
        """Drop one of our databases (its sessions are ended first)."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self._databases:
            self._databases.remove(name)

    def stop(self, mode: str = "fast") -> None:
        """Drop every database and login role made here; the server itself keeps running."""
        for name in list(self._databases):
            self.drop_database(name)
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for name in sorted(self._logins):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        self._logins.clear()
        log.info("external PostgreSQL cleaned up prefix=%s", self.prefix)

    def kill(self) -> None:
        raise RuntimeError("an external PostgreSQL server is not ours to kill")

    def restart(self) -> None:
        raise RuntimeError("an external PostgreSQL server is not ours to restart")


class LocalStack:
    """PostgreSQL and Mosquitto under `home`; ports and secrets are kept there between runs."""

    def __init__(
        self,
        home: Path,
        *,
        preferred: Ports | None = None,
        postgres: LocalPostgres | None = None,
        database: str = DATABASE,
    ) -> None:
        self.home = home.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs = self.home / "logs"
        self.logs.mkdir(exist_ok=True)
        self.credentials_file = self.home / "nodes.json"
        self.ports = self._ports(preferred)
        self._secrets = self._load_secrets()
        # The platform's command key: the ingest signs with it, the simulated nodes verify.
        self.command_key_file = self.home / "command-key.pem"
        self.command_public_key = init_key(self.command_key_file)
        # The key node secrets are sealed to: the ingest leader's broker reconcile opens them.
        self.seal_key_file = self.home / "seal-key.pem"
        self._seal_key = init_seal_key(self.seal_key_file)
        # A shared server (the test suite's) is started and stopped by its owner, not by us.
        self._owns_postgres = postgres is None
        self.postgres = postgres or LocalPostgres(self.home / "postgres", port=self.ports.postgres)
        self.database = database
        self.broker: LocalMosquitto | None = None
        self.districts: list[DistrictBroker] = []  # further brokers (start_district_broker)

    @classmethod
    def for_bench(cls, home: Path, database_url: str | None) -> LocalStack:
        """The stack of a benchmark: everything local, or, given an administrator's URL, a
        throwaway database on that server (dropped, with its login roles, by `stop`)."""
        if database_url is None:
            return cls(home)
        server = ExternalPostgres(database_url, home / "postgres")
        stack = cls(home, postgres=server, database=server.database_name("bench"))
        stack._owns_postgres = True  # stop() cleans up what it made on the server
        return stack

    # --- configuration kept in the home folder ----------------------------------------------

    def _ports(self, preferred: Ports | None) -> Ports:
        path = self.home / "ports.json"
        if path.exists():
            return Ports(**json.loads(path.read_text()))
        ports = preferred or Ports(free_port(), free_port(), free_port())
        path.write_text(json.dumps(asdict(ports)))
        return ports

    def _load_secrets(self) -> dict[str, str]:
        path = self.home / "secrets.json"
        secrets: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted = {"ingest": new_secret, "share_group": new_share_group, "control": new_secret}
        if not all(k in secrets for k in wanted):  # a new home, or one made before a secret was
            secrets = {k: secrets.get(k) or make() for k, make in wanted.items()}
            write_private(path, json.dumps(secrets))
        return secrets

    @property
    def share_group(self) -> str:
        return self._secrets["share_group"]

    @property
    def dsn(self) -> str:
        """The owner's connection URL: migrations, seeding, and the tests' own checks."""
        return self.postgres.dsn(self.database)

    def role_dsn(self, login: str) -> str:
        """The connection URL of a service's own login role (ingest, api or cli)."""
        if login not in LOGIN_ROLES:
            raise ValueError(f"no database login {login!r}: use one of {', '.join(LOGIN_ROLES)}")
        return self.postgres.dsn(self.database, user=login)

    def login_role(self, login: str) -> str:
        """The server's name for a service's login role (`ingest`; on an external server the
        prefixed name made for this run)."""
        if isinstance(self.postgres, ExternalPostgres):
            return self.postgres.login_name(login)
        return login

    def service_mqtt(self, slot: int = INGEST_SLOTS - 1) -> MqttSettings:
        """How an ingest worker slot reaches the broker's service listener (the last slot by
        default: the tests' own clients, which running workers do not use)."""
        return MqttSettings(
            port=self.ports.service, username=f"ingest-{slot}", password=self._secrets["ingest"]
        )

    def control_mqtt(self) -> MqttSettings:
        """The broker's control account on the service listener (its administrator)."""
        return MqttSettings(
            port=self.ports.service, username=CONTROL_USER, password=self._secrets["control"]
        )

    @property
    def broker_log_file(self) -> Path:
        """The broker's log file, from which the leader counts refused connects."""
        return self.home / "broker" / "broker.log"

    def edge_mqtt(self) -> MqttSettings:
        """The edge listener; each node adds its own account."""
        return MqttSettings(port=self.ports.edge)

    def service_env(self, login: str, **extra: str) -> dict[str, str]:
        """Environment for a process started from this stack as a database login (ingest, api
        or cli); the ingest also gets its broker settings (nothing else has a broker account)."""
        env = dict(os.environ)
        env.update(
            GRIDWATCH_DATABASE_URL=self.role_dsn(login), PGPASSFILE=str(self.postgres.passfile)
        )
        if login in ("api", "cli"):  # they write site files: how nodes reach the broker
            env.update(GRIDWATCH_EDGE_BROKER_URL=f"mqtt://127.0.0.1:{self.ports.edge}")
        if login == "ingest":
            env.update(
                GRIDWATCH_MQTT__HOST="127.0.0.1",
                GRIDWATCH_MQTT__PORT=str(self.ports.service),
                GRIDWATCH_MQTT__PASSWORD=self._secrets["ingest"],
                GRIDWATCH_SHARE_GROUP=self.share_group,
                GRIDWATCH_COMMAND_KEY_FILE=str(self.command_key_file),
                GRIDWATCH_SEAL_KEY_FILE=str(self.seal_key_file),
                GRIDWATCH_BROKER_CONTROL_PASSWORD=self._secrets["control"],
                GRIDWATCH_BROKER_LOG_FILE=str(self.broker_log_file),
            )
        env.update(extra)
        return env

    # --- services ---------------------------------------------------------------------------

    def start_database(self) -> MigrateReport:
        """Start PostgreSQL, create the database, apply migrations and make sure each service's
        login role exists (roles belong to the server, so one server's are shared)."""
        self.postgres.start()
        self.postgres.create_database(self.database)
        report = migrate(self.dsn)
        for login, group in LOGIN_ROLES.items():
            self.postgres.ensure_login(login, group)
        with psycopg.connect(self.dsn) as conn:
            register_public_key(conn, self._seal_key)
            # Site files name the command key: the API and the command line read it from here.
            register_command_key(conn, Signer.from_file(self.command_key_file))
        return report

    def apply_demo(
        self, venues: int, devices_per_venue: int, *, audit: bool = False
    ) -> list[demo.NodeCredentials]:
        """Apply the demo registry of this size (the shipped examples/demo-city.yaml at its own
        size) over what is registered, issue secrets to its nodes that have none and keep them
        in the credentials file. Without `audit` (the tests' and benchmarks' throwaway
        databases) the registry changes write no audit rows."""
        doc = demo.demo_document(venues, devices_per_venue)
        with psycopg.connect(self.dsn) as conn:
            return demo.apply_and_save(conn, doc, self.credentials_file, audit=audit)

    seed_demo = apply_demo  # the name before the registry file (issue 12)

    def registry_is_empty(self) -> bool:
        with psycopg.connect(self.dsn) as conn:
            return demo.registry_is_empty(conn)

    def people_of_venue(self, venue_id: str) -> list[str]:
        """The demo worker and dispatcher who handle a venue's tasks."""
        with psycopg.connect(self.dsn) as conn:
            return demo.people_of_venue(conn, venue_id)

    def write_broker_config(
        self,
        extra_share_groups: tuple[str, ...] = (),
        *,
        folder: Path | None = None,
        ports: tuple[int, int] | None = None,
        areas: Sequence[str] = (),
        **options: Any,
    ) -> Path:
        """Render the broker configuration from the registry (nodes) and this stack's secrets:
        this stack's broker, or (`folder`, `ports` (edge, service), `areas`) a district's."""
        accounts = BrokerAccountsSettings(
            ingest_password=self._secrets["ingest"],
            share_group=self.share_group,
            ingest_slots=INGEST_SLOTS,
            control_password=self._secrets["control"],
            areas=tuple(areas),
        )
        edge, service = ports or (self.ports.edge, self.ports.service)
        with psycopg.connect(self.dsn) as conn:
            return write_config(
                conn,
                folder or self.home / "broker",
                accounts,
                extra_share_groups=extra_share_groups,
                edge_host="127.0.0.1",
                edge_port=edge,
                service_host="127.0.0.1",
                service_port=service,
                user=_current_user(),
                **options,
            )

    def start_broker(self, extra_share_groups: tuple[str, ...] = (), **options: Any) -> None:
        """(Re)write the configuration (`options`: BrokerOptions) and start Mosquitto."""
        conf = self.write_broker_config(extra_share_groups, **options)
        if self.broker is None:
            self.broker = LocalMosquitto(conf, ports=[self.ports.edge, self.ports.service])
        self.broker.start()

    def start_district_broker(self, group: str, areas: Sequence[str]) -> DistrictBroker:
        """Start one more Mosquitto, with accounts for the nodes of `areas` only (the ingest
        group `group` consumes it; start it with `district_env`)."""
        folder = self.home / f"broker-{group}"
        edge, service = free_port(), free_port()
        conf = self.write_broker_config(folder=folder, ports=(edge, service), areas=areas)
        broker = DistrictBroker(group, tuple(areas), folder, edge, service,
                                LocalMosquitto(conf, ports=[edge, service]))  # fmt: skip
        self.districts.append(broker)
        broker.process.start()
        return broker

    def group_env(self, group: str, areas: Sequence[str], broker: DistrictBroker | None = None
                  ) -> dict[str, str]:  # fmt: skip
        """The environment that makes an ingest worker of this stack one of the ingest group
        `group`, carrying `areas`, on `broker` (None: the stack's own broker)."""
        env = {"GRIDWATCH_INGEST_GROUP": group, "GRIDWATCH_INGEST_AREAS": ",".join(areas)}
        if broker is not None:
            env.update(GRIDWATCH_MQTT__PORT=str(broker.service),
                       GRIDWATCH_BROKER_LOG_FILE=str(broker.log_file))  # fmt: skip
        return env

    def start_ingest(
        self,
        workers: int = 1,
        *,
        metrics_port: int | None = None,
        slot: int = 0,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `gridwatch ingest` as a child process, logging to logs/ingest.log."""
        extra = {"GRIDWATCH_METRICS_PORT": str(metrics_port or 0), **(env or {})}
        cmd = [sys.executable, "-m", "gridwatch.cli", "ingest", "--workers", str(workers)]
        with (self.logs / "ingest.log").open("ab") as log_file:
            return subprocess.Popen(
                [*cmd, "--slot", str(slot)],
                env=self.service_env("ingest", **extra),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C reaches `up` only; it stops them in order
            )

    def start_api(self, port: int) -> subprocess.Popen[bytes]:
        """Start `gridwatch api` on 127.0.0.1:`port`, logging to logs/api.log."""
        env = self.service_env("api", GRIDWATCH_API_PORT=str(port), GRIDWATCH_API_HOST="127.0.0.1")
        with (self.logs / "api.log").open("ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "gridwatch.cli", "api"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C reaches `up` only; it stops them in order
            )

    def start_fleet(self, rate: float, *extra: str) -> subprocess.Popen[bytes]:
        """Start `gridwatch simulate` for the demo nodes, logging to logs/fleet.log."""
        cmd = [
            sys.executable, "-m", "gridwatch.cli", "simulate",
            "--credentials", str(self.credentials_file),
            "--broker-port", str(self.ports.edge),
            "--rate", str(rate),
            "--folder", str(self.home / "fleet"),
            "--command-key", self.command_public_key,
            *extra,
        ]  # fmt: skip
        with (self.logs / "fleet.log").open("ab") as log_file:
            return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, process_group=0)

    def stop(self) -> None:
        """Stop the brokers, then the database."""
        for district in self.districts:
            district.process.stop()
        if self.broker is not None:
            self.broker.stop()
        if self._owns_postgres:
            self.postgres.stop()


def _current_user() -> str | None:
    """Run Mosquitto as whoever we are (it would otherwise drop to `mosquitto` under root)."""
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name

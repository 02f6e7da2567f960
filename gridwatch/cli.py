"""The `gridwatch` command: the composition root that wires the parts together."""

from __future__ import annotations

import argparse
import base64
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import psycopg
from pydantic import ValidationError

from gridwatch import logconfig
from gridwatch.errors import configuration_problems
from gridwatch.local import home

if TYPE_CHECKING:
    from ingest.groups import Scope
    from ingest.leader import Duty
    from ingest.settings import IngestSettings

log = logging.getLogger("gridwatch")

Handler = Callable[[argparse.Namespace], int]


# Mirrors simulators.scenes.KINDS (a test keeps them equal); listed here so that the command
# line does not import OpenCV to parse its arguments.
SCENE_KINDS = ["intrusion", "loitering", "crowd", "counting", "quiet", "tamper-covered",
               "tamper-blurred", "tamper-moved", "street-intrusion-ir-dog",
               "street-intrusion-clouds40", "street-loitering-clouds20", "street-counting-pairs",
               "street-crowd", "street-headlights", "street-bag-left",
               *[f"street-tamper-{k}-{n}" for k in ("covered", "blurred", "moved")
                 for n in ("day", "night")],
               "street-animals", "street-quiet-day", "street-quiet-night"]  # fmt: skip


def _lazy(target: str) -> Handler:
    """A handler that imports `module:function` only when its command runs, so `--help` and
    light commands do not load the database, broker and web stacks."""

    def handler(args: argparse.Namespace) -> int:
        module, _, function = target.partition(":")
        run: Handler = getattr(importlib.import_module(module), function)
        return run(args)

    return handler


def _ingest(args: argparse.Namespace) -> int:
    from ingest.settings import IngestSettings

    settings = IngestSettings()
    first = args.slot if args.slot is not None else settings.worker_slot
    if args.workers == 1 or args.drain:
        return _run_worker(first, drain=args.drain, supervised=args.supervised)
    from gridwatch.local import workers

    _claim_group(settings)  # a misconfigured group is refused once, before any worker starts
    return workers.run(first, args.workers, ["--log-level", args.log_level,
                                             "--log-format", args.log_format])  # fmt: skip


def _run_worker(slot: int, drain: bool = False, supervised: bool = False) -> int:
    """Run one ingest worker in this process until SIGTERM or SIGINT (or, `supervised`, until
    the parent process is gone)."""
    from ingest.settings import IngestSettings
    from ingest.worker import IngestWorker

    base = IngestSettings()
    overrides: dict[str, object] = {"worker_slot": slot}
    if base.metrics_port:
        overrides["metrics_port"] = base.metrics_port + slot
    settings = base.model_copy(update=overrides)
    scope = _claim_group(settings)
    if settings.metrics_port:
        _serve_metrics(settings.metrics_host, settings.metrics_port)
    worker = IngestWorker(settings, duties=_leader_duties(settings, scope), scope=scope,
                          database_duties=_database_duties(settings))  # fmt: skip

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current batch and stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if supervised:
        from gridwatch.local import workers

        workers.stop_when_orphaned(worker.stop)
    worker.run(until_idle_s=5.0 if drain else None)
    return 0


def _claim_group(settings: IngestSettings) -> Scope:
    """Claim the worker's ingest group's areas (ingest.groups): refused with a sentence for an
    area the territory lacks or another running group carries. A group of the whole territory
    starts even while the database cannot be reached (its worker waits for it, as before);
    one with areas needs the territory to know what it carries, so it waits here."""
    import time

    from ingest import groups

    dsn = settings.database_url.get_secret_value()
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                return groups.claim(
                    conn, settings.ingest_group, settings.ingest_areas, settings.slot_stale_s
                )
        except psycopg.OperationalError as exc:
            if not settings.ingest_areas:
                log.warning("ingest group %s not claimed yet (database unreachable: %s)",
                            settings.ingest_group, " ".join(str(exc).split()))  # fmt: skip
                return groups.Scope(settings.ingest_group)
            log.warning("waiting for the database to claim the areas of ingest group %s: %s",
                        settings.ingest_group, " ".join(str(exc).split()))  # fmt: skip
            time.sleep(2.0)


def _leader_duties(settings: IngestSettings, scope: Scope) -> list[Duty]:
    """The registry's work for the leader of the worker's ingest group, on its broker and for
    the nodes of its areas (the ingest does not import the registry)."""
    from gateway.signing import Signer
    from registry.broker_sync import BrokerSync, BrokerSyncSettings
    from registry.nodeconfig import NodeConfigDuty

    duties: list[Duty] = []
    if settings.leader:  # the broker's node accounts follow the registry
        duties.append(BrokerSync(BrokerSyncSettings(), settings.mqtt, scope))
    if settings.command_key_file is not None:
        duties.append(NodeConfigDuty(Signer.from_file(settings.command_key_file), scope=scope))
    else:
        log.warning("no GRIDWATCH_COMMAND_KEY_FILE: node configurations are not pushed")
    return duties


def _database_duties(settings: IngestSettings) -> list[Duty]:
    """Work on the database alone, done by one leader of all the ingest groups: notifications
    (the ingest does not import notify)."""
    from ingest.settings import Environment
    from notify.duty import NotifyDuty, configured_channels
    from notify.settings import NotifySettings

    production = settings.environment is Environment.PRODUCTION
    return [NotifyDuty(configured_channels(production), NotifySettings())]


def _serve_metrics(host: str, port: int) -> None:
    """The Prometheus endpoint, or a clear error naming the port when it cannot listen."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); set "
            "GRIDWATCH_METRICS_PORT to a free port, or to 0 to turn metrics off"
        ) from None
    log.info("metrics on %s:%d/metrics", host, port)


def _add_bench_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home", default=None, help="folder for the throwaway services (default: temporary)"
    )


def _add_bench_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        type=postgres_url,
        default=None,
        help="an administrator's URL of an external PostgreSQL/TimescaleDB server (password in "
        "PGPASSFILE): the benchmark makes a throwaway database and login roles there and drops "
        "them after (default: a local server of its own)",
    )


def _db_migrate(args: argparse.Namespace) -> int:
    from ingest.migrate import Backend, migrate

    report = migrate(
        database_url(args), backend=None if args.backend == "auto" else Backend(args.backend)
    )
    applied = ", ".join(report.applied) or "nothing (already up to date)"
    print(f"schema version {report.version} on {report.backend}; applied: {applied}")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    import psycopg

    from gridwatch.brokercfg import BrokerAccountsSettings, BrokerEnvironment, write_config

    accounts = BrokerAccountsSettings()
    with psycopg.connect(database_url(args)) as conn:
        path = write_config(
            conn,
            Path(args.out),
            accounts,
            environment=BrokerEnvironment().environment,
            edge_host=args.edge_host,
            edge_port=args.edge_port,
            service_host=args.service_host,
            service_port=args.service_port,
            user=args.run_as,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            log_file=args.log_file,
        )
    if accounts.control_password is None:
        print(
            "gridwatch: no GRIDWATCH_BROKER_CONTROL_PASSWORD: the broker gets no control"
            " account, and node accounts change only when this is run again",
            file=sys.stderr,
        )
    print(f"wrote {path}; run: mosquitto -c {path}")
    return 0


def _broker_refusals(args: argparse.Namespace) -> int:
    import psycopg

    from registry.broker_sync import refusals

    with psycopg.connect(database_url(args)) as conn:
        found = refusals(conn, None, limit=args.limit)
    if not found:
        print("no refused broker connects recorded")
        return 0
    print(f"{'client':<24} {'node':<20} {'count':>7}  {'first seen':<19}  {'last seen':<19}")
    for r in found:
        print(f"{r.client:<24} {r.node_id or '-':<20} {r.count:>7}  "
              f"{r.first_seen:%Y-%m-%d %H:%M:%S}  {r.last_seen:%Y-%m-%d %H:%M:%S}")  # fmt: skip
    print(f"reason: {found[0].reason}")
    return 0


def _api(args: argparse.Namespace) -> int:
    from api.server import server
    from api.settings import ApiSettings

    server(ApiSettings()).run()
    return 0


DATABASE_URL_EXAMPLE = "postgresql://user@127.0.0.1:5432/gridwatch"


def postgres_url(value: str) -> str:
    """`value` if it is a PostgreSQL URL (argparse type: a bad one is a usage error). The value
    is not repeated in the error, since a URL may carry a password."""
    from psycopg.conninfo import conninfo_to_dict

    if value.startswith(("postgresql://", "postgres://")):
        try:
            conninfo_to_dict(value)
            return value
        except psycopg.ProgrammingError:
            pass
    raise argparse.ArgumentTypeError(f"not a PostgreSQL URL; give one like {DATABASE_URL_EXAMPLE}")


def database_url(args: argparse.Namespace) -> str:
    """--database-url, else GRIDWATCH_DATABASE_URL, else the database of a running `up` home
    (--home, GRIDWATCH_HOME or ./.gridwatch), else the development default."""
    if getattr(args, "database_url", None):
        return _with_local_passwords(str(args.database_url))
    if os.environ.get("GRIDWATCH_DATABASE_URL"):
        try:
            url = postgres_url(os.environ["GRIDWATCH_DATABASE_URL"])
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"GRIDWATCH_DATABASE_URL is {exc}") from None
        return _with_local_passwords(url)
    found = home.running_database_url(getattr(args, "home", None))
    if found is not None:
        return found
    from ingest.settings import DEV_DATABASE_URL

    return DEV_DATABASE_URL


def _with_local_passwords(url: str) -> str:
    """Run where `gridwatch up` ran, a URL of its local server signs in with that server's
    passwords (URLs carry none); a URL of any other server keeps the caller's own."""
    local = home.passfile_of(Path(home.default_home()))
    if "PGPASSFILE" in os.environ or not local.exists():
        return url
    info = psycopg.conninfo.conninfo_to_dict(url)
    server = (str(info.get("host", "")), str(info.get("port", "5432")))
    if any(tuple(line.split(":")[:2]) == server for line in local.read_text().splitlines()):
        os.environ["PGPASSFILE"] = str(local.resolve())
    return url


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """--database-url and --home, for every command that uses the database."""
    parser.add_argument(
        "--database-url",
        type=postgres_url,
        help="defaults to GRIDWATCH_DATABASE_URL, then to the database of a running "
        "`gridwatch up` home",
    )
    parser.add_argument(
        "--home",
        default=None,
        help=f"a `gridwatch up` home whose database to use (default: ${home.HOME_VARIABLE}, "
        f"or {home.DEFAULT_HOME} when it exists)",
    )


def log_level(value: str) -> str:
    """argparse type for --log-level: one of the four names, in any case."""
    level = value.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _keys_init(args: argparse.Namespace) -> int:
    from gateway.signing import init_key

    print(init_key(Path(args.key)))
    return 0


def _keys_seal_init(args: argparse.Namespace) -> int:
    from registry.secrets import init_seal_key, public_bytes

    key = init_seal_key(Path(args.key))
    print(base64.b64encode(public_bytes(key)).decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridwatch",
        description="Venue and safety monitoring over IoT for a territory's grids.",
    )
    parser.add_argument(
        "--log-level", type=log_level, default="INFO", help="DEBUG, INFO, WARNING or ERROR"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log line format"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Handler,
        help_: str,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    up = add(
        sub,
        "up",
        _lazy("gridwatch.local.up:run"),
        "Run the whole system locally: PostgreSQL, Mosquitto, migrations, demo data, ingest and"
        " a simulated fleet.",
    )
    up.add_argument(
        "--home",
        default=home.default_home(),
        help=f"folder for data, configuration and logs, kept between runs (default: "
        f"${home.HOME_VARIABLE}, or {home.DEFAULT_HOME})",
    )
    up.add_argument(
        "--venues",
        type=int,
        default=None,
        help=f"demo venues (first run: {home.DEFAULT_VENUES}; later runs keep the home's, and a "
        "larger number grows it)",
    )
    up.add_argument(
        "--devices-per-venue",
        type=int,
        default=None,
        help=f"devices per demo venue (first run: {home.DEFAULT_DEVICES_PER_VENUE}; kept like "
        "--venues)",
    )
    up.add_argument("--ingest-workers", type=int, default=1, help="ingest worker processes")

    up.add_argument(
        "--fleet-rate",
        type=float,
        default=20.0,
        help="messages per second from the simulated demo fleet; 0 runs no fleet",
    )
    up.add_argument(
        "--no-fleet", action="store_true", help="run no simulated fleet (real edge nodes only)"
    )
    up.add_argument(
        "--devices",
        choices=["simulated", "protocol"],
        default="simulated",
        help="the demo fleet's devices: simulated inside the agents, or protocol: each behind a"
        " simulator of its real protocol (Modbus TCP, ISAPI, ONVIF, HTTP) on loopback, read by"
        " the real drivers",
    )
    up.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="a scenario for the demo fleet to play (YAML, see scenarios/); may repeat; "
        "without one, the fleet plays scenarios/demo.yaml",
    )
    up.add_argument(
        "--no-demo-incidents",
        action="store_true",
        help="do not play scenarios/demo.yaml (a forced door, a crowd… in the first minute)",
    )

    add(sub, "api", _api, "Serve the operator API (settings from GRIDWATCH_* variables).")
    edge = add(
        sub,
        "edge",
        _lazy("gridwatch.simulate:run_edge"),
        "Run one venue's edge agent from its site file.",
    )
    edge.add_argument("--config", help="the site file (YAML): node, broker, devices")
    edge.add_argument(
        "--enrol",
        metavar="CODE",
        help="a one-time enrolment code (`gridwatch node enrol-code`): exchanged at --platform"
        " for the node's site file on the first start; later starts use the file written",
    )
    edge.add_argument("--platform", metavar="URL", help="the platform's address, https://...")
    edge.add_argument(
        "--site-file",
        metavar="PATH",
        help="where --enrol writes the site file (0600; default: --config, else ./site.yaml)",
    )
    edge.add_argument("--ca", metavar="FILE", help="CA bundle to check the platform's certificate")

    sim = add(
        sub,
        "simulate",
        _lazy("gridwatch.simulate:run_fleet"),
        "Run simulated venues (real edge agents with simulated devices), optionally scenarios.",
    )
    sim.add_argument(
        "--credentials",
        default=".gridwatch/nodes.json",
        help="node credentials written by `gridwatch up` (HOME/nodes.json)",
    )
    sim.add_argument("--broker-host", default="127.0.0.1", help="the broker's edge listener")
    sim.add_argument("--broker-port", type=int, default=1883)
    sim.add_argument(
        "--command-key",
        default=None,
        help="the platform's public command key (from `gridwatch keys init`); without it the"
        " simulated nodes refuse every command",
    )
    sim.add_argument("--venues", type=int, default=0, help="simulate only the first N venues")
    sim.add_argument(
        "--devices",
        choices=["simulated", "protocol"],
        default="simulated",
        help="simulated: devices inside the agents; protocol: each device behind a simulator of"
        " its real protocol (Modbus TCP, ISAPI, ONVIF, HTTP) read by the real drivers",
    )
    sim.add_argument("--rate", type=float, default=100.0, help="messages per second in all")
    sim.add_argument(
        "--speed", type=float, default=1.0, help="simulated time runs this much faster"
    )
    sim.add_argument("--seed", type=int, default=1, help="the same seed gives the same behaviour")
    sim.add_argument(
        "--scenario", action="append", default=[], help="a scenario file (YAML); may repeat"
    )
    sim.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: run on)"
    )
    sim.add_argument(
        "--folder", default=".gridwatch/fleet", help="where the simulated nodes keep their outboxes"
    )
    scene = sub.add_parser(
        "scene", help="Synthetic camera scenes with ground truth (files or live streams).",
        description="Synthetic camera scenes with ground truth.",
    )  # fmt: skip
    ssub = scene.add_subparsers(dest="scene_command", required=True, metavar="COMMAND")
    sw = add(ssub, "write", _lazy("gridwatch.simulate:run_scene_write"),
             "Render a scene to a video file with its ground truth (JSON) beside it.")  # fmt: skip
    sw.add_argument("--out", default=".", help="folder for the files")
    sw.add_argument("--h264", action="store_true",
                    help="H.264 in MP4 (ffmpeg, the scene's low quality) instead of MJPEG in AVI")  # fmt: skip
    ss = add(ssub, "serve", _lazy("gridwatch.simulate:run_scene_serve"),
             "Serve a scene as a live stream like an IP camera: MJPEG over HTTP, or RTSP.")  # fmt: skip
    ss.add_argument("--host", default="127.0.0.1")
    ss.add_argument("--port", type=int, default=8554)
    ss.add_argument("--rtsp", action="store_true",
                    help="serve RTSP (RTP/JPEG at /Streaming/Channels/101, digest account) instead")  # fmt: skip
    ss.add_argument("--user", default="admin",
                    help="the RTSP account; its password is GRIDWATCH_SCENE_PASSWORD, else a "
                         "random one, given in the URL printed")  # fmt: skip
    for p in (sw, ss):
        p.add_argument("kind", choices=SCENE_KINDS,
                       help="a flat scene, or a street scene in perspective (street-…)")  # fmt: skip
        p.add_argument("--seed", type=int, default=1, help="the same seed gives the same scene")
    sim.add_argument("--metrics-port", type=int, default=0, help="Prometheus port; 0: off")

    ingest = add(
        sub,
        "ingest",
        _ingest,
        "Consume the broker into the database (settings from GRIDWATCH_* variables).",
    )
    ingest.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing one MQTT v5 shared subscription",
    )
    ingest.add_argument(
        "--slot",
        type=int,
        default=None,
        help="first worker slot, client id PREFIX-SLOT (default: GRIDWATCH_WORKER_SLOT, 0)",
    )
    # Set by `--workers N` for its children: a worker whose parent is gone stops, or the next
    # parent's worker for the same slot would fight it for the slot's session.
    ingest.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    ingest.add_argument(
        "--drain",
        action="store_true",
        help="consume this slot's session until idle for 5 s, then exit (retiring a worker slot)",
    )

    db = sub.add_parser(
        "db", help="Database schema and data.", description="Database schema and data."
    )
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    mig = add(dbsub, "migrate", _db_migrate, "Apply pending schema migrations (safe to re-run).")
    add_database_options(mig)
    mig.add_argument(
        "--backend",
        choices=["auto", "plain", "timescale"],
        default="auto",
        help="auto uses TimescaleDB when it is installed and preloaded",
    )

    broker = sub.add_parser(
        "broker", help="Broker (Mosquitto) set-up.", description="Broker (Mosquitto) set-up."
    )
    bsub = broker.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    cfg = add(
        bsub,
        "config",
        _broker_config,
        "Write a Mosquitto configuration from the registry: accounts, roles, persistence, limits.",
    )
    cfg.add_argument(
        "--out",
        required=True,
        help="folder to write mosquitto.conf and the dynamic-security file into",
    )
    add_database_options(cfg)
    cfg.add_argument(
        "--edge-host",
        default="0.0.0.0",
        help="address the edge listener binds; other than loopback it needs TLS in production",
    )
    cfg.add_argument("--edge-port", type=int, default=1883)
    cfg.add_argument(
        "--service-host", default="127.0.0.1", help="internal address for the ingest workers"
    )
    cfg.add_argument("--service-port", type=int, default=1884)
    cfg.add_argument(
        "--tls-cert", default=None, help="certificate (PEM) for TLS on the edge listener"
    )
    cfg.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    cfg.add_argument(
        "--tls-ca", default=None, help="CA bundle for checking client certificates (optional)"
    )
    cfg.add_argument(
        "--run-as",
        default=None,
        help="system user Mosquitto drops to when started as root (default: mosquitto)",
    )
    cfg.add_argument(
        "--log-file",
        default=None,
        help="file the broker also logs to, read by the ingest leader to count refused"
        " connects (GRIDWATCH_BROKER_LOG_FILE); default: OUT/broker.log",
    )

    ref = add(
        bsub,
        "refusals",
        _broker_refusals,
        "Connects the broker refused (bad credentials, unknown or disabled nodes), counted by"
        " the ingest leader from the broker's log: by account or source address, latest first.",
    )
    add_database_options(ref)
    ref.add_argument("--limit", type=int, default=100, help="rows shown at most")

    keys = sub.add_parser(
        "keys", help="The platform's command signing key.",
        description="The platform's command signing key.",
    )  # fmt: skip
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    kinit = add(
        ksub, "init", _keys_init,
        "Make the Ed25519 key pair that signs commands (private key 0600, kept if it exists) and"
        " print the public key for the nodes' site files (command_key).",
    )  # fmt: skip
    kinit.add_argument(
        "--key", required=True, help="the private key file (GRIDWATCH_COMMAND_KEY_FILE)"
    )
    kseal = add(
        ksub, "seal-init", _keys_seal_init,
        "Make the X25519 key pair node secrets are sealed to (private key 0600, kept if it"
        " exists; only the ingest holds it) and print its public half, which the ingest"
        " registers in the database when it starts, for the API and command line to seal with.",
    )  # fmt: skip
    kseal.add_argument(
        "--key", required=True, help="the private key file (GRIDWATCH_SEAL_KEY_FILE)"
    )

    from gridwatch import registry_cmd
    from gridwatch.ops import add_commands

    add_commands(sub, add)
    registry_cmd.add_commands(sub, add)
    _node_commands(sub, add)
    _wall_commands(sub, add)

    bench = sub.add_parser(
        "bench", help="Benchmarks that print their figures as JSON.", description="Benchmarks."
    )
    bsub2 = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    bi = add(
        bsub2,
        "ingest",
        _lazy("gridwatch.bench.ingest:run_ingest_bench"),
        "Load a backlog into the broker, then measure how fast the ingest drains it into PostgreSQL.",
    )
    bi.add_argument("--messages", type=int, default=200_000)
    bi.add_argument("--devices", type=int, default=1_000)
    bi.add_argument(
        "--mix",
        choices=("city", "storm"),
        default="city",
        help="city: a city's everyday traffic (alarms rare); storm: every venue alarming at once",
    )
    bi.add_argument(
        "--sql-profile",
        action="store_true",
        help="load pg_stat_statements and print the ingest's costliest statements",
    )
    bi.add_argument(
        "--live-rate",
        type=float,
        default=5_000.0,
        help="messages a second published live after the drain (stamped when sent)",
    )
    bi.add_argument(
        "--live-s",
        type=float,
        default=0.0,
        help="seconds of live publishing after the drain, measuring a forced door's publish to"
        " its task (0: none)",
    )
    _add_bench_database_url(bi)
    bf = add(
        bsub2,
        "fleet",
        _lazy("gridwatch.bench.ingest:run_fleet_bench"),
        "Run a simulated city (fleet, broker, ingest, database) and measure rate, delay and loss.",
    )
    bf.add_argument("--venues", type=int, default=200)
    bf.add_argument("--devices-per-venue", type=int, default=25)
    bf.add_argument("--rate", type=float, default=1000.0, help="fleet messages per second")
    bf.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    bf.add_argument(
        "--forced-doors-per-s", type=float, default=2.0, help="doors forced while measuring"
    )
    bf.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    bf.add_argument(
        "--rates",
        default=None,
        help="comma-separated rates, run in turn until the p99 storage delay passes 1 s or a"
        " message is lost: the knee of the live path",
    )
    ba = add(
        bsub2,
        "api",
        _lazy("gridwatch.bench.api:run_api_bench"),
        "API latency over a month of a city's data; a broadcast to every speaker, answered.",
    )
    ba.add_argument("--venues", type=int, default=250, help="25 devices each, 4 speakers")
    ba.add_argument("--days", type=float, default=30, help="days of occupancy loaded")
    ba.add_argument("--every-min", type=int, default=5, help="minutes between readings")
    ba.add_argument("--incidents", type=int, default=20_000)
    ba.add_argument("--requests", type=int, default=200, help="timed requests per endpoint")
    ba.add_argument("--rate", type=float, default=200.0, help="fleet messages per second")
    _add_bench_home(ba)
    _add_bench_database_url(ba)
    bw = add(
        bsub2,
        "wall",
        _lazy("gridwatch.bench.wall:run_wall_bench"),
        "The wall's summary of a city with a year of incidents and tasks, with and without "
        "migration 025's indexes.",
    )
    bw.add_argument("--venues", type=int, default=250)
    bw.add_argument("--days", type=float, default=365, help="days of history")
    bw.add_argument("--incidents", type=int, default=100_000, help="each with its task")
    bw.add_argument("--open", type=int, default=40, help="of them still open (the newest)")
    bw.add_argument("--builds", type=int, default=100, help="timed summaries")
    _add_bench_home(bw)
    _add_bench_database_url(bw)
    bl = add(
        bsub2,
        "live",
        _lazy("gridwatch.bench.live:run_live_bench"),
        "Open many live streams on one API process and time each change from its commit to "
        "every stream that may see it; check each got exactly its own.",
    )
    bl.add_argument("--listeners", type=int, default=2_000, help="open live streams")
    bl.add_argument("--people", type=int, default=40, help="distinct people (city to grid)")
    bl.add_argument("--changes", type=int, default=100, help="changes committed")
    bl.add_argument("--interval", type=float, default=0.1, help="seconds between changes")
    bl.add_argument("--venues", type=int, default=200)
    bl.add_argument("--seed", type=int, default=7)
    bl.add_argument(
        "--city-wide", action="store_true", help="every stream's person sees the whole city"
    )
    _add_bench_home(bl)
    bv = add(
        bsub2,
        "vision",
        _lazy("gridwatch.bench.vision:run"),
        "Camera analytics on synthetic H.264 clips, in total and per condition: precision, "
        "recall, delay, counting error, false alerts per hour, person/animal confusion, and "
        "frames per second per core beside a bare decode loop.",
    )
    bv.add_argument("--seeds", type=int, default=3, help="clips of each kind (different seeds)")
    bv.add_argument("--first-seed", type=int, default=1,
                    help="the first seed (4 with --seeds 3: the held-out set of benchmarks.md)")  # fmt: skip
    bv.add_argument(
        "--quiet-minutes", type=float, default=60.0,
        help="minutes of quiet footage in all, for false alerts per hour",
    )  # fmt: skip
    bv.add_argument("--folder", help="keep the clips here (re-used when present)")
    bv.add_argument("--quick", action="store_true",
                    help="a handful of short clips (a few minutes in all), for development")  # fmt: skip
    bv.add_argument("--calibrated", action="store_true",
                    help="give each camera the optional calibration block (two people's heights "
                         "on the picture); the headline figures are without it")  # fmt: skip
    bv.add_argument("--colour-motion", action="store_true",
                    help="turn on the experimental colour motion (tuning.colour_motion); the "
                         "headline figures are without it")  # fmt: skip
    bv.add_argument("--tag", action="append", metavar="TAG",
                    help="only the clips with this tag (repeatable; e.g. --tag counting --seeds "
                         "15: a wider sample of one condition); no speed figures then")  # fmt: skip
    brt = add(
        bsub2,
        "rtsp",
        _lazy("gridwatch.bench.rtsp:run"),
        "OpenCV reading the RTSP camera simulator: time to open, frames per second per client, "
        "CPU, for several scene rates and numbers of clients.",
    )
    brt.add_argument("--rates", default="5,25,100", help="scene frame rates, comma-separated")
    brt.add_argument("--clients", default="1,4", help="clients at once, comma-separated")
    brt.add_argument("--seconds", type=float, default=10.0, help="how long each run reads")
    br = add(
        bsub2,
        "registry",
        _lazy("gridwatch.bench.registry:run"),
        "Plan and apply a city's registry file (200 venues, 5,000 devices, 1,000 people) and a "
        "province's (20,000 venues, 500,000 devices): times and peak memory.",
    )
    br.add_argument(
        "--no-province", action="store_true", help="only the city (the province takes minutes)"
    )
    br.add_argument(
        "--no-broker",
        action="store_true",
        help="skip the broker reconcile of the province's 20,000 nodes",
    )
    br.add_argument("--home", default=None,
                    help="folder for the throwaway services (default: temporary)")  # fmt: skip
    bb = add(
        bsub2,
        "broker",
        _lazy("gridwatch.bench.broker:run"),
        "Reconcile the broker accounts of N nodes from an empty broker, then once more with"
        " nothing to change, against a real Mosquitto with its dynamic-security plugin.",
    )
    bb.add_argument("--nodes", type=int, default=20_000, help="nodes at scale")
    bb.add_argument(
        "--from-empty",
        type=int,
        default=None,
        help="nodes reconciled from an empty broker (default: --nodes; quadratic in Mosquitto"
        " 2.0, whose plugin writes its whole state after every command)",
    )
    _add_bench_home(bb)
    bc = add(
        bsub2,
        "console",
        _lazy("gridwatch.bench.console:run"),
        "A grid worker's first load of the console in headless Chromium on a throttled mobile"
        " network: bytes transferred (compressed) and the time until the inbox can be used.",
    )
    bc.add_argument(
        "--profile", action="append", choices=["slow-3g", "slow-4g"], default=None,
        help="network profile (DevTools presets), may repeat (default: slow-4g and slow-3g)",
    )  # fmt: skip
    bc.add_argument("--venues", type=int, default=20)
    bc.add_argument("--tasks", type=int, default=5, help="open tasks in the worker's inbox")
    _add_bench_home(bc)
    _add_bench_database_url(bc)
    bn = add(
        bsub2,
        "notify",
        _lazy("gridwatch.bench.notify:run"),
        "With the city fleet running: from a red incident's commit to the first channel's HTTP"
        " request (p50, p99); then a storm of red incidents: deliveries, digests, provider limits.",
    )
    bn.add_argument("--venues", type=int, default=200)
    bn.add_argument("--devices-per-venue", type=int, default=25)
    bn.add_argument("--rate", type=float, default=1000.0, help="fleet messages per second")
    bn.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    bn.add_argument("--incidents", type=int, default=60, help="red incidents timed, one a second")
    bn.add_argument("--storm", type=int, default=1000, help="red incidents in the storm")
    bn.add_argument("--storm-s", type=float, default=60.0, help="seconds the storm lasts")
    bn.add_argument(
        "--drain-s", type=float, default=180.0, help="seconds to wait for the storm's deliveries"
    )
    for p in (bi, bf, bn):
        p.add_argument("--workers", type=int, default=2, help="ingest worker processes")
        _add_bench_home(p)
    return parser


def _node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Any) -> None:
    """`gridwatch node ...` (gridwatch/nodes.py)."""
    node = sub.add_parser(
        "node", help="Edge nodes: site files, enrolment codes, secrets, status.",
        description="Edge nodes: site files, enrolment codes, secrets, status.",
    )  # fmt: skip
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    sf = add(nsub, "site-file", _lazy("gridwatch.nodes:site_file"),
             "Write the node's complete site file (0600). It issues a NEW secret: the old one"
             " stops working.")  # fmt: skip
    sf.add_argument("--output", help="the file to write (default: NODE.site.yaml)")
    ec = add(nsub, "enrol-code", _lazy("gridwatch.nodes:enrolment_code"),
             "A one-time enrolment code for `gridwatch edge --enrol CODE --platform URL`.")  # fmt: skip
    ec.add_argument("--hours", type=float, default=24.0, help="valid this long (default 24)")
    ro = add(nsub, "rotate", _lazy("gridwatch.nodes:rotate"),
             "Give the node a new secret, shown once.")  # fmt: skip
    di = add(nsub, "disable", _lazy("gridwatch.nodes:switch"),
             "Switch the node off: its broker session is cut.")  # fmt: skip
    en = add(nsub, "enable", _lazy("gridwatch.nodes:switch"), "Switch the node on again.")
    sh = add(nsub, "show", _lazy("gridwatch.nodes:show"),
             "The node's status, last seen, and configuration version wanted and running.")  # fmt: skip
    for p in (sf, ec, ro, di, en, sh):
        p.add_argument("node", metavar="NODE", help="the edge node id")
        add_database_options(p)
        if p is not sh:
            p.add_argument("--as", dest="actor", default=None,
                           help="who does it, for the audit log (default: the OS user)")  # fmt: skip


def _wall_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Any) -> None:
    """`gridwatch wall ...` (gridwatch/wall_cmd.py)."""
    wall = sub.add_parser(
        "wall", help="Control-room walls: view-only tokens (make, list, revoke).",
        description="Control-room walls: view-only tokens (make, list, revoke).",
    )  # fmt: skip
    wsub = wall.add_subparsers(dest="wall_command", required=True, metavar="COMMAND")
    tk = add(wsub, "token", _lazy("gridwatch.wall_cmd:token"),
             "A view-only token for an area's wall, printed once (open"
             " /console/wall.html#token=TOKEN on the screen).")  # fmt: skip
    tk.add_argument("--area", required=True, help="the area the wall shows")
    tk.add_argument("--name", default="", help="which screen it is for (shown in the list)")
    tk.add_argument("--days", type=float, default=None,
                    help="expires after this many days (default: valid until revoked)")  # fmt: skip
    ls = add(wsub, "list", _lazy("gridwatch.wall_cmd:listing"), "The wall tokens, newest first.")
    ls.add_argument("--area", default=None, help="only this area's and those under it")
    rv = add(wsub, "revoke", _lazy("gridwatch.wall_cmd:revoke"),
             "Revoke a wall token: its wall stops at its next refresh.")  # fmt: skip
    rv.add_argument("id", type=int, metavar="ID", help="the token's id (`gridwatch wall list`)")
    for p in (tk, ls, rv):
        add_database_options(p)
        if p is not ls:
            p.add_argument("--as", dest="actor", default=None,
                           help="who does it, for the audit log (default: the OS user)")  # fmt: skip


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell shows for a tool cut off by `| head`


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # `--help | head` can break the pipe too
        logconfig.setup(args.log_level, args.log_format)
        return int(args.func(args))
    except ValidationError as exc:
        print(f"gridwatch: invalid configuration: {configuration_problems(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`gridwatch kpi haicheng | head`): stop quietly, as other tools
        # do, and keep the interpreter from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except psycopg.OperationalError as exc:
        log.debug("command failed", exc_info=True)
        reason = " ".join(str(exc).split())  # libpq's message spans lines
        print(f"gridwatch: {reason}; check --database-url or GRIDWATCH_DATABASE_URL, or start "
              "the local system with `scripts/up`", file=sys.stderr)  # fmt: skip
        return 1
    except (RuntimeError, ValueError, OSError, psycopg.Error) as exc:
        # Operational failures (a server that will not start, a database that cannot be
        # reached or refuses this role, a folder that cannot be written) are reported as what
        # happened, not as a traceback.
        log.debug("command failed", exc_info=True)
        print(f"gridwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

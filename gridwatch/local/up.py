"""`gridwatch up`: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
from pathlib import Path

from gridwatch.demo import DEMO_PASSWORD, read_credentials
from gridwatch.local import home as homes
from gridwatch.local.services import free_port, stop_on_signals, wait_for_port
from gridwatch.local.stack import LocalStack, Ports
from gridwatch.local.supervise import Supervisor

log = logging.getLogger(__name__)

DEFAULT_PORTS = Ports(postgres=55432, edge=1883, service=1884)
INGEST_METRICS_PORT = 9101
DEFAULT_API_PORT = 8080
API_START_S = 30.0  # the summary is printed once the console answers, or after this long
# Played by the demo fleet unless told otherwise: incidents within the first minute. It names
# the first six devices of the first five demo venues.
DEMO_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "demo.yaml"
DEMO_SCENARIO_VENUES = 5
DEMO_SCENARIO_DEVICES = 6


def _port_free(port: int) -> bool:
    """Whether a server could listen on the port now (as servers do, with SO_REUSEADDR, so a
    port that a stopped run left in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def missing_prerequisites() -> list[str]:
    """What the machine lacks, each with how to get it."""
    problems = []
    if shutil.which("mosquitto") is None:
        problems.append("Mosquitto is not installed: run `apt-get install -y mosquitto` (as root).")
    return problems


def run(args: argparse.Namespace) -> int:
    problems = missing_prerequisites()
    if problems:
        for p in problems:
            print(f"gridwatch up: {p}")
        return 1
    home = homes.prepare(Path(args.home))
    lock = homes.HomeLock(home)
    lock.acquire()  # before anything in the home changes: a second `up` must not touch it
    try:
        return _run_locked(args, home)
    finally:
        lock.release()


def _scenario_paths(args: argparse.Namespace, size: homes.DemoSize) -> list[Path]:
    """The scenarios the demo fleet plays: those asked for, else the demo's own when the demo
    has the devices it names."""
    scenarios = [Path(p) for p in args.scenario]
    fits = size.venues >= DEMO_SCENARIO_VENUES and size.devices_per_venue >= DEMO_SCENARIO_DEVICES
    if not scenarios and not args.no_demo_incidents and fits:
        scenarios = [DEMO_SCENARIO] if DEMO_SCENARIO.exists() else []
    return scenarios


def _commands_line(home: Path, dsn: str) -> str:
    """How the other commands (`gridwatch kpi`, `task list`, …) find this database."""
    here = home == Path(homes.DEFAULT_HOME).resolve()
    passfile = homes.passfile_of(home)
    return f"export GRIDWATCH_DATABASE_URL={dsn} PGPASSFILE={passfile}" + (
        "   (not needed in this folder)" if here else ""
    )


def _run_locked(args: argparse.Namespace, home: Path) -> int:
    from gridwatch.simulate import check_scenarios
    from simulators.scenario import load

    kept = homes.kept_size(home)
    size = homes.demo_size(home, args.venues, args.devices_per_venue)
    fleet = not args.no_fleet and args.fleet_rate > 0
    scenarios = _scenario_paths(args, size) if fleet else []
    for path in scenarios:
        load(path)  # a file that does not parse stops us before anything starts
    wanted = [DEFAULT_PORTS.postgres, DEFAULT_PORTS.edge, DEFAULT_PORTS.service]
    first_run = not (home / "ports.json").exists()
    preferred = DEFAULT_PORTS if first_run and all(map(_port_free, wanted)) else None
    stack = LocalStack(home, preferred=preferred)
    stopping = stop_on_signals()
    supervisor = Supervisor()
    try:
        report = stack.start_database()
        homes.save_database_url(stack.home, stack.role_dsn("cli"))
        # The demo registry goes in on first start (an empty registry) or when the demo grows;
        # otherwise the registry is left as its admins made it.
        if stack.registry_is_empty() or size != kept:
            creds = stack.apply_demo(size.venues, size.devices_per_venue, audit=True)
        else:
            creds = read_credentials(stack.credentials_file)
        check_scenarios(scenarios, creds)  # every device and node they name is in the fleet
        stack.start_broker()
        metrics_port = INGEST_METRICS_PORT if _port_free(INGEST_METRICS_PORT) else free_port()
        supervisor.add(
            "ingest", lambda: stack.start_ingest(args.ingest_workers, metrics_port=metrics_port)
        )
        api_port = DEFAULT_API_PORT if _port_free(DEFAULT_API_PORT) else free_port()
        supervisor.add("api", lambda: stack.start_api(api_port))
        if fleet:
            plays = [arg for path in scenarios for arg in ("--scenario", str(path.resolve()))]
            extra = [*plays, "--devices", args.devices]
            supervisor.add("fleet", lambda: stack.start_fleet(args.fleet_rate, *extra))
        if not wait_for_port("127.0.0.1", api_port, API_START_S):
            log.warning("the API is not listening after %.0f s; see %s", API_START_S,
                        stack.logs / "api.log")  # fmt: skip
        devices = sum(len(c.devices) for c in creds)
        fleet_line = (
            f"{len(creds)} simulated venues reporting ~{args.fleet_rate:g} msg/s (logs/fleet.log)"
            + (
                "\n              devices behind protocol simulators, read by the real drivers"
                if args.devices == "protocol"
                else ""
            )
            + "".join(f"\n              playing {p.name}" for p in scenarios)
            if fleet
            else "off (--no-fleet): connect real edge nodes with the credentials above"
        )
        print(
            f"""
gridwatch is up (Ctrl-C stops everything; running it again keeps the data)

  home        {stack.home}
  database    {stack.role_dsn("cli")}   (schema v{report.version}, {report.backend})
              ingest, api and cli each sign in as their own role;
              passwords in {stack.postgres.passfile} (PGPASSFILE)
              {_commands_line(stack.home, stack.role_dsn("cli"))}
  broker      edge nodes   mqtt://127.0.0.1:{stack.ports.edge}   (one account per node)
              services     mqtt://127.0.0.1:{stack.ports.service}   (ingest workers)
  ingest      {args.ingest_workers} worker(s), metrics http://127.0.0.1:{metrics_port}/metrics
  console     http://127.0.0.1:{api_port}/   (sign in as operator / {DEMO_PASSWORD};
              the same password for {" and ".join(stack.people_of_venue(creds[0].site)) if creds else "the demo people"})
  api         http://127.0.0.1:{api_port}/docs
  demo        {len(creds)} venues, {devices} devices; node credentials in {stack.credentials_file}
  commands    signed with {stack.command_key_file}; a real node's site file needs
              command_key: "{stack.command_public_key}"
  fleet       {fleet_line}
  logs        {stack.logs}/
""",
            flush=True,
        )
        while not stopping.wait(1.0):
            supervisor.check()
        return 0
    finally:
        log.info("stopping")
        supervisor.stop()
        stack.stop()

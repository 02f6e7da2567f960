"""A `gridwatch up` home folder: its lock, the database it serves, and the demo it was made with.

`up` holds an exclusive flock on `up.lock` for as long as it runs (the kernel drops it when the
process dies, however it dies), so a second `up` on the same home refuses instead of starting a
second set of services over the first. Other commands read `database.url` to find the running
home's database when they are given none.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gridwatch.local.services import write_private

log = logging.getLogger(__name__)

DEFAULT_HOME = ".gridwatch"
HOME_VARIABLE = "GRIDWATCH_HOME"
LOCK_FILE = "up.lock"
DATABASE_FILE = "database.url"
DEMO_FILE = "demo.json"
DEFAULT_VENUES = 12
DEFAULT_DEVICES_PER_VENUE = 6


class HomeError(RuntimeError):
    """A home that cannot be used as asked; the message says what to do."""


def passfile_of(folder: Path) -> Path:
    """The pgpass file of a home's local PostgreSQL: its URLs carry no password."""
    return folder / "postgres" / "pgpass"


def default_home() -> str:
    """GRIDWATCH_HOME, or .gridwatch in the current folder."""
    return os.environ.get(HOME_VARIABLE) or DEFAULT_HOME


def prepare(home: Path) -> Path:
    """Create the home folder (and its parents) or say why it cannot be used."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise HomeError(
            f"cannot use {home} as the home folder ({exc.strerror or exc}); "
            "choose a writable folder with --home"
        ) from None
    return home.resolve()


class HomeLock:
    """The exclusive lock `up` holds on its home; `acquire` refuses if another `up` has it."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(self.path.parent)
            raise HomeError(
                f"{self.path.parent} is already running (pid {pid or 'unknown'}); stop that "
                "`gridwatch up` first (Ctrl-C in its terminal) or use another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def holder(home: Path) -> int | None:
    """The pid of the `up` running on `home`, or None when none is."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def save_database_url(home: Path, url: str) -> None:
    """Keep the URL of the home's database for the other commands (owner-only: it may hold a
    password)."""
    write_private(home / DATABASE_FILE, url + "\n")


def running_database_url(home: str | None) -> str | None:
    """The database of a running home: `home` if given, else GRIDWATCH_HOME, else ./.gridwatch
    if there is one. None when no home is named and ./.gridwatch has none."""
    named = home or os.environ.get(HOME_VARIABLE)
    folder = Path(named or DEFAULT_HOME)
    path = folder / DATABASE_FILE
    if not path.exists():
        if named:
            raise HomeError(
                f"{folder} is not a gridwatch home (no {DATABASE_FILE}); start one with "
                f"`gridwatch up --home {folder}` or give --database-url"
            )
        return None
    if holder(folder) is None:
        raise HomeError(
            f"the gridwatch home {folder.resolve()} is not running; start it with `scripts/up` "
            "(or `gridwatch up --home ...`), or give --database-url"
        )
    passfile = passfile_of(folder)
    if passfile.exists():
        os.environ["PGPASSFILE"] = str(passfile.resolve())
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class DemoSize:
    venues: int
    devices_per_venue: int


def demo_size(home: Path, venues: int | None, devices_per_venue: int | None) -> DemoSize:
    """The demo this run of `up` seeds, and kept in the home for the next run.

    A home keeps the size it was created with. An explicit larger size grows it (new venues
    and devices; the existing nodes keep their secrets); a smaller one is refused, since a
    demo never shrinks: nodes left out would go silent and show offline.
    """
    path = home / DEMO_FILE
    kept = kept_size(home)
    if kept is None:
        size = DemoSize(venues or DEFAULT_VENUES, devices_per_venue or DEFAULT_DEVICES_PER_VENUE)
    else:
        size = DemoSize(max(kept.venues, venues or 0),
                        max(kept.devices_per_venue, devices_per_venue or 0))  # fmt: skip
        for asked, have, what in (
            (venues, kept.venues, "venues"),
            (devices_per_venue, kept.devices_per_venue, "devices per venue"),
        ):
            if asked is not None and asked < have:
                raise HomeError(
                    f"{home} has a demo of {have} {what}, and a demo never shrinks; leave out "
                    "the option to keep it, or use a new --home for a smaller demo"
                )
            if asked is not None and asked > have:
                print(f"gridwatch up: growing this home's demo from {have} to {asked} {what}; "
                      "the existing edge nodes keep their secrets", flush=True)  # fmt: skip
    if size != kept:
        path.write_text(json.dumps(asdict(size)))
    return size


def kept_size(home: Path) -> DemoSize | None:
    """The size kept in the home; for a home made before it was kept, read from nodes.json."""
    path = home / DEMO_FILE
    if path.exists():
        return DemoSize(**json.loads(path.read_text()))
    nodes = home / "nodes.json"
    if nodes.exists():
        creds = json.loads(nodes.read_text())
        if creds:
            return DemoSize(len(creds), max(len(c["devices"]) for c in creds))
    return None

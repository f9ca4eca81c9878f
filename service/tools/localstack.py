"""PostgreSQL and Redis servers started from the system's binaries in a directory of our own.

Used by `analytics dev` (data kept in the project's `.analytics/`) and by the test suite (a temporary
directory). Servers listen on 127.0.0.1 only; each runs as a child process that is told to stop when its
parent dies (PR_SET_PDEATHSIG), so a killed supervisor leaves no server behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psycopg
import redis
from psycopg import sql

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
DEBIAN_PACKAGES = ("postgresql", "redis-server")


class StackError(Exception):
    """A local server could not be found, installed or started; the message says what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian layout, then PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    return Path(found).parent if found and shutil.which("initdb") else None


def ensure_binaries(install: bool = True) -> None:
    """Make sure PostgreSQL and Redis servers exist: install them on Debian as root, else say how."""
    missing = [
        pkg for pkg, ok in (("postgresql", postgres_bindir()), ("redis-server", shutil.which("redis-server"))) if not ok
    ]
    if not missing:
        return
    command = "apt-get update && apt-get install -y " + " ".join(missing)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        log.info("installing %s: %s", ", ".join(missing), command)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, env=env, stdout=subprocess.DEVNULL)
        if postgres_bindir() and shutil.which("redis-server"):
            return
    raise StackError(f"PostgreSQL and Redis server binaries are needed; install them with: sudo {command}")


class Child:
    """A child process (optionally logging to `directory/<name>.log`), started and stopped by its owner."""

    name = "child"
    stop_signal = signal.SIGTERM

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.directory = directory
        self.name = name or self.name
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def spawn(
        self, argv: list[str], user: str | None = None, env: dict[str, str] | None = None, log_to_file: bool = True
    ) -> None:
        """Start the process in a session of its own, to be stopped by `stop()` or with its parent."""
        if log_to_file:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if log_to_file else None,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops us in order
            preexec_fn=_die_with_parent(self.stop_signal),
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )

    def _wait_ready(self, probe: Callable[[], None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                probe()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not up yet"
                if time.monotonic() > deadline:
                    self.stop()
                    raise StackError(
                        f"{self.name} did not start within {timeout:.0f}s ({exc}):\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down cleanly; kill it if it has not within `timeout` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class _Server(Child):
    """A server listening on a port of 127.0.0.1."""

    def __init__(self, directory: Path, port: int) -> None:
        super().__init__(directory)
        self.port = port or free_port()


class PostgresServer(_Server):
    """A PostgreSQL cluster in `directory/postgres`, created with initdb on first start."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint, exit
    superuser = "analytics"

    def __init__(
        self, directory: Path, port: int = 0, database: str = "analytics", options: dict[str, str] | None = None
    ) -> None:
        super().__init__(directory, port)
        self.database = database
        self.options = options or {}
        # initdb and postgres refuse to run as root: use the system's `postgres` account then.
        self.user = _unprivileged_user() if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.directory / "postgres"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database or self.database}"

    def start(self, timeout: float = 60.0) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise StackError("PostgreSQL server binaries not found")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir)
        self._refuse_running_server()
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ]
        for key, value in self.options.items():
            argv += ["-c", f"{key}={value}"]
        self.spawn(argv, self.user)
        self._wait_ready(self._probe, timeout)
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _initdb(self, bindir: Path) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.pgdata, info.pw_uid, info.pw_gid)
        result = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                self.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            hint = f" (the {self.user!r} account must be able to enter every parent folder)" if self.user else ""
            raise StackError(f"initdb failed in {self.pgdata}{hint}:\n{result.stderr.strip()}")

    def _refuse_running_server(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return  # stale file of a server that is gone: postgres cleans it up itself
        except PermissionError:
            pass
        raise StackError(f"a PostgreSQL server (pid {pid}) is already running on {self.pgdata}; stop it first")

    def _probe(self) -> None:
        psycopg.connect(self.url("postgres"), connect_timeout=1).close()


class RedisServer(_Server):
    """A Redis server keeping its append-only file in `directory/redis`."""

    name = "redis"

    def __init__(self, directory: Path, port: int = 0, appendonly: bool = True) -> None:
        super().__init__(directory, port)
        # On by default: the ingest stream lives here, and at most ~1 s of accepted events is at risk on a
        # power loss with `appendfsync everysec` (none on a Redis restart). Tests turn it off for speed.
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found")
        data = self.directory / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--dir",
                str(data),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ]
        )
        self._wait_ready(self._probe, timeout)

    def _probe(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise StackError(
        "PostgreSQL cannot run as root and no 'postgres' account exists; create one or run as another user"
    )

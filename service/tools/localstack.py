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
import random
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


def free_cluster_port() -> int:
    """A port for a Redis Cluster node: free, with its bus port (10,000 higher) free too, so at most 55535."""
    while True:
        port = free_port()
        if port > 55535:
            port = random.randrange(20_000, 55_535)  # noqa: S311 - a port, not a secret
        if _is_free(port) and _is_free(port + 10_000):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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


def _require_postgres_bindir() -> Path:
    bindir = postgres_bindir()
    if bindir is None:
        raise StackError("PostgreSQL server binaries not found")
    return bindir


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
        bindir = _require_postgres_bindir()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir)
        self._serve(bindir, timeout)
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _serve(self, bindir: Path, timeout: float) -> None:
        """Run the server on the cluster in `pgdata` and wait until `_probe` passes."""
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


class PostgresReplica(PostgresServer):
    """A read-only streaming replica of a running `PostgresServer`, in `directory/postgres`.

    On first start the primary is copied with `pg_basebackup -R` (which also writes `standby.signal` and the
    `primary_conninfo` to stream from); later starts reuse that copy, which catches up if the primary still has
    the WAL (no replication slot holds it: delete the directory to copy again). The primary needs nothing of its
    own: initdb's defaults (`wal_level=replica`, `max_wal_senders=10`, `host replication` for 127.0.0.1 in
    pg_hba.conf, trusted) already allow the copy and the stream.
    """

    name = "postgres-replica"

    def __init__(self, primary: PostgresServer, directory: Path, port: int = 0) -> None:
        # The primary's options too: a standby refuses to start with fewer max_connections (and the like); and
        # the primary's address of this run (its port may differ from the copy's `-R` one, which this overrides).
        conninfo = f"host=127.0.0.1 port={primary.port} user={primary.superuser}"
        super().__init__(directory, port, primary.database, {**primary.options, "primary_conninfo": conninfo})
        self.primary = primary

    def start(self, timeout: float = 60.0) -> None:
        """Copy the primary when there is no copy yet, then serve it read-only; back once it answers queries."""
        bindir = _require_postgres_bindir()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._base_backup(bindir, timeout)
        self._serve(bindir, timeout)

    def _base_backup(self, bindir: Path, timeout: float) -> None:
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.pgdata, info.pw_uid, info.pw_gid)
        argv = [
            str(bindir / "pg_basebackup"),
            "--host=127.0.0.1",
            f"--port={self.primary.port}",
            f"--username={self.superuser}",
            f"--pgdata={self.pgdata}",
            "--write-recovery-conf",  # -R: standby.signal, and primary_conninfo pointing at the primary
            "--wal-method=stream",
            "--checkpoint=fast",  # else the copy waits for the primary's next scheduled checkpoint
            "--no-password",
        ]
        try:
            result = subprocess.run(
                argv,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(self.pgdata, ignore_errors=True)  # a partial copy would be mistaken for a complete one
            raise StackError(f"pg_basebackup of {self.primary.url()} took longer than {timeout:.0f}s") from None
        if result.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise StackError(f"pg_basebackup of {self.primary.url()} failed:\n{result.stderr.strip()}")

    def _probe(self) -> None:
        """Up once it answers queries as a standby (hot standby: consistent, replaying the primary's WAL)."""
        with psycopg.connect(self.url("postgres"), connect_timeout=1) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if not (row and row[0]):
            raise StackError(f"{self.name} on port {self.port} is not in recovery")


def start_replicas(
    primary: PostgresServer, directory: Path, count: int, timeout: float = 60.0
) -> list[PostgresReplica]:
    """Start `count` streaming replicas of `primary`, each in `directory/replica-<n>` on a free port; if one
    fails, those already started are stopped before the error is raised."""
    replicas: list[PostgresReplica] = []
    try:
        for n in range(1, count + 1):
            replica = PostgresReplica(primary, directory / f"replica-{n}")
            replica.start(timeout)
            replicas.append(replica)
    except BaseException:
        for started in replicas:
            started.stop()
        raise
    return replicas


class RedisServer(_Server):
    """A Redis server keeping its append-only file in `directory/redis`."""

    name = "redis"

    def __init__(
        self, directory: Path, port: int = 0, appendonly: bool = True, cluster: bool = False, name: str | None = None
    ) -> None:
        super().__init__(directory, port)
        self.name = name or self.name
        # On by default: the ingest stream lives here, and at most ~1 s of accepted events is at risk on a
        # power loss with `appendfsync everysec` (none on a Redis restart). Tests turn it off for speed.
        self.appendonly = appendonly
        self.cluster = cluster  # a node of a Redis Cluster (`RedisClusterNodes` makes the cluster)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found")
        data = self.directory / self.name
        data.mkdir(parents=True, exist_ok=True)
        # A node whose master is down keeps serving its own slots (a cluster without replicas here): only the
        # communities of the lost slots fail.
        cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                   "2000", "--cluster-require-full-coverage", "no"] if self.cluster else []  # fmt: skip
        self.spawn(
            [
                binary,
                *cluster,
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


class RedisClusterNodes:
    """A Redis Cluster of `masters` nodes (no replicas) from the system's redis-server, in `directory/redis-cluster`,
    created with `redis-cli --cluster create` (equal slot ranges). The nodes keep their ports across restarts
    (recorded in `ports`), as each node's `nodes.conf` names the others by address."""

    def __init__(self, directory: Path, masters: int = 3, appendonly: bool = True) -> None:
        if masters < 3:
            raise StackError("a Redis Cluster needs at least 3 masters")
        self.directory = directory / "redis-cluster"
        ports_file = self.directory / "ports"
        ports = [int(p) for p in ports_file.read_text().split()] if ports_file.exists() else []
        if len(ports) != masters:
            ports = []
            while len(ports) < masters:
                port = free_cluster_port()
                if all(abs(port - taken) not in (0, 10_000) for taken in ports):
                    ports.append(port)
        self.nodes = [
            RedisServer(self.directory, port, appendonly, cluster=True, name=f"node-{i}")
            for i, port in enumerate(ports)
        ]

    @property
    def url(self) -> str:
        """The URL of one node: the client discovers the others."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "ports").write_text(" ".join(str(node.port) for node in self.nodes))
        for node in self.nodes:
            node.start(timeout)
        first = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            if int(first.cluster("info").get("cluster_slots_assigned", 0)) == 0:
                self._create()
            deadline = time.monotonic() + timeout
            while not self.ready():
                if time.monotonic() > deadline:
                    raise StackError(f"the Redis Cluster in {self.directory} did not reach cluster_state:ok")
                time.sleep(0.1)
        finally:
            first.close()

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError("redis-cli not found (Debian package redis-tools)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed: {done.stdout[-500:]}{done.stderr[-500:]}")

    def ready(self) -> bool:
        """Every node says cluster_state:ok and knows every other node."""
        for node in self.nodes:
            client = redis.Redis.from_url(node.url, socket_connect_timeout=1)
            try:
                info = client.cluster("info")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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

"""`analytics dev`: the whole stack on one machine, supervised.

Without DATABASE_URL / REDIS_URL it starts PostgreSQL and Redis from the system's binaries in the data
directory (kept between runs), migrates, then runs the API, the ingest worker and the huey worker as child
processes. A child that exits on its own is started again after a backoff (0.25 s, doubling up to 5 s), and
logged; one that exits MAX_RESTARTS times within RESTART_WINDOW seconds cannot run, so the rest is stopped and
the command fails, naming it. Ctrl-C or SIGTERM stops the apps first, then the servers.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from service.core.db import connect, detect_engine
from service.core.errors import first_line
from service.core.settings import ConfigError, Settings
from service.observability.exposition import MULTIPROC_ENV
from service.storage.migrations import migrate
from service.tools.localstack import (
    Child,
    PostgresServer,
    RedisClusterNodes,
    RedisServer,
    StackError,
    ensure_binaries,
    free_port,
    start_replicas,
)

log = logging.getLogger(__name__)

APPS = {
    "api": ["serve"],
    "ingest": ["ingest"],
    "worker": ["worker"],
}
MAX_RESTARTS = 5  # restarts of one child within RESTART_WINDOW seconds; one more exit stops the stack
RESTART_WINDOW = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0  # seconds before a restart: doubling with each recent restart


@dataclass
class _Supervised:
    """A child of the stack and how to start it again."""

    child: Child
    start: Callable[[], None]
    restarts: list[float] = field(default_factory=list)  # monotonic times of its recent restarts
    due: float | None = None  # when it is started again (it exited), else None


class _Stop(Exception):
    """Raised from the signal handler to unwind start-up or the wait loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # The first signal stops the stack; any more (make forwards its own SIGTERM to us right after the process
    # group's, Ctrl-C pressed twice) are ignored from here on, so none can cut the shutdown or its log short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def run(settings: Settings, redis_cluster: int = 0, replicas: int = 0) -> int:
    """Start everything, wait for a signal or a dead child, stop everything; the exit code. `redis_cluster`:
    masters of a Redis Cluster for the live state (0: a single Redis); `replicas`: streaming replicas of the
    embedded PostgreSQL for the reads."""
    if redis_cluster and (redis_cluster < 3 or settings.redis_url is not None):
        raise ConfigError("--redis-cluster: expected at least 3 masters, with REDIS_URL unset (the embedded Redis)")
    if replicas and settings.database_url is not None:
        raise ConfigError("--replicas: replicas of the embedded PostgreSQL only; unset DATABASE_URL")
    data = Path(settings.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    servers: list[PostgresServer | RedisServer] = []
    apps: list[Child] = []
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        env = dict(os.environ)
        if settings.jwt_secret is None and settings.jwt_algorithm == "HS256":
            env["JWT_SECRET"] = dev_jwt_secret(data, create=True)
            env.setdefault("SESSION_COOKIE_SECURE", "false")  # the dev API speaks plain HTTP
        # The workers' own /metrics on free ports unless set: their fixed defaults (9101, 9102) may be taken.
        for name in ("INGEST_METRICS_PORT", "WORKER_METRICS_PORT"):
            env.setdefault(name, str(free_port()))
        if settings.database_url is None or settings.redis_url is None:
            ensure_binaries()
        if settings.database_url is None:
            postgres = PostgresServer(data, settings.dev_postgres_port)
            servers.append(postgres)
            postgres.start()
            env["DATABASE_URL"] = postgres.url()
            if replicas:
                started = start_replicas(postgres, data, replicas)
                servers += started
                env["DATABASE_REPLICA_URLS"] = ",".join(replica.url() for replica in started)
        if settings.redis_url is None:
            redis_server = RedisServer(data, settings.dev_redis_port)
            servers.append(redis_server)
            redis_server.start()
            env["REDIS_URL"] = redis_server.url
            if redis_cluster:
                cluster = RedisClusterNodes(data, redis_cluster)
                servers += cluster.nodes
                cluster.start()
                env.update(REDIS_URL=cluster.url, REDIS_CLUSTER="true", TASK_REDIS_URL=redis_server.url)
        with connect(env["DATABASE_URL"], settings.db_wait, prepared=settings.db_prepared_statements) as conn:
            engine = detect_engine(conn)
            outcome = migrate(conn, engine)
        log.info("engine %s; migrations applied now: %s", engine, ", ".join(outcome.applied) or "none")
        supervised = [_Supervised(server, server.start) for server in servers]
        for name, args in APPS.items():
            child = Child(data, name)
            child.stop_signal = signal.SIGINT  # the graceful stop of each: uvicorn, the ingest loop, huey
            argv, app_env = [sys.executable, "-m", "service", *args], _app_env(env, name, data)

            def start(child: Child = child, argv: list[str] = argv, app_env: dict[str, str] = app_env) -> None:
                child.spawn(argv, env=app_env, log_to_file=False)

            start()
            apps.append(child)
            supervised.append(_Supervised(child, start))
        _announce(settings, env, data)
        return _watch(supervised)
    except _Stop as stop:
        log.info("%s received; stopping", stop)
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a signal during the shutdown must not cut it short
        for child in reversed(apps):
            child.stop(timeout=15)
        for server in reversed(servers):
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")


def dev_jwt_secret(data: Path, *, create: bool) -> str:
    """The development stack's JWT secret, kept in the data directory so `analytics token` signs what the API
    accepts; created on the first `analytics dev` (readable by its owner only)."""
    path = data / "jwt-secret"
    if not path.exists():
        if not create:
            raise ConfigError(f"JWT_SECRET: unset, and no development secret in {path} (run `analytics dev` once)")
        data.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _app_env(env: dict[str, str], name: str, data: Path) -> dict[str, str]:
    """The API's metrics files in the data directory (`analytics serve` empties it at start), whatever the
    number of workers; the other apps serve their own metrics and must not add theirs to the API's."""
    env = {k: v for k, v in env.items() if k != MULTIPROC_ENV}
    if name == "api":
        env[MULTIPROC_ENV] = str(data / "metrics")
    return env


def _watch(children: list[_Supervised]) -> int:
    """Restart children that exit, with a backoff; 1 when one exits too often to keep the stack up."""
    while True:
        for unit in children:
            if unit.due is not None:
                if time.monotonic() >= unit.due:
                    unit.due = None
                    try:
                        unit.start()
                    except StackError as exc:  # it did not come up: counts as another exit
                        log.error("%s did not start again: %s", unit.child.name, first_line(exc))
                continue
            assert unit.child.process is not None
            code = unit.child.process.poll()
            if code is None:
                continue
            unit.child.stop()  # closes what the dead process left open (its log file)
            unit.restarts = [t for t in unit.restarts if time.monotonic() - t < RESTART_WINDOW]
            if len(unit.restarts) >= MAX_RESTARTS:
                log.error(
                    "%s exited with code %s, %d restarts within %.0fs; stopping the stack",
                    unit.child.name, code, len(unit.restarts), RESTART_WINDOW,
                )  # fmt: skip
                return 1
            delay = min(BACKOFF_FIRST * 2 ** len(unit.restarts), BACKOFF_MAX)
            unit.restarts.append(time.monotonic())
            unit.due = time.monotonic() + delay
            log.warning("%s exited with code %s; starting it again in %.2fs", unit.child.name, code, delay)
        time.sleep(0.2)


def _announce(settings: Settings, env: dict[str, str], data: Path) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "analytics dev is running (Ctrl-C stops everything):",
        f"  API          {base}",
        f"  health       {base}/health   readiness {base}/ready",
        f"  OpenAPI      {base}/docs",
        "  a token      analytics token --user 1 --staff   (signed with the secret in the data directory)",
        f"  metrics      {base}/metrics   ingest http://{settings.host}:{env['INGEST_METRICS_PORT']}/metrics"
        f"   worker http://{settings.host}:{env['WORKER_METRICS_PORT']}/metrics",
        f"  PostgreSQL   {env['DATABASE_URL']}",
        f"  Redis        {env['REDIS_URL']}"
        + (f"   (cluster; task queue {env['TASK_REDIS_URL']})" if env.get("REDIS_CLUSTER") == "true" else ""),
        *([f"  replicas     {env['DATABASE_REPLICA_URLS']}"] if env.get("DATABASE_REPLICA_URLS") else []),
        f"  data, logs   {data}",
        "",
    ]
    print("\n".join(lines), flush=True)

"""`analytics dev`: the whole stack on one machine, supervised.

Without DATABASE_URL / REDIS_URL it starts PostgreSQL and Redis from the system's binaries in the data
directory (kept between runs), migrates, then runs the API, the ingest worker and the huey worker as child
processes. Ctrl-C or SIGTERM stops the apps first, then the servers; if any child exits on its own, the
rest is stopped too and the command fails, naming it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from service.db import connect, detect_engine
from service.localstack import Child, PostgresServer, RedisServer, ensure_binaries
from service.metrics_exposition import MULTIPROC_ENV
from service.migrations import migrate
from service.settings import ConfigError, Settings

log = logging.getLogger(__name__)

APPS = {
    "api": ["serve"],
    "ingest": ["ingest"],
    "worker": ["worker"],
}


class _Stop(Exception):
    """Raised from the signal handler to unwind start-up or the wait loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(settings: Settings) -> int:
    """Start everything, wait for a signal or a dead child, stop everything; the exit code."""
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
        if settings.database_url is None or settings.redis_url is None:
            ensure_binaries()
        if settings.database_url is None:
            postgres = PostgresServer(data, settings.dev_postgres_port)
            servers.append(postgres)
            postgres.start()
            env["DATABASE_URL"] = postgres.url()
        if settings.redis_url is None:
            redis_server = RedisServer(data, settings.dev_redis_port)
            servers.append(redis_server)
            redis_server.start()
            env["REDIS_URL"] = redis_server.url
        with connect(env["DATABASE_URL"], settings.db_wait, prepared=settings.db_prepared_statements) as conn:
            engine = detect_engine(conn)
            outcome = migrate(conn, engine)
        log.info("engine %s; migrations applied now: %s", engine, ", ".join(outcome.applied) or "none")
        for name, args in APPS.items():
            child = Child(data, name)
            child.stop_signal = signal.SIGINT  # the graceful stop of each: uvicorn, the ingest loop, huey
            child.spawn([sys.executable, "-m", "service", *args], env=_app_env(env, name, data), log_to_file=False)
            apps.append(child)
        _announce(settings, env, data)
        return _watch([*apps, *servers])
    except _Stop as stop:
        log.info("%s received; stopping", stop)
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
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


def _watch(children: list[Child]) -> int:
    while True:
        for child in children:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                log.error("%s exited with code %s; stopping the stack", child.name, code)
                return 1
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
        f"  PostgreSQL   {env['DATABASE_URL']}",
        f"  Redis        {env['REDIS_URL']}",
        f"  data, logs   {data}",
        "",
    ]
    print("\n".join(lines), flush=True)

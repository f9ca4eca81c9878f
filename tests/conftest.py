"""Real PostgreSQL and Redis for every test run, and a fresh database per test.

Where the servers come from, in order:
1. `TEST_DATABASE_URL` / `TEST_REDIS_URL` when set (the PostgreSQL role needs CREATEDB; the Redis database
   in the URL is flushed before each test, so point it at one you can spare);
2. with `TEST_DOCKER=1`, containers through testcontainers (TimescaleDB and Redis images; needs a Docker
   engine and the `docker` extra);
3. otherwise servers started from the system's binaries in a temporary directory, stopped at the end.

Each test that asks for `database_url` gets its own database, cloned from a template migrated once per run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from litestar.testing import TestClient
from psycopg import sql

from service.core.db import detect_engine
from service.core.settings import Settings, from_env
from service.storage.migrations import migrate
from service.tools.localstack import PostgresServer, RedisServer, ensure_binaries
from tests.support import TEST_JWT_SECRET, staff_client

TIMESCALEDB_IMAGE = "timescale/timescaledb:2.23.0-pg17"
REDIS_IMAGE = "redis:7.4-alpine"
_counter = itertools.count()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _docker_requested() -> bool:
    if os.environ.get("TEST_DOCKER") != "1":
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        pytest.exit(f"TEST_DOCKER=1 but no Docker engine answers ({exc})", returncode=2)
    return True


@pytest.fixture(scope="session")
def scratch_dir() -> Iterator[Path]:
    """A temporary directory the `postgres` account can enter too (servers run as that user under root)."""
    path = Path(tempfile.mkdtemp(prefix="analytics-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url(scratch_dir: Path) -> Iterator[str]:
    """A URL to a server on which the tests may create and drop databases."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif _docker_requested():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(image=TIMESCALEDB_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    else:
        ensure_binaries(install=False)
        server = PostgresServer(
            scratch_dir / "pg", options={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        )
        try:
            server.start()
            yield server.url()
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server_url(scratch_dir: Path) -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
    elif _docker_requested():
        from testcontainers.redis import RedisContainer

        with RedisContainer(image=REDIS_IMAGE) as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
    else:
        ensure_binaries(install=False)
        server = RedisServer(scratch_dir / "redis", appendonly=False)
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


def create_database(admin_url: str, template: str = "template0") -> str:
    """A new, uniquely named database on the test server; returns its URL."""
    name = f"analytics_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated once per run, cloned for each test."""
    url = create_database(postgres_admin_url)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, detect_engine(conn))
    yield urlsplit(url).path.lstrip("/")
    drop_database(postgres_admin_url, url)


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    url = create_database(postgres_admin_url, template_database)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test's own with no schema at all."""
    url = create_database(postgres_admin_url)
    yield url
    drop_database(postgres_admin_url, url)


def emptied(redis_url: str) -> str:
    """The Redis database of this URL, flushed; the URL."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The test Redis, emptied for this test."""
    return emptied(redis_server_url)


def settings_for(database_url: str | None, redis_url: str | None, **env: str) -> Settings:
    """Settings as the service would read them, from an explicit environment (never the process's)."""
    values = {k: v for k, v in (("DATABASE_URL", database_url), ("REDIS_URL", redis_url)) if v}
    defaults = {"DATABASE_WAIT": "5", "DATABASE_TIMEOUT": "2", "REDIS_TIMEOUT": "1", "JWT_SECRET": TEST_JWT_SECRET}
    return from_env({**values, **defaults, **env}, dotenv=None)


@pytest.fixture(name="settings_for")
def settings_for_fixture() -> Callable[..., Settings]:
    """`settings_for(database_url, redis_url, **env)` for tests that bring their own servers."""
    return settings_for


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return settings_for(database_url, redis_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The API on this test's database and Redis, lifespan included; it sends a staff token unless a test
    replaces the Authorization header."""
    with staff_client(settings) as test_client:
        yield test_client

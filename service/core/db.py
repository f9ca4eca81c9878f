"""PostgreSQL access: connection pools (async for the API, sync for workers) and storage-engine detection."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from service.core.errors import first_line
from service.core.settings import Settings

log = logging.getLogger(__name__)

Engine = Literal["timescaledb", "postgres"]

# The TimescaleDB features the service relies on (continuous aggregates, policies) exist only in the
# Timescale-License build; the Apache-2 ("apache") build and plain PostgreSQL get the `postgres` engine.
ENGINE_QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
       current_setting('timescaledb.license', true)
"""


def engine_from(extension_installed: bool, license: str | None) -> Engine:
    """The engine for a database with or without the extension and with that license setting."""
    return "timescaledb" if extension_installed and license == "timescale" else "postgres"


def detect_engine(conn: psycopg.Connection) -> Engine:
    """Ask the database which engine it offers."""
    row = conn.execute(ENGINE_QUERY).fetchone()
    assert row is not None
    return engine_from(bool(row[0]), row[1])


async def detect_engine_async(conn: psycopg.AsyncConnection) -> Engine:
    """Ask the database which engine it offers, on an async connection."""
    cur = await conn.execute(ENGINE_QUERY)
    row = await cur.fetchone()
    assert row is not None
    return engine_from(bool(row[0]), row[1])


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached in the time allowed."""


def connect(url: str, wait: float = 0.0, autocommit: bool = True, prepared: bool = True) -> psycopg.Connection:
    """One connection, retrying for up to `wait` seconds while the server is starting or unreachable;
    `prepared=False` turns psycopg's automatic prepared statements off (DATABASE_PREPARED_STATEMENTS)."""
    deadline = time.monotonic() + wait
    delay = 0.1
    while True:
        try:
            return psycopg.connect(
                url, autocommit=autocommit, connect_timeout=5, prepare_threshold=5 if prepared else None
            )
        except psycopg.OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {first_line(exc)}") from None
            log.info("waiting for PostgreSQL: %s", first_line(exc))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _connection_options(settings: Settings) -> dict[str, Any]:
    # psycopg prepares a statement on its 5th execution; None turns that off.
    return {"prepare_threshold": 5 if settings.db_prepared_statements else None}


async def _transactional(conn: psycopg.AsyncConnection[Any]) -> None:
    """What the API's pool does with each connection given back: transaction mode again, whatever a one-statement
    read switched on (`ReadRouter.run(..., autocommit=True)`), on every path, a cancelled read's too."""
    if conn.autocommit:
        await conn.set_autocommit(False)


def async_pool(settings: Settings, url: str, *, name: str = "api") -> AsyncConnectionPool:
    """The API's pool (of the primary, or `name`d after a read replica); opened and closed by the application
    lifespan. Its connections run in transaction mode: writes of several statements rely on it."""
    return AsyncConnectionPool(
        url,
        kwargs=_connection_options(settings),
        reset=_transactional,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_timeout,
        open=False,
        name=name,
    )


def sync_pool(
    settings: Settings, url: str, *, name: str = "worker", autocommit: bool = False, size: int | None = None
) -> ConnectionPool:
    """A worker's pool (`size` connections, else DB_POOL_MIN to DB_POOL_MAX); the caller opens it on start-up."""
    return ConnectionPool(
        url,
        kwargs={**_connection_options(settings), "autocommit": autocommit},
        min_size=size or settings.db_pool_min,
        max_size=size or settings.db_pool_max,
        timeout=settings.db_timeout,
        open=False,
        name=name,
    )

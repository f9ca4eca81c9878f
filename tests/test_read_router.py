"""`ReadRouter.run` on the primary alone: a one-statement read in autocommit mode, and the API pool's connection
in transaction mode again once back, whether the read returned, failed or was cancelled. On a real PostgreSQL
(replicas: test_replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from service.core.db import async_pool
from service.core.settings import Settings
from service.storage.replicas import ReadRouter

# Two statements see one transaction id only inside a transaction; in autocommit mode each has its own.
TXID = "SELECT txid_current()"


async def txids(conn: AsyncConnection[Any]) -> tuple[int, int, bool]:
    """Two statements' transaction ids, and whether the connection was in autocommit mode."""
    first = await (await conn.execute(TXID)).fetchone()
    second = await (await conn.execute(TXID)).fetchone()
    assert first is not None and second is not None
    return first[0], second[0], conn.autocommit


async def failing(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT 1 / 0")


async def slow(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_sleep(30)")


def test_autocommit_reads_skip_the_transaction_and_leave_the_pool_as_it_was(
    database_url: str, settings_for: Callable[..., Settings]
) -> None:
    async def scenario() -> None:
        settings = settings_for(database_url, None, DATABASE_POOL_MIN="1", DATABASE_POOL_MAX="1")
        pool = async_pool(settings, database_url)  # the API's pool, with one connection: always the same one
        await pool.open()
        try:
            reads = ReadRouter(pool)
            first, second, autocommit = await reads.run(txids, autocommit=True)
            assert autocommit and first != second  # no BEGIN: each statement committed on its own
            first, second, autocommit = await reads.run(txids)
            assert not autocommit and first == second  # the same connection, back in transaction mode
            with pytest.raises(psycopg.errors.DivisionByZero):
                await reads.run(failing, autocommit=True)
            first, second, autocommit = await reads.run(txids)
            assert not autocommit and first == second
            cancelled = asyncio.create_task(reads.run(slow, autocommit=True))  # a client that went away
            await asyncio.sleep(0.5)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            first, second, autocommit = await reads.run(txids)
            assert not autocommit and first == second
        finally:
            await pool.close()

    asyncio.run(scenario())

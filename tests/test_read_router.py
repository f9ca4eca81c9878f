"""`ReadRouter.run` on the primary alone: a one-statement read in autocommit mode, and the pool's connection
handed back as it was lent, whether the read returns or fails. On a real PostgreSQL (replicas: test_replicas)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

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


def test_autocommit_reads_skip_the_transaction_and_leave_the_pool_as_it_was(database_url: str) -> None:
    async def scenario() -> None:
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)  # one connection, reused
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
        finally:
            await pool.close()

    asyncio.run(scenario())

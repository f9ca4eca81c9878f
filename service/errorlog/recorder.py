"""Unhandled exceptions of the API recorded as error logs in the background, grouped like every other error."""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from service.core.errors import InvalidInput, first_line
from service.errorlog.records import NewErrorLog, record_error

log = logging.getLogger(__name__)


class ErrorRecorder:
    """Records unhandled exceptions as error logs in the background (the 500 answer does not wait for it)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._pending: set[asyncio.Task[None]] = set()

    def submit(self, new: NewErrorLog) -> None:
        task = asyncio.create_task(self._record(new))
        self._pending.add(task)  # a strong reference until it is done
        task.add_done_callback(self._pending.discard)

    async def _record(self, new: NewErrorLog) -> None:
        try:
            async with self.pool.connection() as conn:
                await record_error(conn, new)
        except InvalidInput as exc:
            log.warning("could not record an unhandled error as an error log: %s", exc.errors)
        except Exception as exc:  # noqa: BLE001 - the database may be the very thing that failed
            log.warning("could not record an unhandled error as an error log: %s", first_line(exc))

    async def drain(self) -> None:
        """Wait for the records under way (at shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

"""Read routing: report and listing reads go to a PostgreSQL read replica that keeps up, else to the primary.

A monitor task measures every replica every few seconds (never per request): its lag is 0 once it has replayed
the WAL the primary had written when the round began (`pg_last_wal_replay_lsn() >= pg_current_wal_lsn()`),
else the age of the last transaction it replayed. The replay timestamp alone would be misleading: on an idle
primary it only grows, though nothing is missing. A replica further behind than DATABASE_REPLICA_MAX_LAG, or
unreachable, gets no reads until a later round finds it fit; the fit ones take turns (round-robin).

Handlers hand the read over as a function of a connection, `await resources.reads.run(lambda conn: ...)`, so
that a read which fails on a replica (stopped, unreachable, no connection in time) can be run again on the
primary: the client sees an answer, and the replica gets no reads until the monitor finds it fit again.
Without replicas, `run` is the primary pool's `connection()` around the function, and nothing more (but for
`autocommit=True`: a one-statement read then runs without BEGIN and COMMIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from service.core.db import async_pool
from service.core.errors import first_line
from service.core.settings import Settings
from service.observability.metrics import DB_READS

log = logging.getLogger(__name__)

T = TypeVar("T")
Read = Callable[[AsyncConnection[Any]], Awaitable[T]]

MONITOR_SECONDS = 2.0  # between two measurements of the replicas
NOT_MEASURED = "not measured yet"

# What a replica's failure looks like to a read: the server gone or refusing (OperationalError, which
# PoolTimeout, no connection in time, is too, and so is a query cancelled by a conflict with the replay), the
# connection unusable (InterfaceError). Such a read is run again on the primary; errors of the read itself (a
# 404, a bad query) are not.
REPLICA_FAILURES = (psycopg.OperationalError, psycopg.InterfaceError)

PRIMARY_LSN = "SELECT pg_current_wal_lsn()::text"
# On the replica. NULL primary position (the primary did not answer): the replay timestamp alone decides.
REPLICA_LAG = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn() >= %(primary_lsn)s::pg_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""

_PRIMARY_READS = DB_READS.labels("primary")
_REPLICA_READS = DB_READS.labels("replica")


class ReplicaStatus(msgspec.Struct, omit_defaults=True):
    """One read replica as the monitor last saw it."""

    name: str  # host:port/database
    used: bool  # gets reads now
    lag_seconds: float | None  # behind the primary; null while it cannot be measured
    error: str | None = None  # why it gets no reads


def replica_name(url: str) -> str:
    """`host:port/database` of a connection URL: a name for logs, metrics and /ready, never the password."""
    params = conninfo_to_dict(url)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


class Replica:
    """One read replica: its pool, and what the monitor and the reads last learnt of it."""

    def __init__(self, name: str, pool: AsyncConnectionPool) -> None:
        self.name = name
        self.pool = pool
        self.used = False  # no reads until a first measurement finds it fit
        self.lag: float | None = None
        self.error: str | None = NOT_MEASURED
        self.failed_at = float("-inf")  # monotonic time of the last read that failed on it

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(name=self.name, used=self.used, lag_seconds=self.lag, error=self.error)


class ReadRouter:
    """The API's reads: on a fit replica (round-robin) when there are replicas, else on the primary."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replicas: Sequence[Replica] = (),
        *,
        max_lag: float = 30.0,
        timeout: float = 5.0,
        interval: float = MONITOR_SECONDS,
    ) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.max_lag = max_lag  # seconds a replica may be behind and still get reads
        self.timeout = timeout  # for a connection, and again for a measurement's query
        self.interval = interval
        self._turn = 0
        self._monitor: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, primary: AsyncConnectionPool, interval: float | None = None
    ) -> ReadRouter:
        """A router over the replicas of DATABASE_REPLICA_URLS (their pools created, not opened), measured every
        `interval` seconds (None: MONITOR_SECONDS)."""
        replicas = []
        for url in settings.database_replica_urls():
            name = replica_name(url)
            replicas.append(Replica(name, async_pool(settings, url, name=f"replica {name}")))
        return cls(
            primary,
            replicas,
            max_lag=settings.database_replica_max_lag,
            timeout=settings.db_timeout,
            interval=MONITOR_SECONDS if interval is None else interval,
        )

    async def open(self) -> None:
        """Open the replicas' pools and start the monitor. A replica that is down does not hold this up: its
        pool keeps trying in the background, and it gets reads once the monitor finds it fit."""
        if not self.replicas:
            return
        for replica in self.replicas:
            await replica.pool.open(wait=False)
        self._monitor = asyncio.create_task(self._watch(), name="replica-monitor")

    async def close(self) -> None:
        """Stop the monitor (a measurement under way is dropped: it only reads) and close the replicas' pools."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for replica in self.replicas:
            await replica.pool.close()

    async def run(self, read: Read[T], *, autocommit: bool = False) -> T:
        """`read` on a connection of a fit replica, or of the primary; run again on the primary when the replica
        fails under it. The connection's transaction commits when `read` returns, rolls back when it raises.
        `autocommit=True` is for a read of one statement: it runs without BEGIN and COMMIT, two round trips that
        cost more than a small rollup read takes (about 0.3 ms here)."""
        replica = self._pick() if self.replicas else None
        if replica is not None:
            _REPLICA_READS.inc()
            try:
                async with replica.pool.connection() as conn:
                    return await _run(conn, read, autocommit)
            except REPLICA_FAILURES as exc:
                self._failed(replica, exc)
        _PRIMARY_READS.inc()
        async with self.primary.connection() as conn:
            return await _run(conn, read, autocommit)

    def status(self) -> list[ReplicaStatus]:
        """Each replica: whether it gets reads, its lag, why not."""
        return [replica.status() for replica in self.replicas]

    def _pick(self) -> Replica | None:
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._turn + step) % count]
            if replica.used:
                self._turn = (self._turn + step + 1) % count
                return replica
        return None

    def _failed(self, replica: Replica, exc: Exception) -> None:
        replica.failed_at = time.monotonic()
        replica.error = f"a read failed: {first_line(exc)}"
        if replica.used:
            log.warning("replica %s: a read failed (%s); its reads go to the primary", replica.name, first_line(exc))
        replica.used = False

    async def _watch(self) -> None:
        while True:
            try:
                await self.measure()
            except Exception:  # a bug in a round must not stop the monitor: replicas would keep their last state
                log.exception("replica monitor: a measurement round failed")
            await asyncio.sleep(self.interval)

    async def measure(self) -> None:
        """Measure every replica once (at the same time), against the primary's position read first."""
        primary_lsn = await self._primary_lsn()
        await asyncio.gather(*(self._measure(replica, primary_lsn) for replica in self.replicas))

    async def _primary_lsn(self) -> str | None:
        try:
            async with asyncio.timeout(self.timeout * 2), self.primary.connection(timeout=self.timeout) as conn:
                cur = await conn.execute(PRIMARY_LSN)
                row = await cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - /ready reports the primary; the replay timestamps still tell
            log.debug("replica monitor: no WAL position from the primary (%s)", first_line(exc))
            return None
        return None if row is None else str(row[0])

    async def _measure(self, replica: Replica, primary_lsn: str | None) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout * 2), replica.pool.connection(timeout=self.timeout) as conn:
                cur = await conn.execute(REPLICA_LAG, {"primary_lsn": primary_lsn})
                row = await cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - an unreachable replica is a state to report, not an error
            self._set(replica, None, f"unreachable: {first_line(exc)}")
            return
        assert row is not None  # one row, always
        in_recovery, caught_up, since_replay = row
        if not in_recovery:
            self._set(replica, None, "not a replica: the server is not in recovery")
            return
        if not caught_up and since_replay is None:
            self._set(replica, None, "behind the primary, with no transaction replayed yet to measure by")
            return
        lag = 0.0 if caught_up else max(0.0, float(since_replay))  # max: the two servers' clocks may differ
        if lag > self.max_lag:
            self._set(replica, lag, f"{lag:.1f}s behind the primary, more than {self.max_lag:g}s")
        elif replica.failed_at >= started:
            replica.lag = lag  # a read failed on it while it was measured: the next round decides
        else:
            self._set(replica, lag, None)

    def _set(self, replica: Replica, lag: float | None, error: str | None) -> None:
        used = error is None
        if used and not replica.used:
            log.info("replica %s: fit (%.1fs behind); it gets reads", replica.name, lag or 0.0)
        elif not used and (replica.used or replica.error == NOT_MEASURED):
            log.warning("replica %s: %s; its reads go to the primary", replica.name, error)
        replica.used, replica.lag, replica.error = used, lag, error


async def _run(conn: AsyncConnection[Any], read: Read[T], autocommit: bool) -> T:
    """`read` on `conn`, in autocommit mode if asked (a flag on an idle connection: no round trip). The pool
    turns it off again when the connection comes back (`service.core.db.async_pool`)."""
    if autocommit:
        await conn.set_autocommit(True)
    return await read(conn)

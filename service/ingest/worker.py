"""`analytics ingest`: the consumer-group worker that moves accepted events from the streams (one per shard, each
with its own `ingest` group; every worker reads all of them) into the tables.

Guarantees: an entry is acknowledged only after the transaction holding its row committed, so a crash at
any point leaves it pending; pending entries are re-read on restart (same consumer name) or taken over by
another consumer after INGEST_CLAIM_IDLE seconds (XAUTOCLAIM); a redelivered event is stored once (the
writer skips duplicates). While PostgreSQL is down the worker retries with backoff and the stream absorbs
the backlog. Entries that can never be stored (undecodable, or refused by a constraint) are moved to their
shard's dead-letter stream with the reason, so one bad entry cannot stall the rest.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple, TypeVar

import msgspec
import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout
from redis.cluster import RedisCluster

from service.core.db import sync_pool
from service.core.errors import REDIS_ERRORS, first_line
from service.core.settings import Settings
from service.ingest.writer import Written, activity_rows, write_batch
from service.live.client import SyncRedis, layout, sync_client
from service.live.keys import GROUP, KIND_ACTIVITY, KIND_GEO, Shard
from service.live.records import ActivityRecord, GeoRecord
from service.live.stream import as_bytes, trim_acknowledged
from service.observability.metrics import EVENTS_INGESTED

log = logging.getLogger(__name__)

Entry = tuple[Shard, bytes, dict[bytes, bytes]]  # (the shard whose stream holds it, entry id, its fields)
Dead = tuple[Entry, bytes, str]  # a record that can never be stored: its entry, its field, why


class Batch(NamedTuple):
    """Entries read and decoded: the records of each kind with the (entry, field) each came from (for dead
    letters, in the order `_store` indexes them), and the fields that could not be decoded."""

    entries: list[Entry]
    activities: list[ActivityRecord]
    geos: list[GeoRecord]
    sources: list[tuple[Entry, bytes]]
    dead: list[Dead]
    rows: list[tuple[object, ...]]  # the activities as rows, made here rather than while the database waits


T = TypeVar("T")
_activity = msgspec.msgpack.Decoder(ActivityRecord)
_geo = msgspec.msgpack.Decoder(GeoRecord)
MAX_BACKOFF = 30.0
CLUSTER_POLL_MS = 50  # on a cluster, the wait after a look that found every stream empty
SHARD_REST = 2.0  # on a cluster, seconds a shard whose master failed is left alone before the next try


class IngestWorker:
    """One consumer of the `ingest` group of every shard's stream; `run()` until `stop` is set, or `step()` for
    one batch."""

    def __init__(
        self, settings: Settings, pool: ConnectionPool, client: SyncRedis, consumer: str, stop: threading.Event
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.consumer = consumer
        self.stop = stop
        self.shards = layout(settings).all
        self.by_stream = {shard.stream.encode(): shard for shard in self.shards}
        # Entries read per stream: the batch spread over the shards (a read takes from each stream at once).
        self.per_stream = max(1, -(-settings.ingest_batch_size // len(self.shards)))
        self._claim_cursor = dict.fromkeys(self.shards, "0-0")
        # On a cluster each shard is on some master, and one that fails must not stop the others: a shard whose
        # call failed rests for SHARD_REST seconds, a group not created yet is created later, and entries stored
        # but not acknowledged are acknowledged once their master answers again.
        self.cluster = isinstance(client, RedisCluster)
        self._resting: dict[Shard, float] = {}  # shard -> monotonic time until which it is left alone
        self._grouped: set[Shard] = set()
        self._unacked: dict[Shard, list[tuple[list[Entry], list[Dead]]]] = {}
        self._last_claim = 0.0
        self._last_trim = 0.0
        self.ingested = 0  # events written (duplicates included) since start

    def run(self) -> None:
        """Consume until `stop` is set. The next batch is read from Redis and decoded while the current one is
        written to PostgreSQL (the decoding runs while this thread waits for the server), so neither waits for
        the other."""
        self._retry_redis(self.ensure_group)
        log.info("ingest worker %r consuming %d stream(s) (group %s)", self.consumer, len(self.shards), GROUP)
        # What a previous life of this consumer left pending comes first, before anything is read ahead.
        while not self.stop.is_set() and self._retry_redis(self._finish_own_pending):
            pass
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as reader:
            ahead = reader.submit(self._fetch_decoded)
            while not self.stop.is_set():
                try:
                    batch = ahead.result()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("cannot reach Redis (%s); retrying", exc)
                    self.stop.wait(1.0)
                    batch = None
                ahead = reader.submit(self._fetch_decoded)
                if batch is not None:
                    self._retry_redis(partial(self._write, batch))
                if time.monotonic() - self._last_trim > 1.0:
                    self._retry_redis(self._maintain)
            ahead.cancel()
        log.info("ingest worker %r stopped after %d events", self.consumer, self.ingested)

    def _finish_own_pending(self) -> bool:
        entries = self._read("0", block_ms=None)
        if entries:
            self._process(entries)
        return bool(entries)

    def _fetch_decoded(self) -> Batch | None:
        """The next entries (`_fetch`), decoded; None when none came."""
        entries = self._fetch()
        return self._decode(entries) if entries else None

    def _fetch(self, block_ms: int = 1000) -> list[Entry]:
        """Stale entries of other consumers when it is time to look, else new ones (waiting up to `block_ms`)."""
        entries: list[Entry] = []
        if time.monotonic() - self._last_claim > self.settings.ingest_claim_idle / 2:
            entries = self._claim()
        return entries or self._read(">", block_ms=block_ms)

    def ensure_group(self) -> None:
        """The consumer group of every shard's stream (on a cluster: of every shard whose master answers)."""
        for shard in self.shards:
            if shard not in self._grouped:
                self._on(shard, partial(self._create_group, shard))

    def _create_group(self, shard: Shard) -> None:
        try:
            self.client.xgroup_create(shard.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped.add(shard)

    def _on(self, shard: Shard, action: Callable[[], T]) -> T | None:
        """`action` on one shard. On a single Redis its errors are everyone's (the caller waits for Redis); on a
        cluster a failure sets the shard aside for SHARD_REST seconds (None), so the other masters' shards go on."""
        if not self.cluster:
            return action()
        try:
            return action()
        except REDIS_ERRORS as exc:
            if shard not in self._resting:
                log.warning("shard %s: its Redis master fails (%s); the others go on", shard.prefix, first_line(exc))
            self._resting[shard] = time.monotonic() + SHARD_REST
            return None

    def _usable(self) -> list[Shard]:
        """The shards to read now: grouped, and not resting after a failure."""
        now = time.monotonic()
        for shard, until in list(self._resting.items()):
            if until <= now:
                self._resting.pop(shard, None)
        return [shard for shard in self.shards if shard in self._grouped and shard not in self._resting]

    def step(self, block_ms: int = 1000) -> int:
        """Process one batch: this consumer's own pending entries first, then stale ones of others, then new
        ones (waiting up to `block_ms`). Returns how many events the entries held."""
        # What a previous life of this consumer left pending first, then what `run()` reads ahead.
        entries = self._read("0", block_ms=None) or self._fetch(block_ms)
        if entries:
            self._process(entries)
        if time.monotonic() - self._last_trim > 1.0:
            self._maintain()
        return sum(len(fields) for _, _, fields in entries)

    def _read(self, start: str, block_ms: int | None) -> list[Entry]:
        """Entries of every stream from `start` (">": new ones, "0": this consumer's pending ones). A single Redis
        reads all streams in one blocking call; a cluster cannot (each stream is in another hash slot), so it
        reads them all at once without blocking and, when nothing came, waits a moment before the next look."""
        shards = self._usable()
        replies: list[tuple[Shard, Any]] = []
        if not self.cluster:
            answer: Any = self.client.xreadgroup(
                GROUP, self.consumer, {s.stream: start for s in shards}, count=self.per_stream, block=block_ms
            )
            replies = [(self.by_stream[as_bytes(name)], entries) for name, entries in answer or []]
        else:
            for shard in shards:
                read = partial(self.client.xreadgroup, GROUP, self.consumer, {shard.stream: start}, self.per_stream)
                answer = self._on(shard, read)
                if answer:
                    replies.append((shard, answer[0][1]))
            if not replies and block_ms:
                self.stop.wait(min(block_ms, CLUSTER_POLL_MS) / 1000)
        return [entry for shard, entries in replies for entry in self._present(shard, entries)]

    def _present(self, shard: Shard, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Entry]:
        """The entries that still have their events. One without (trimmed or deleted while pending) can never be
        stored: say so loudly and acknowledge it, so it does not come back forever."""
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            log.error("%d pending stream entries no longer exist (first %r); their events are lost", len(gone), gone[0])
            self.client.xack(shard.stream, GROUP, *gone)
        return [(shard, entry_id, fields) for entry_id, fields in entries if fields]

    def _claim(self) -> list[Entry]:
        self._last_claim = time.monotonic()
        idle_ms = int(self.settings.ingest_claim_idle * 1000)
        claimed: list[Entry] = []
        for shard in self._usable():
            answer: Any = self._on(shard, partial(
                self.client.xautoclaim, shard.stream, GROUP, self.consumer, min_idle_time=idle_ms,
                start_id=self._claim_cursor[shard], count=self.per_stream,
            ))  # fmt: skip
            if answer is None:
                continue
            cursor, entries = answer[0], answer[1]
            self._claim_cursor[shard] = as_bytes(cursor).decode()
            if len(answer) > 2 and answer[2]:  # pending ids whose entries were deleted (Redis dropped them)
                log.error(
                    "%d pending stream entries no longer exist (first %r); their events are lost", *_first(answer[2])
                )
            claimed += self._present(shard, entries)
            if len(entries) >= self.per_stream or self._claim_cursor[shard] != "0-0":
                # More may wait (a full batch, or the scan of the pending list is not through): claim again at
                # once rather than a timer's period later, so orphans come back at full speed.
                self._last_claim = 0.0
        if claimed:
            log.info("took over %d entries left pending by another consumer", len(claimed))
        return claimed

    def _process(self, entries: list[Entry]) -> None:
        self._write(self._decode(entries))

    @staticmethod
    def _decode(entries: list[Entry]) -> Batch:
        activities: list[ActivityRecord] = []
        geos: list[GeoRecord] = []
        # Where each record came from, for dead letters: (entry, its field), in the order _store() indexes them.
        activity_sources: list[tuple[Entry, bytes]] = []
        geo_sources: list[tuple[Entry, bytes]] = []
        dead: list[Dead] = []
        for entry in entries:
            for name, value in entry[2].items():
                kind, payload = value[:1], memoryview(value)[1:]
                try:
                    if kind == KIND_ACTIVITY:
                        activities.append(_activity.decode(payload))
                        activity_sources.append((entry, name))
                    elif kind == KIND_GEO:
                        geos.append(_geo.decode(payload))
                        geo_sources.append((entry, name))
                    else:
                        dead.append((entry, name, f"unknown kind {kind!r}"))
                except msgspec.DecodeError as exc:
                    dead.append((entry, name, f"undecodable: {exc}"))
        return Batch(entries, activities, geos, activity_sources + geo_sources, dead, activity_rows(activities))

    def _write(self, batch: Batch) -> None:
        """Store a batch, acknowledge its entries (with dead letters for what can never be stored)."""
        entries, activities, geos, sources, dead, rows = batch
        stored = self._store(activities, geos, rows)
        if stored is None:
            return  # stopping while the database is unreachable: leave everything pending
        refused, written = stored
        # Committed by now (each write_batch is its own transaction): count the rows, whatever Redis does next.
        EVENTS_INGESTED.labels("activity").inc(written.activity)
        EVENTS_INGESTED.labels("geo").inc(written.geo)
        dead = dead + [(*sources[i], reason) for i, reason in refused]
        self._acknowledge(entries, dead)
        if dead:
            log.error("moved %d records to the dead letters; first: %s", len(dead), dead[0][2])
        self.ingested += len(activities) + len(geos) - len(refused)

    def _acknowledge(self, entries: list[Entry], dead: list[Dead]) -> None:
        """Per shard, one transaction (one hash slot): its dead letters added and its entries acknowledged. On a
        cluster, a shard whose master fails keeps them for `_maintain` to acknowledge later (its rows are stored;
        a redelivery in between would be stored once)."""
        for shard in {entry[0] for entry in entries}:
            mine = [entry for entry in entries if entry[0] is shard]
            letters = [letter for letter in dead if letter[0][0] is shard]
            if self._on(shard, partial(self._acknowledge_shard, shard, mine, letters)) is None:
                self._unacked.setdefault(shard, []).append((mine, letters))

    def _acknowledge_shard(self, shard: Shard, entries: list[Entry], dead: list[Dead]) -> bool:
        pipe = self.client.pipeline(transaction=True)
        for (_, entry_id, fields), name, reason in dead:
            letter: dict[Any, Any] = {b"v": fields[name], b"error": reason.encode(), b"entry": entry_id, b"field": name}
            pipe.xadd(shard.dead_letters, letter)
        pipe.xack(shard.stream, GROUP, *[entry_id for _, entry_id, _ in entries])
        pipe.execute()
        return True

    def _store(
        self, activities: list[ActivityRecord], geos: list[GeoRecord], rows: list[tuple[object, ...]] | None = None
    ) -> tuple[list[tuple[int, str]], Written] | None:
        """Write the batch (`rows`: the activities' rows, when made already), retrying while the database is
        unreachable. Returns the (index, reason) of
        records the database refuses for good (index into activities + geos) and the rows inserted, or None
        when stopped."""
        delay = 0.5
        while True:
            try:
                with self.pool.connection() as conn:
                    try:
                        written = write_batch(
                            conn,
                            activities,
                            geos,
                            self.settings.geo_bypass_window,
                            self.settings.ingest_use_copy,
                            rows,
                        )
                        return [], written
                    except (psycopg.IntegrityError, psycopg.DataError):
                        return self._store_one_by_one(conn, activities, geos)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                if self.stop.is_set():
                    return None
                log.warning("cannot write to PostgreSQL (%s); retrying in %.1fs", first_line(exc), delay)
                self.stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _store_one_by_one(
        self, conn: psycopg.Connection[Any], activities: Sequence[ActivityRecord], geos: Sequence[GeoRecord]
    ) -> tuple[list[tuple[int, str]], Written]:
        refused = []
        activity = geo = 0
        records: list[ActivityRecord | GeoRecord] = [*activities, *geos]
        for index, record in enumerate(records):
            try:
                if isinstance(record, ActivityRecord):
                    activity += write_batch(
                        conn, [record], [], self.settings.geo_bypass_window, self.settings.ingest_use_copy
                    ).activity
                else:
                    geo += write_batch(
                        conn, [], [record], self.settings.geo_bypass_window, self.settings.ingest_use_copy
                    ).geo
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                refused.append((index, first_line(exc)))
        return refused, Written(activity, geo)

    def _maintain(self) -> None:
        """Once a second: groups not created yet, acknowledgements a failing master still owes, trimming."""
        self._last_trim = time.monotonic()
        self.ensure_group()
        for shard, owed in list(self._unacked.items()):
            while (
                owed and shard in self._usable() and self._on(shard, partial(self._acknowledge_shard, shard, *owed[0]))
            ):
                owed.pop(0)
            if not owed:
                del self._unacked[shard]
        for shard in self._usable():
            self._on(shard, partial(trim_acknowledged, self.client, shard))

    def _retry_redis(self, action: Callable[[], T]) -> T | None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                return action()
            except redis.ConnectionError as exc:
                log.warning("cannot reach Redis (%s); retrying in %.1fs", exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        return None


def _first(ids: list[Any]) -> tuple[int, Any]:
    return len(ids), ids[0]


def run(settings: Settings) -> None:
    """Run one worker until SIGTERM / SIGINT; the batch in hand is finished (or left pending) first."""
    assert settings.database_url is not None and settings.redis_url is not None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    delay = 0.5
    while True:  # a cluster client reads the slot map as it is made: wait for a node to answer
        try:
            client = sync_client(settings)
            break
        except REDIS_ERRORS as exc:
            if stop.wait(delay):
                return
            log.warning("cannot reach Redis (%s); retrying in %.1fs", first_line(exc), delay)
            delay = min(delay * 2, MAX_BACKOFF)
    pool = sync_pool(settings, settings.database_url)
    pool.open(wait=False)
    try:
        IngestWorker(settings, pool, client, settings.ingest_consumer or socket.gethostname(), stop).run()
    finally:
        pool.close()
        client.close()

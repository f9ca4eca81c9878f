"""Realtime figures pushed to subscribers (the live stream), and the cap on streams per principal.

One ticker per API process: while anyone in the process watches, it reads the realtime figures of every watched
community in one Redis round trip each second and hands each subscriber its community's figures when they
changed. A ticker rather than Redis pub/sub, because the figures also change with no event at all: members drop
out of "online" five minutes after their last activity, the activity score decays minute by minute, and a
notification would never fire for those. The ticker sees every change whichever API process or worker made it,
costs one round trip per second per process however many clients watch, and none while nobody does.

Open streams are counted in Redis per principal (a sorted set of stream ids scored by when their lease was last
renewed), so the cap holds across API processes; the ticker renews every lease of its process in one round trip
every RENEW seconds, and a stream whose process died stops counting after STREAM_LEASE seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from service.core.errors import REDIS_ERRORS, first_line
from service.live.client import AsyncRedis
from service.live.keys import Shards, streams_key
from service.live.realtime import Realtime, realtime_per_shard

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between two reads of the watched communities: pushes come at most this often
STREAM_LEASE = 60  # seconds an open stream counts without a renewal (its process may have died)
RENEW = STREAM_LEASE / 3  # seconds between two renewals of a process's leases

# Drop the leases that lapsed, then take one if fewer than the limit are held; 1 when taken.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class LiveHub:
    """One process's subscriptions: community -> the queues of its subscribers, fed by one ticker task."""

    def __init__(self, client: AsyncRedis, shards: Shards, tick: float = TICK) -> None:
        self.client, self.shards, self.tick = client, shards, tick
        self._watchers: dict[int, set[asyncio.Queue[Realtime | None]]] = {}
        self._last: dict[int, Realtime] = {}
        self._slots: set[StreamSlot] = set()
        self._renewed = time.monotonic()
        self._failing = False  # the last tick could not read some figures
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def watch(self, community_id: int, slot: StreamSlot) -> AsyncIterator[asyncio.Queue[Realtime | None]]:
        """A queue that receives the community's figures whenever they change (None: the hub closed); the
        stream's `slot` is renewed while it watches."""
        queue: asyncio.Queue[Realtime | None] = asyncio.Queue(maxsize=1)
        if self._closed:
            queue.put_nowait(None)
        else:
            self._watchers.setdefault(community_id, set()).add(queue)
            self._slots.add(slot)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="live ticker")
        try:
            yield queue
        finally:
            self._slots.discard(slot)
            watchers = self._watchers.get(community_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[community_id]
                    self._last.pop(community_id, None)

    async def _run(self) -> None:
        while self._watchers and not self._closed:
            started = time.monotonic()
            try:
                await self._push(list(self._watchers))
                self._failing = False
            except REDIS_ERRORS as exc:  # subscribers keep the last figures; the next tick retries
                if not self._failing:  # said once per outage, not every tick
                    log.warning("live stream: cannot read some realtime figures (%s)", first_line(exc))
                self._failing = True
            if started - self._renewed >= RENEW:
                try:
                    await renew(self.client, list(self._slots))
                    self._renewed = started
                except REDIS_ERRORS as exc:  # retried at the next tick; a lease outlives two missed renewals
                    log.warning("live stream: cannot renew the stream leases (%s)", first_line(exc))
            await asyncio.sleep(max(0.0, self.tick - (time.monotonic() - started)))

    async def _push(self, communities: list[int]) -> None:
        """Hand the figures that changed to their subscribers; the communities of a shard that failed keep their
        last figures (on a cluster, a master down stalls its shards' communities only)."""
        failed: BaseException | None = None
        answers = await realtime_per_shard(self.client, self.shards, communities)
        if self._closed:  # ended while the figures were read: the subscribers' None must stay the last word
            return
        for figures in answers.values():
            if isinstance(figures, BaseException):
                failed = figures
                continue
            community = figures.community_id
            if self._last.get(community) == figures:
                continue
            self._last[community] = figures
            for queue in list(self._watchers.get(community, ())):
                _replace(queue, figures)
        if failed is not None:
            raise failed  # logged by the ticker, retried at the next tick

    def end(self) -> None:
        """End every subscription (each gets None, so its stream finishes its answer); the ticker stops."""
        self._closed = True
        for watchers in self._watchers.values():
            for queue in watchers:
                _replace(queue, None)

    async def close(self) -> None:
        """`end`, then wait for the ticker to stop."""
        self.end()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _replace(queue: asyncio.Queue[Realtime | None], item: Realtime | None) -> None:
    """Put `item` in a queue of one, dropping what the subscriber has not taken yet (older figures)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(item)


class StreamSlot:
    """One open stream counted against its principal's limit, across API processes."""

    def __init__(self, client: AsyncRedis, who: str) -> None:
        self.client, self.key, self.id = client, streams_key(who), uuid.uuid4().hex

    async def claim(self, limit: int) -> bool:
        """Take a slot; False when the principal holds `limit` open streams already."""
        taken = await self.client.eval(_CLAIM, 1, self.key, time.time(), STREAM_LEASE, limit, self.id)
        return bool(taken)

    async def release(self) -> None:
        await self.client.zrem(self.key, self.id)


async def renew(client: AsyncRedis, slots: list[StreamSlot]) -> None:
    """Renew the leases of these streams, all in one round trip."""
    if not slots:
        return
    now = time.time()
    by_key: dict[str, dict[str, float]] = {}
    for slot in slots:
        by_key.setdefault(slot.key, {})[slot.id] = now
    async with client.pipeline(transaction=False) as pipe:
        for key, members in by_key.items():
            pipe.zadd(key, members)
            pipe.expire(key, STREAM_LEASE)
        await pipe.execute()

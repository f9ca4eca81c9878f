"""Rate limits shared by every API process through Redis, in fixed one-minute windows.

Tracking (RATE_LIMIT_TRACK per principal) must not cost a Redis round trip per request, so each process decides
locally and reconciles in the background (`RateLimiter`): it counts the requests it admits per (bucket, principal,
minute), and every FLUSH_SECONDS a task adds those counts to the shared Redis counters in one pipeline (INCRBY +
EXPIRE per counter), reading back each counter's total over all processes. A request is refused when the shared
total last read plus what this process admitted since reaches the limit.

The price is a bounded overshoot. A process learns what the others admitted only when it flushes, so a principal
can exceed its limit by what the processes admit on stale totals: about FLUSH_SECONDS x processes x the
principal's request rate per process (0.1 s x 2 processes x 1,000 requests/s: about 200 requests); and since a
process counts its own admissions exactly, no process admits more than the limit in one window (at most
processes x limit overall). When Redis is down, each process keeps counting and deciding on its own (it logs
once) and adds its counts to Redis when Redis is back: the limiter never turns a request into an error.

Sign-in (RATE_LIMIT_AUTH per client address) is rare and guards against password-style guessing, so `hit` counts
each attempt straight in Redis (one INCR + EXPIRE round trip): that small limit is exact across processes.

A fixed window lets a client send up to twice the limit across a window edge; that is the accepted price of plain
counters (a sliding log would need a sorted set per client).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from service.core.errors import REDIS_ERRORS, TooManyRequests, Unavailable, first_line
from service.live.client import AsyncRedis
from service.live.keys import rate_key

log = logging.getLogger(__name__)
WINDOW = 60
FLUSH_SECONDS = 0.1

Counter = tuple[str, str, int]  # (bucket, who, window): one principal's requests of one kind in one minute


def _refusal(bucket: str, limit: int, now: float) -> TooManyRequests:
    retry_after = max(1, math.ceil(WINDOW - now % WINDOW))  # until the window ends
    return TooManyRequests(f"rate limit of {limit} {bucket} requests per minute reached", retry_after, limit)


class RateLimiter:
    """One process's side of the shared limits: decides from its own counts and the shared totals last read;
    `flush` (every FLUSH_SECONDS, run by the application's lifespan) adds its counts to Redis and reads the
    totals back."""

    def __init__(self, client: AsyncRedis) -> None:
        self.client = client
        self._pending: dict[Counter, int] = {}  # admitted here, not sent yet
        self._sending: dict[Counter, int] = {}  # in the flush under way
        self._totals: dict[Counter, int] = {}  # every process's count, as the last flush read it
        self._lock = asyncio.Lock()
        self._failing = False  # the last flush failed (logged once until one succeeds)

    def admit(self, bucket: str, who: str, limit: int, now: float | None = None) -> None:
        """Count one request of `who` in `bucket`, or TooManyRequests when `limit` is reached this minute."""
        now = time.time() if now is None else now
        counter = (bucket, who, int(now // WINDOW))
        pending = self._pending.get(counter, 0)
        if self._totals.get(counter, 0) + self._sending.get(counter, 0) + pending >= limit:
            raise _refusal(bucket, limit, now)
        self._pending[counter] = pending + 1

    def unflushed(self) -> int:
        """Requests admitted by this process that Redis has not counted yet."""
        return sum(self._pending.values()) + sum(self._sending.values())

    async def flush(self) -> None:
        """Add this process's counts to the shared counters in one round trip and read their totals back;
        on failure the counts are kept for the next flush (never raises)."""
        async with self._lock:  # one flush at a time: a test's explicit flush waits for the loop's
            current = int(time.time() // WINDOW)
            # Counts and totals of past windows decide nothing any more (a minute of slack for clock skew).
            self._totals = {c: n for c, n in self._totals.items() if c[2] >= current}
            if not self._pending:
                return
            self._sending = {c: n for c, n in self._pending.items() if c[2] >= current - 1}
            self._pending = {}
            try:
                replies = await self._send(self._sending)
            except Exception as exc:  # noqa: BLE001 - Redis down or failing: decide locally, retry at the next flush
                if not self._failing:
                    log.warning(
                        "rate-limit counts not flushed to Redis (%s): limits are enforced per process until it is back",
                        first_line(exc),
                    )
                    self._failing = True
                for counter, n in self._sending.items():
                    self._pending[counter] = self._pending.get(counter, 0) + n
            else:
                if self._failing:
                    log.warning("rate-limit counts flushed to Redis again: limits are shared across processes")
                    self._failing = False
                self._totals.update(zip(self._sending, replies, strict=True))
            finally:
                self._sending = {}

    async def _send(self, counts: dict[Counter, int]) -> list[int]:
        """INCRBY + EXPIRE per counter in one pipeline; the counters' new totals."""
        async with self.client.pipeline(transaction=False) as pipe:
            for (bucket, who, window), n in counts.items():
                key = rate_key(bucket, who, window)
                pipe.incrby(key, n)
                pipe.expire(key, 2 * WINDOW)
            replies: list[Any] = await pipe.execute()
        return [int(total) for total in replies[::2]]


async def hit(client: AsyncRedis, bucket: str, who: str, limit: int, now: float | None = None) -> int:
    """Count one request of `who` in `bucket` straight in Redis; TooManyRequests past `limit` this minute."""
    now = time.time() if now is None else now
    key = rate_key(bucket, who, int(now // WINDOW))
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW)
            count, _ = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise Unavailable(
            f"The live store (Redis) is unavailable ({type(exc).__name__}); the request was not processed, retry later",
            retry_after=5,
        ) from None
    if count > limit:
        raise _refusal(bucket, limit, now)
    return int(count)

"""The per-day counters: API requests (written by the request tracking) and events per kind."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import redis.asyncio as aioredis

from service.live.keys import DAY_TTL, counts_key, requests_key


async def add_requests(client: aioredis.Redis, counts: Mapping[date, tuple[int, float, Mapping[int, int]]]) -> None:
    """Add a process's request counts to the day hashes in one round trip: per day (requests, summed duration
    in ms, requests per user id)."""
    async with client.pipeline(transaction=False) as pipe:
        for day, (requests, duration_ms, per_user) in counts.items():
            key = requests_key(day)
            pipe.hincrby(key, "count", requests)
            pipe.hincrbyfloat(key, "duration_ms_sum", duration_ms)
            for user_id, n in per_user.items():
                pipe.hincrby(key, f"user:{user_id}", n)
            pipe.expire(key, DAY_TTL)
        await pipe.execute()


async def day_counts(client: aioredis.Redis, day: str, community_id: int | None = None) -> dict[str, int]:
    """The `<kind>_count` counters of one day (platform-wide, or of one community)."""
    raw = await client.hgetall(counts_key(day, community_id))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

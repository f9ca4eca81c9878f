"""The per-day counters: API requests (written by the request tracking) and events per kind."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from service.live.client import AsyncRedis
from service.live.keys import DAY_TTL, Shards, requests_key


async def add_requests(client: AsyncRedis, counts: Mapping[date, tuple[int, float, Mapping[int, int]]]) -> None:
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


async def day_counts(client: AsyncRedis, shards: Shards, day: str, community_id: int | None = None) -> dict[str, int]:
    """The `<kind>_count` counters of one day: of one community, or platform-wide (summed over the shards)."""
    if community_id is not None:
        replies = [await client.hgetall(shards.of(community_id).counts_key(day, community_id))]
    else:
        pipe = client.pipeline(transaction=False)
        for shard in shards.all:
            pipe.hgetall(shard.counts_key(day))
        replies = await pipe.execute()
    totals: dict[str, int] = {}
    for raw in replies:
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else k
            totals[name] = totals.get(name, 0) + int(v)
    return totals

"""The realtime figures read from the live keys: online members, peaks, the activity score."""

from __future__ import annotations

import time
from typing import NamedTuple
from uuid import uuid4

import msgspec
import redis
import redis.asyncio as aioredis

from service.live.keys import (
    ACTIVITY_WINDOW,
    PRESENCE_WINDOW,
    SCORE_HISTORY_DAYS,
    counts_key,
    minute_key,
    peak_key,
    presence_key,
    utc_day,
)


class Realtime(msgspec.Struct):
    """A community right now, from Redis alone (`GET /api/community-analytics/{id}/realtime/`)."""

    community_id: int
    online_members: int
    activity_score: float
    peak_members_today: int
    current_activity: str  # "low", "medium" or "high"
    recent_events: int  # events in the last 15 minutes
    baseline_events: float  # average events per 15 minutes over the previous 7 days


def activity_level(recent: int, baseline: float) -> tuple[float, str]:
    """The activity score and its label.

    ratio = recent / max(baseline, 1), where `recent` counts the community's events in the last 15 minutes and
    `baseline` is its average 15-minute volume over the 7 days before today (a quiet community's baseline counts
    as one event). score = min(10, 5 x ratio), rounded to one decimal: 5 is a usual quarter hour, 10 twice the
    usual or more, 0 silence. current_activity: "high" from 1.5 x the usual, "medium" from 0.5 x, else "low".
    """
    ratio = recent / max(baseline, 1.0)
    score = min(10.0, round(5.0 * ratio, 1))
    label = "high" if ratio >= 1.5 else "medium" if ratio >= 0.5 else "low"
    return score, label


async def realtime(client: aioredis.Redis, community_id: int, now: float | None = None) -> Realtime:
    """Online members, today's peak and the activity score of a community, in one round trip."""
    [answer] = await realtime_many(client, [community_id], now)
    return answer


async def realtime_many(client: aioredis.Redis, community_ids: list[int], now: float | None = None) -> list[Realtime]:
    """`realtime` of several communities, all in one round trip."""
    now = time.time() if now is None else now
    minute = int(now // 60)
    days = [utc_day(now - 86400 * back) for back in range(1, SCORE_HISTORY_DAYS + 1)]
    pipe = client.pipeline(transaction=False)
    for community_id in community_ids:
        pipe.zcount(presence_key(community_id), now - PRESENCE_WINDOW, "+inf")
        pipe.hget(peak_key(utc_day(now)), str(community_id))
        pipe.mget([minute_key(community_id, m) for m in range(minute - ACTIVITY_WINDOW // 60 + 1, minute + 1)])
        for day in days:
            pipe.hget(counts_key(day, community_id), "events")
    replies = await pipe.execute()
    per_community = 3 + len(days)
    answers = []
    for i in range(len(community_ids)):
        online, peak, minutes, *history = replies[i * per_community : (i + 1) * per_community]
        recent = sum(int(v) for v in minutes if v is not None)
        baseline = sum(int(v) for v in history if v is not None) / (SCORE_HISTORY_DAYS * 86400 / ACTIVITY_WINDOW)
        score, label = activity_level(recent, baseline)
        answers.append(
            Realtime(
                community_id=community_ids[i],
                online_members=int(online),
                activity_score=score,
                peak_members_today=int(peak or 0),
                current_activity=label,
                recent_events=recent,
                baseline_events=round(baseline, 2),
            )
        )
    return answers


def live_communities(client: redis.Redis, now: float) -> dict[int, int]:
    """Online members of every community with a presence key (members seen in the last 5 minutes)."""
    keys = list(client.scan_iter(match=presence_key(0).removesuffix("0") + "*", count=500))
    if not keys:
        return {}
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zcount(key, now - PRESENCE_WINDOW, "+inf")
    counts = pipe.execute()
    prefix_length = len(presence_key(0)) - 1
    return {int(key[prefix_length:]): int(n) for key, n in zip(keys, counts, strict=True)}


class Online(NamedTuple):
    """Members online now (active in the last 5 minutes)."""

    total: int  # distinct members over all communities
    busiest: list[tuple[int, int]]  # (community, members online) of the busiest communities, most first


async def online_members(client: aioredis.Redis, top: int, now: float | None = None) -> Online:
    """Distinct members online over all communities, and the `top` communities with most members online."""
    now = time.time() if now is None else now
    prefix = presence_key(0).removesuffix("0")
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
    if not keys:
        return Online(0, [])
    # One MULTI: the per-community counts, and the union of all presence sets (a member's latest activity
    # anywhere) counted over the same window, in a scratch key removed in the same transaction.
    scratch = f"analytics:scratch:online:{uuid4().hex}"
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.zcount(key, now - PRESENCE_WINDOW, "+inf")
    pipe.zunionstore(scratch, keys, aggregate="MAX")
    pipe.zcount(scratch, now - PRESENCE_WINDOW, "+inf")
    pipe.delete(scratch)
    *counts, _, total, _ = await pipe.execute()
    per_community = [(int(key[len(prefix) :]), int(n)) for key, n in zip(keys, counts, strict=True) if int(n) > 0]
    per_community.sort(key=lambda item: (-item[1], item[0]))
    return Online(int(total), per_community[:top])

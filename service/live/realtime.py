"""The realtime figures read from the live keys: online members, peaks, the activity score."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

import msgspec

from service.live.client import AsyncRedis, SyncRedis
from service.live.keys import ACTIVITY_WINDOW, PRESENCE_WINDOW, SCORE_HISTORY_DAYS, Shard, Shards, utc_day


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


async def realtime(client: AsyncRedis, shards: Shards, community_id: int, now: float | None = None) -> Realtime:
    """Online members, today's peak and the activity score of a community, in one round trip."""
    [answer] = await realtime_many(client, shards, [community_id], now)
    return answer


async def realtime_many(
    client: AsyncRedis, shards: Shards, community_ids: list[int], now: float | None = None
) -> list[Realtime]:
    """`realtime` of several communities: one round trip per shard, the shards at once; raises when a shard's
    node fails."""
    answers = await realtime_per_shard(client, shards, community_ids, now)
    for answer in answers.values():
        if isinstance(answer, BaseException):
            raise answer
    return [answer for c in community_ids if isinstance(answer := answers[c], Realtime)]


async def realtime_per_shard(
    client: AsyncRedis, shards: Shards, community_ids: list[int], now: float | None = None
) -> dict[int, Realtime | BaseException]:
    """`realtime` of several communities, by community; the error of its shard's call for a community whose
    shard failed (on a cluster, a master down fails its shards' communities only)."""
    now = time.time() if now is None else now
    by_shard: dict[Shard, list[int]] = {}
    for community_id in community_ids:
        by_shard.setdefault(shards.of(community_id), []).append(community_id)
    groups = list(by_shard.items())
    if len(groups) == 1:  # a single Redis: one pipeline, no task
        try:
            replies: list[list[Realtime] | BaseException] = [await _shard_realtime(client, *groups[0], now)]
        except Exception as exc:  # noqa: BLE001 - handed to the caller with its communities
            replies = [exc]
    else:
        replies = await asyncio.gather(
            *(_shard_realtime(client, *group, now) for group in groups), return_exceptions=True
        )
    answers: dict[int, Realtime | BaseException] = {}
    for (_, ids), reply in zip(groups, replies, strict=True):
        if isinstance(reply, BaseException):
            answers.update(dict.fromkeys(ids, reply))
        else:
            answers.update(zip(ids, reply, strict=True))
    return answers


# KEYS[1]: today's peaks of one shard. ARGV: the presence window's start, the minutes of the activity window, the
# days of the score's history, then the communities. The script names each community's presence set, minute
# counters and day counts as Shard.presence_key / minute_key / counts_key do (from the prefix of KEYS[1], like the
# tracking script; the realtime tests read what LiveWriter wrote). Returns per community {members online, today's
# peak, events in the activity window, events over the history}: a hundred communities' thousand reads stay
# inside Redis, and four numbers each come back.
_REALTIME = """
local peaks = KEYS[1]
local P = string.match(peaks, '^(.*)peak:[^:]*$')
local since, minutes, days = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first_minute, first_day, first_community = 4, 4 + minutes, 4 + minutes + days
local out = {}
for i = first_community, #ARGV do
  local c = ARGV[i]
  local online = redis.call('ZCOUNT', P .. 'presence:' .. c, since, '+inf')
  local peak = tonumber(redis.call('HGET', peaks, c) or '0')
  local recent, history = 0, 0
  for m = first_minute, first_day - 1 do
    recent = recent + tonumber(redis.call('GET', P .. 'activity:' .. c .. ':' .. ARGV[m]) or '0')
  end
  for d = first_day, first_community - 1 do
    history = history + tonumber(redis.call('HGET', P .. 'counts:' .. ARGV[d] .. ':' .. c, 'events') or '0')
  end
  out[#out + 1] = {online, peak, recent, history}
end
return out
"""


async def _shard_realtime(client: AsyncRedis, shard: Shard, community_ids: list[int], now: float) -> list[Realtime]:
    """`realtime` of communities of one shard, in one script call."""
    minute = int(now // 60)
    minutes = range(minute - ACTIVITY_WINDOW // 60 + 1, minute + 1)
    days = [utc_day(now - 86400 * back) for back in range(1, SCORE_HISTORY_DAYS + 1)]
    replies = await client.eval(
        _REALTIME, 1, shard.peak_key(utc_day(now)), now - PRESENCE_WINDOW, len(minutes), len(days), *minutes, *days,
        *community_ids,
    )  # fmt: skip
    answers = []
    for community_id, (online, peak, recent, history) in zip(community_ids, replies, strict=True):
        baseline = int(history) / (SCORE_HISTORY_DAYS * 86400 / ACTIVITY_WINDOW)
        score, label = activity_level(int(recent), baseline)
        answers.append(
            Realtime(
                community_id=community_id,
                online_members=int(online),
                activity_score=score,
                peak_members_today=int(peak),
                current_activity=label,
                recent_events=int(recent),
                baseline_events=round(baseline, 2),
            )
        )
    return answers


def live_communities(client: SyncRedis, shards: Shards, now: float) -> dict[int, int]:
    """Online members of every community with members seen in the last 5 minutes."""
    communities = _live_in_shards(client, shards, now)
    pipe = client.pipeline(transaction=False)
    for shard, community in communities:
        pipe.zcount(shard.presence_key(community), now - PRESENCE_WINDOW, "+inf")
    counts = pipe.execute() if communities else []
    return {community: int(n) for (_, community), n in zip(communities, counts, strict=True)}


def day_peaks(client: SyncRedis, shards: Shards, day: str) -> dict[int, int]:
    """community -> the highest online count seen on `day`, from every shard."""
    pipe = client.pipeline(transaction=False)
    for shard in shards.all:
        pipe.hgetall(shard.peak_key(day))
    peaks: dict[int, int] = {}
    for raw in pipe.execute():  # a community is in one shard; the max covers a change of INGEST_SHARDS that day
        for k, v in raw.items():
            peaks[int(k)] = max(peaks.get(int(k), 0), int(v))
    return peaks


def _live_in_shards(client: SyncRedis, shards: Shards, now: float) -> list[tuple[Shard, int]]:
    """(shard, community) of the communities each shard's index lists as active in the presence window."""
    pipe = client.pipeline(transaction=False)
    for shard in shards.all:
        pipe.zrangebyscore(shard.online, now - PRESENCE_WINDOW, "+inf")
    replies = pipe.execute()
    return [(shard, int(c)) for shard, members in zip(shards.all, replies, strict=True) for c in members]


class Online(NamedTuple):
    """Members online now (active in the last 5 minutes)."""

    total: int  # distinct members over all communities
    busiest: list[tuple[int, int]]  # (community, members online) of the busiest communities, most first


async def online_members(client: AsyncRedis, shards: Shards, top: int, now: float | None = None) -> Online:
    """Distinct members online over all communities, and the `top` communities with most members online."""
    now = time.time() if now is None else now
    since = now - PRESENCE_WINDOW
    pipe = client.pipeline(transaction=False)
    for shard in shards.all:
        pipe.zrangebyscore(shard.online, since, "+inf")
    indexes = await pipe.execute()
    per_shard = [(shard, [int(c) for c in members]) for shard, members in zip(shards.all, indexes, strict=True)]
    per_shard = [(shard, communities) for shard, communities in per_shard if communities]
    # Per shard, one script call (one hash slot), the shards at once: the per-community counts, and the members
    # online in any of the shard's communities, counted once. One shard counts them; several hand over their
    # members, counted once over all.
    one = len(per_shard) == 1
    answers = await asyncio.gather(
        *(_shard_online(client, shard, communities, since, one) for shard, communities in per_shard)
    )
    counts = [item for shard_counts, _ in answers for item in shard_counts]
    counts.sort(key=lambda item: (-item[1], item[0]))
    if one:
        return Online(int(answers[0][1]), counts[:top])
    members: set[bytes] = set()
    for _, union in answers:
        members.update(union)
    return Online(len(members), counts[:top])


# KEYS: presence sets of one shard. ARGV: the window's start, '1' to count the distinct members, '0' to list them.
# Returns {the members online per set, the distinct members online (a count or the list)}.
_ONLINE = """
local since, seen, distinct, counts = ARGV[1], {}, {}, {}
for i, key in ipairs(KEYS) do
  local members = redis.call('ZRANGEBYSCORE', key, since, '+inf')
  counts[i] = #members
  for _, member in ipairs(members) do
    if not seen[member] then
      seen[member] = true
      distinct[#distinct + 1] = member
    end
  end
end
if ARGV[2] == '1' then return {counts, #distinct} end
return {counts, distinct}
"""


async def _shard_online(
    client: AsyncRedis, shard: Shard, communities: list[int], since: float, count_only: bool
) -> tuple[list[tuple[int, int]], Any]:
    """((community, members online) of the shard's live communities, the count or the list of the distinct
    members online in them)."""
    keys = [shard.presence_key(c) for c in communities]
    counts, union = await client.eval(_ONLINE, len(keys), *keys, since, "1" if count_only else "0")
    return [(c, int(n)) for c, n in zip(communities, counts, strict=True) if int(n) > 0], union

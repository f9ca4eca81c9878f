"""Live state in Redis: presence, peaks, activity counters and the ingest stream.

This is the only module that knows the key formats. Every key but the stream expires on its own:

    analytics:presence:{community}            ZSET  user -> last seen (unix s); members of the last 5 minutes
    analytics:peak:{YYYY-MM-DD}               HASH  community -> highest online count seen that day (UTC)
    analytics:activity:{community}:{minute}   STR   events in that minute (unix s // 60), for the activity score
    analytics:counts:{YYYY-MM-DD}             HASH  `<kind>_count` -> events that day, platform-wide
    analytics:counts:{YYYY-MM-DD}:{community} HASH  `<kind>_count` and `events` -> that day, one community
    analytics:seen:{event id}                 STR   a client-chosen event id accepted in the last day
    analytics:requests:{YYYY-MM-DD}           HASH  API requests that day: `count`, `duration_ms_sum`, and
                                                     `user:{id}` -> requests of that user
    analytics:session:{sha256 of session id}  STR   a browser session (msgspec JSON), sliding expiry SESSION_TTL
    analytics:ratelimit:{bucket}:{who}:{min}  STR   requests of one principal in one minute (rate limits)
    analytics:events                          STREAM accepted events, one entry per flush (field i: kind byte +
                                                     msgpack record), read by the `ingest` consumer group
    analytics:scratch:online:{random}         ZSET  union of the presence sets while /metrics counts distinct members
                                                     online (created and deleted in one transaction)

Requests arriving together share one EVALSHA of `_TRACK` (`LiveWriter`), which updates the live keys and
appends their events to the stream as one entry, atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import msgspec
import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from service.ingest.schemas import ActivityRecord, GeoRecord
from service.observability.metrics import EVENTS_REPEATED
from service.tasks.schedule import TaskContext

log = logging.getLogger(__name__)

STREAM = "analytics:events"
GROUP = "ingest"
DEAD_LETTERS = "analytics:events:dead"
KIND_ACTIVITY = b"a"  # first byte of a stream entry field: what the msgpack record after it is
KIND_GEO = b"g"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PRESENCE_WINDOW = 300  # seconds: "online" means any activity in the last 5 minutes
ACTIVITY_WINDOW = 900  # seconds: the activity score compares the last 15 minutes ...
SCORE_HISTORY_DAYS = 7  # ... with the average 15 minutes of the previous 7 days
DAY_TTL = 9 * 86400  # daily keys outlive the 7-day history and a late snapshot

# One call per flush: every event of the flush updates the live keys, the events not seen before go into stream
# entries of up to 1,000 events (field i: kind byte + msgpack record), and expirations and peaks are settled
# once per key. A request's events are thus applied all at once or not at all.
# The script builds its key names, so it needs a single Redis (Redis Cluster would need one-slot keys).
_TRACK = """
-- ARGV: now, today, day ttl, backlog limit, then 8 values per event:
--   event time, its day, community or '', user or '', counter field, client event id or '', live '1'/'0', payload
-- Returns {-1, 0, 0} (and changes nothing) when more entries than the limit wait in the stream, else {the stream
-- length, activity events dropped as repeats of a client event id, geo events dropped so}.
local now, today, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if redis.call('XLEN', 'analytics:events') > tonumber(ARGV[4]) then
  return {-1, 0, 0}
end
local expire, present, fields = {}, {}, {}
local repeated_activity, repeated_geo = 0, 0
for i = 5, #ARGV, 8 do
  local at, day, community, user = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local field, event_id, live, payload = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] == '1', ARGV[i + 7]
  if event_id == '' or redis.call('SET', 'analytics:seen:' .. event_id, '1', 'NX', 'EX', 86400) then
    local counts = 'analytics:counts:' .. day
    redis.call('HINCRBY', counts, field, 1)
    expire[counts] = ttl
    if community ~= '' then
      counts = counts .. ':' .. community
      redis.call('HINCRBY', counts, field, 1)
      if live then  -- activity only: the activity score's 7-day baseline
        redis.call('HINCRBY', counts, 'events', 1)
      end
      expire[counts] = ttl
      if live and user ~= '' and at > now - 300 then
        redis.call('ZADD', 'analytics:presence:' .. community, 'GT', at, user)
        present[community] = true
      end
      if live and at > now - 900 then
        local minute = 'analytics:activity:' .. community .. ':' .. math.floor(at / 60)
        redis.call('INCR', minute)
        expire[minute] = 1200
      end
    end
    fields[#fields + 1] = tostring(#fields / 2)
    fields[#fields + 1] = payload
  elseif live then
    repeated_activity = repeated_activity + 1
  else
    repeated_geo = repeated_geo + 1
  end
end
local peaks = 'analytics:peak:' .. today
for community in pairs(present) do
  local presence = 'analytics:presence:' .. community
  redis.call('ZREMRANGEBYSCORE', presence, '-inf', now - 300)
  redis.call('EXPIRE', presence, 600)
  local online = redis.call('ZCARD', presence)
  if online > tonumber(redis.call('HGET', peaks, community) or '0') then
    redis.call('HSET', peaks, community, online)
  end
  expire[peaks] = ttl
end
for key, seconds in pairs(expire) do
  redis.call('EXPIRE', key, seconds)
end
for first = 1, #fields, 2000 do  -- at most 1,000 events per entry (and per unpack)
  redis.call('XADD', 'analytics:events', '*', unpack(fields, first, math.min(first + 1999, #fields)))
end
return {redis.call('XLEN', 'analytics:events'), repeated_activity, repeated_geo}
"""

_encoder = msgspec.msgpack.Encoder()


class Backlogged(Exception):
    """The ingest stream holds more waiting entries than allowed."""


def presence_key(community_id: int) -> str:
    return f"analytics:presence:{community_id}"


def peak_key(day: str) -> str:
    return f"analytics:peak:{day}"


def minute_key(community_id: int, minute: int) -> str:
    return f"analytics:activity:{community_id}:{minute}"


def counts_key(day: str, community_id: int | None = None) -> str:
    return f"analytics:counts:{day}" if community_id is None else f"analytics:counts:{day}:{community_id}"


def requests_key(day: date) -> str:
    """The hash of one day's API requests, `count` and `duration_ms_sum` (written by the request tracking)."""
    return f"analytics:requests:{day.isoformat()}"


def session_key(session_id: str) -> str:
    """A session's key: the id hashed, so a copy of the Redis data holds no usable session ids."""
    return f"analytics:session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def rate_key(bucket: str, who: str, window: int) -> str:
    """The counter of one principal's requests of one kind in one fixed window (`window` = unix time // 60)."""
    return f"analytics:ratelimit:{bucket}:{who}:{window}"


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


@lru_cache(maxsize=64)
def _day_of(day_number: int) -> str:
    return (EPOCH + timedelta(days=day_number)).strftime("%Y-%m-%d")


def _day(ts: float) -> str:
    return _day_of(int(ts // 86400))


def encode(record: ActivityRecord | GeoRecord) -> bytes:
    """A record as stored in a stream entry field: its kind byte, then msgpack."""
    return (KIND_ACTIVITY if isinstance(record, ActivityRecord) else KIND_GEO) + _encoder.encode(record)


def track_args(record: ActivityRecord | GeoRecord, client_id: bool) -> list[str | bytes]:
    """The 8 per-event values of `_TRACK`; `client_id`: the client chose the event id (retries are dropped)."""
    at = record.time.timestamp()
    if isinstance(record, ActivityRecord):
        field, live = f"{record.activity_type}_count", "1"
    else:
        field, live = f"geo_{record.access_result}_count", "0"
    return [
        repr(at), _day(at), "" if record.community_id is None else str(record.community_id),
        "" if record.user_id is None else str(record.user_id), field, str(record.event_id) if client_id else "",
        live, encode(record),
    ]  # fmt: skip


@dataclass
class _Pending:
    events: int
    args: list[str | bytes]  # the script's per-event values of the request's records, encoded
    done: asyncio.Future[None]


class LiveWriter:
    """Writes accepted events to Redis, sharing one script call among the requests that arrive together.

    While one call is in flight, new requests queue up; the next call takes them all (up to `max_events`) and
    puts them in one stream entry. Under load this turns many small round trips into few large ones (group
    commit), without delaying a lone request.
    """

    def __init__(self, client: aioredis.Redis, max_backlog: int, max_events: int = 1000) -> None:
        self.client = client
        self.max_backlog = max_backlog
        self.max_events = max_events
        self.backlog = 0  # stream entries after the last call
        self._sha: str | None = None
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, records: Sequence[ActivityRecord | GeoRecord], client_ids: set[UUID] | None = None) -> None:
        """Apply and enqueue `records`; raises Backlogged or a RedisError.

        Records whose event id is in `client_ids` (chosen by the client, so a retry carries it again) are
        skipped when the same id was accepted in the last day: a retried request is stored once.
        """
        # Encoded here, in the caller's request: a record that cannot be encoded fails its own request before it
        # joins a shared call, never the requests it would have shared the call with.
        ids = client_ids or set()
        args = [value for record in records for value in track_args(record, record.event_id in ids)]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(len(records), args, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch: list[_Pending] = []
                taken = 0
                while self._queue and (not batch or taken + self._queue[0].events <= self.max_events):
                    item = self._queue.pop(0)
                    batch.append(item)
                    taken += item.events
                try:
                    await self._execute(batch)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc)
                else:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_result(None)
        finally:
            self._flusher = None

    async def _execute(self, batch: list[_Pending]) -> None:
        now = time.time()
        args: list[str | bytes] = [repr(now), _day(now), str(DAY_TTL), str(self.max_backlog)]
        for item in batch:
            args += item.args
        if self._sha is None:
            self._sha = await self.client.script_load(_TRACK)
        try:
            answer = await self.client.evalsha(self._sha, 0, *args)
        except NoScriptError:
            # Redis lost its script cache (restart, SCRIPT FLUSH): nothing ran; load it and go again.
            self._sha = await self.client.script_load(_TRACK)
            answer = await self.client.evalsha(self._sha, 0, *args)
        length, repeated_activity, repeated_geo = (int(n) for n in answer)
        if length < 0:
            raise Backlogged(f"more than {self.max_backlog} stream entries wait for ingest")
        self.backlog = length
        # A client event id seen in the last day: the first event stands, whatever this one holds (a retry, or a
        # client reusing ids); counted so that reuse shows.
        if repeated_activity:
            EVENTS_REPEATED.labels("activity").inc(repeated_activity)
        if repeated_geo:
            EVENTS_REPEATED.labels("geo").inc(repeated_geo)


async def day_counts(client: aioredis.Redis, day: str, community_id: int | None = None) -> dict[str, int]:
    """The `<kind>_count` counters of one day (platform-wide, or of one community)."""
    raw = await client.hgetall(counts_key(day, community_id))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


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
    days = [_day(now - 86400 * back) for back in range(1, SCORE_HISTORY_DAYS + 1)]
    pipe = client.pipeline(transaction=False)
    for community_id in community_ids:
        pipe.zcount(presence_key(community_id), now - PRESENCE_WINDOW, "+inf")
        pipe.hget(peak_key(_day(now)), str(community_id))
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


def stream_events(client: redis.Redis) -> int:
    """How many events the stream holds (every field of an entry is one event); reads it all, for checks."""
    total, start = 0, "-"
    while True:
        entries: Any = client.xrange(STREAM, min=start, count=1000)
        if not entries:
            return total
        total += sum(len(fields) for _, fields in entries)
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


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


def trim_acknowledged(client: redis.Redis) -> int:
    """Drop stream entries every consumer acknowledged, so that the stream's length is the backlog the API
    checks; returns how many were dropped."""
    # The delivered mark first, then the pending list: an entry delivered in between is then either below the
    # pending minimum or above the mark read before, never trimmed while unacknowledged.
    groups: Any = client.xinfo_groups(STREAM)
    delivered = next((g["last-delivered-id"] for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    if delivered is None:
        return 0
    summary: Any = client.xpending(STREAM, GROUP)
    floor = min(summary["min"], delivered, key=_entry_order) if summary["pending"] else delivered
    return int(client.xtrim(STREAM, minid=floor, approximate=True))


def _entry_order(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def stream_backlog(client: redis.Redis) -> tuple[int, int]:
    """(the backlog as /metrics counts it: entries not acknowledged yet, of which delivered and pending)."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(STREAM)
    pipe.xinfo_groups(STREAM)
    pipe.xpending(STREAM, GROUP)
    length, groups, pending = pipe.execute(raise_on_error=False)
    return _unacknowledged(int(length), groups, pending)


def _unacknowledged(length: int, groups: Any, pending: Any) -> tuple[int, int]:
    """(entries not acknowledged yet: not delivered to the group, or delivered and pending; the pending ones)
    from the replies of XLEN, XINFO GROUPS and XPENDING: the one definition of the backlog."""
    group = _group_info(groups) if length else None
    if group is None or isinstance(pending, Exception):  # no consumer group yet: nothing was ever delivered
        return length, 0
    # `lag` (entries not delivered yet) is unknown to Redis in rare cases (entries deleted past the group's
    # mark); the entries beyond the pending ones are then the bound (acknowledged ones are trimmed soon).
    lag = group.get("lag")
    undelivered = int(lag) if lag is not None else length - int(pending["pending"])
    return max(undelivered, 0) + int(pending["pending"]), int(pending["pending"])


class StreamState(NamedTuple):
    """The ingest stream as /metrics reports it."""

    backlog: int  # entries not acknowledged yet: not delivered to the group, or delivered and pending
    oldest_age: float  # seconds since the oldest of them was added (Redis's clock); 0 when there is none


async def stream_state(client: aioredis.Redis) -> StreamState:
    """The backlog and the age of its oldest entry, in two round trips at most."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.xlen(STREAM)
    pipe.xinfo_groups(STREAM)
    pipe.xpending(STREAM, GROUP)
    (seconds, micros), length, groups, pending = await pipe.execute(raise_on_error=False)
    now = seconds + micros / 1e6
    if not length:
        return StreamState(0, 0.0)
    backlog, in_flight = _unacknowledged(int(length), groups, pending)
    group = _group_info(groups)
    if group is None or isinstance(pending, Exception):  # no consumer group yet: nothing was ever delivered
        first: Any = await client.xrange(STREAM, count=1)
        return StreamState(backlog, _age(now, [first[0][0]] if first else []))
    oldest = [pending["min"]] if in_flight else []
    if backlog > in_flight:  # some not delivered yet: the first after the group's mark is the oldest of those
        after: Any = await client.xrange(STREAM, min=b"(" + _as_bytes(group["last-delivered-id"]), count=1)
        oldest += [after[0][0]] if after else []
    return StreamState(backlog, _age(now, oldest))


def _group_info(groups: Any) -> dict[str, Any] | None:
    if isinstance(groups, Exception):
        if "no such key" in str(groups).lower():
            return None
        raise groups
    return next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _age(now: float, entry_ids: list[bytes | str]) -> float:
    """Seconds between `now` and the oldest of these entry ids (their first part is Redis's clock, in ms)."""
    if not entry_ids:
        return 0.0
    oldest_ms = min(_entry_order(entry_id) for entry_id in entry_ids)[0]
    return max(0.0, now - oldest_ms / 1000)


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


# How long each kind of live key lives (the writer sets these; the cleanup restores a lost one).
_TTLS = {
    "analytics:presence:": 600,
    "analytics:peak:": DAY_TTL,
    "analytics:activity:": 1200,
    "analytics:counts:": DAY_TTL,
    "analytics:seen:": 86400,
    "analytics:requests:": DAY_TTL,
}
DEAD_LETTERS_KEPT = 10_000


def cleanup_redis_analytics(context: TaskContext) -> dict[str, Any]:
    """The periodic task: drop members gone from presence sets, give any live key without an expiry its
    expiry back, trim acknowledged stream entries and keep the newest dead letters only."""
    client, now = context.redis, context.now.timestamp()
    stale_members = repaired = 0
    for key in client.scan_iter(match="analytics:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        prefix = next((p for p in _TTLS if name.startswith(p)), None)
        if prefix is None:
            continue  # the stream, dead letters, task locks, huey's keys: not live state
        if prefix == "analytics:presence:":
            stale_members += int(client.zremrangebyscore(key, "-inf", now - PRESENCE_WINDOW))
        if client.ttl(key) == -1:
            client.expire(key, _TTLS[prefix])
            repaired += 1
    trimmed = trim_acknowledged(client) if client.exists(STREAM) else 0
    dead = (
        int(client.xtrim(DEAD_LETTERS, maxlen=DEAD_LETTERS_KEPT, approximate=False))
        if client.exists(DEAD_LETTERS)
        else 0
    )
    return {"stale_presence_members": stale_members, "expiries_restored": repaired, "stream_entries_trimmed": trimmed,
            "dead_letters_trimmed": dead}  # fmt: skip

"""Live state in Redis: presence, peaks, activity counters and the ingest stream.

This is the only module that knows the key formats. Every key but the stream expires on its own:

    analytics:presence:{community}            ZSET  user -> last seen (unix s); members of the last 5 minutes
    analytics:peak:{YYYY-MM-DD}               HASH  community -> highest online count seen that day (UTC)
    analytics:activity:{community}:{minute}   STR   events in that minute (unix s // 60), for the activity score
    analytics:counts:{YYYY-MM-DD}             HASH  `<kind>_count` -> events that day, platform-wide
    analytics:counts:{YYYY-MM-DD}:{community} HASH  `<kind>_count` and `events` -> that day, one community
    analytics:seen:{event id}                 STR   a client-chosen event id accepted in the last day
    analytics:events                          STREAM accepted events, read by the `ingest` consumer group

Each accepted event costs one EVALSHA of `_TRACK` (updates the live keys and appends to the stream
atomically). Requests arriving together share one pipeline round trip (`LiveWriter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from service.ingest.schemas import ActivityRecord, GeoRecord

log = logging.getLogger(__name__)

STREAM = "analytics:events"
GROUP = "ingest"
DEAD_LETTERS = "analytics:events:dead"
KIND_ACTIVITY = b"a"
KIND_GEO = b"g"

PRESENCE_WINDOW = 300  # seconds: "online" means any activity in the last 5 minutes
ACTIVITY_WINDOW = 900  # seconds: the activity score compares the last 15 minutes ...
SCORE_HISTORY_DAYS = 7  # ... with the average 15 minutes of the previous 7 days
DAY_TTL = 9 * 86400  # daily keys outlive the 7-day history and a late snapshot

_TRACK = """
-- KEYS: presence, peaks, minute counter, day counts, community day counts, stream, seen marker
-- ARGV: now, event time, user, community, count field, kind, payload, day ttl, live ('1': presence and minutes),
--       '1' when the client chose the event id (a retry within a day is then ignored)
if ARGV[10] == '1' and not redis.call('SET', KEYS[7], '1', 'NX', 'EX', 86400) then
  return false
end
local now, at = tonumber(ARGV[1]), tonumber(ARGV[2])
local user, community, live = ARGV[3], ARGV[4], ARGV[9] == '1'
local ttl = tonumber(ARGV[8])
if live and community ~= '' then
  if user ~= '' and at > now - 300 then
    redis.call('ZADD', KEYS[1], 'GT', at, user)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 300)
    redis.call('EXPIRE', KEYS[1], 600)
    local online = redis.call('ZCARD', KEYS[1])
    if online > tonumber(redis.call('HGET', KEYS[2], community) or '0') then
      redis.call('HSET', KEYS[2], community, online)
    end
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  if at > now - 900 then
    redis.call('INCR', KEYS[3])
    redis.call('EXPIRE', KEYS[3], 1200)
  end
end
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('EXPIRE', KEYS[4], ttl)
if community ~= '' then
  redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
  redis.call('HINCRBY', KEYS[5], 'events', 1)
  redis.call('EXPIRE', KEYS[5], ttl)
end
return redis.call('XADD', KEYS[6], '*', 'k', ARGV[6], 'v', ARGV[7])
"""

_encoder = msgspec.msgpack.Encoder()


class Backlogged(Exception):
    """The ingest stream holds more waiting events than allowed."""


def presence_key(community_id: int) -> str:
    return f"analytics:presence:{community_id}"


def peak_key(day: str) -> str:
    return f"analytics:peak:{day}"


def minute_key(community_id: int, minute: int) -> str:
    return f"analytics:activity:{community_id}:{minute}"


def counts_key(day: str, community_id: int | None = None) -> str:
    return f"analytics:counts:{day}" if community_id is None else f"analytics:counts:{day}:{community_id}"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def track_call(record: ActivityRecord | GeoRecord, now: float, client_id: bool) -> tuple[list[str], list[str | bytes]]:
    """KEYS and ARGV of `_TRACK` for one record; `client_id`: the client chose its event id."""
    at = record.time.timestamp()
    community = record.community_id
    if isinstance(record, ActivityRecord):
        kind, field, live = KIND_ACTIVITY, f"{record.activity_type}_count", "1"
    else:
        kind, field, live = KIND_GEO, f"geo_{record.access_result}_count", "0"
    day = _day(at)
    keys = [
        presence_key(community or 0),
        peak_key(_day(now)),
        minute_key(community or 0, int(at // 60)),
        counts_key(day),
        counts_key(day, community or 0),
        STREAM,
        f"analytics:seen:{record.event_id}",
    ]
    args: list[str | bytes] = [
        repr(now), repr(at), "" if record.user_id is None else str(record.user_id),
        "" if community is None else str(community), field, kind, _encoder.encode(record), str(DAY_TTL), live,
        "1" if client_id else "0",
    ]  # fmt: skip
    return keys, args


@dataclass
class _Pending:
    records: Sequence[ActivityRecord | GeoRecord]
    client_ids: set[UUID]
    done: asyncio.Future[None]


class LiveWriter:
    """Writes accepted events to Redis, sharing one pipeline among the requests that arrive together.

    While one pipeline is in flight, new requests queue up; the next pipeline takes them all. Under load this
    turns many small round trips into few large ones (group commit), without delaying a lone request.
    """

    def __init__(self, client: aioredis.Redis, max_backlog: int, max_pipeline: int = 2000) -> None:
        self.client = client
        self.max_backlog = max_backlog
        self.max_pipeline = max_pipeline
        self.backlog = 0  # stream length seen by the last pipeline
        self._sha: str | None = None
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, records: Sequence[ActivityRecord | GeoRecord], client_ids: set[UUID] | None = None) -> None:
        """Apply and enqueue `records`; raises Backlogged or a RedisError.

        Records whose event id is in `client_ids` (chosen by the client, so a retry carries it again) are
        skipped when the same id was accepted in the last day: a retried request is stored once.
        """
        if self.backlog > self.max_backlog:
            raise Backlogged(f"{self.backlog} events wait for ingest (limit {self.max_backlog})")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(records, client_ids or set(), done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch: list[_Pending] = []
                taken = 0
                while self._queue and (not batch or taken + len(self._queue[0].records) <= self.max_pipeline):
                    item = self._queue.pop(0)
                    batch.append(item)
                    taken += len(item.records)
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
        if self._sha is None:
            self._sha = await self.client.script_load(_TRACK)
        now = time.time()
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for item in batch:
                for record in item.records:
                    keys, args = track_call(record, now, record.event_id in item.client_ids)
                    pipe.evalsha(self._sha, len(keys), *keys, *args)
            pipe.xlen(STREAM)
            results = await pipe.execute(raise_on_error=False)
            errors = [r for r in results if isinstance(r, Exception)]
            if not errors:
                self.backlog = int(results[-1])
                return
            if attempt == 0 and all(isinstance(e, NoScriptError) for e in errors):
                # Redis lost its script cache (restart, SCRIPT FLUSH): nothing ran; load it and go again.
                self._sha = await self.client.script_load(_TRACK)
                continue
            raise errors[0]


async def ensure_group(client: aioredis.Redis) -> None:
    """Create the stream and its consumer group if missing (from the stream's start, so nothing is skipped)."""
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def day_counts(client: aioredis.Redis, day: str, community_id: int | None = None) -> dict[str, int]:
    """The `<kind>_count` counters of one day (platform-wide, or of one community)."""
    raw = await client.hgetall(counts_key(day, community_id))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


class Realtime(msgspec.Struct):
    """A community right now, from Redis alone."""

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
    now = time.time() if now is None else now
    minute = int(now // 60)
    days = [_day(now - 86400 * back) for back in range(1, SCORE_HISTORY_DAYS + 1)]
    pipe = client.pipeline(transaction=False)
    pipe.zcount(presence_key(community_id), now - PRESENCE_WINDOW, "+inf")
    pipe.hget(peak_key(_day(now)), str(community_id))
    pipe.mget([minute_key(community_id, m) for m in range(minute - ACTIVITY_WINDOW // 60 + 1, minute + 1)])
    for day in days:
        pipe.hget(counts_key(day, community_id), "events")
    online, peak, minutes, *history = await pipe.execute()
    recent = sum(int(v) for v in minutes if v is not None)
    baseline = sum(int(v) for v in history if v is not None) / (SCORE_HISTORY_DAYS * 86400 / ACTIVITY_WINDOW)
    score, label = activity_level(recent, baseline)
    return Realtime(
        online_members=int(online),
        activity_score=score,
        peak_members_today=int(peak or 0),
        current_activity=label,
        recent_events=recent,
        baseline_events=round(baseline, 2),
    )

"""Accepted events into Redis: the live keys and the ingest stream, one script call for the requests that
arrive together (`LiveWriter`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from service.live.keys import DAY_TTL, utc_day
from service.live.records import ActivityRecord, GeoRecord, encode
from service.observability.metrics import EVENTS_REPEATED

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


class Backlogged(Exception):
    """The ingest stream holds more waiting entries than allowed."""


def track_args(record: ActivityRecord | GeoRecord, client_id: bool) -> list[str | bytes]:
    """The 8 per-event values of `_TRACK`; `client_id`: the client chose the event id (retries are dropped)."""
    at = record.time.timestamp()
    if isinstance(record, ActivityRecord):
        field, live = f"{record.activity_type}_count", "1"
    else:
        field, live = f"geo_{record.access_result}_count", "0"
    return [
        repr(at), utc_day(at), "" if record.community_id is None else str(record.community_id),
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
        args: list[str | bytes] = [repr(now), utc_day(now), str(DAY_TTL), str(self.max_backlog)]
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

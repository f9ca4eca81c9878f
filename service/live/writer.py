"""Accepted events into Redis: the live keys and the ingest stream, one script call for the requests that
arrive together (`LiveWriter`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.exceptions import NoScriptError

from service.live.client import AsyncRedis
from service.live.keys import DAY_TTL, Shard, Shards, utc_day
from service.live.records import ActivityRecord, GeoRecord, encode
from service.observability.metrics import EVENTS_REPEATED

# One call per shard per flush: every event of the flush in that shard updates the shard's live keys, the events
# not seen before go into stream entries of up to 1,000 events (field i: kind byte + msgpack record), and
# expirations and peaks are settled once per key. A request's events in one shard are thus applied all at once or
# not at all. Every key the script touches starts with the prefix of the shard's stream (KEYS[1]): one hash slot.
_TRACK = """
-- KEYS[1]: the shard's stream. ARGV: now, today, day ttl, backlog limit, then 8 values per event:
--   event time, its day, community or '', user or '', counter field, client event id or '', live '1'/'0', payload
-- Returns {-1, 0, 0} (and changes nothing) when more entries than the limit wait in the stream, else {the stream
-- length, activity events dropped as repeats of a client event id, geo events dropped so}.
local stream = KEYS[1]
local P = string.sub(stream, 1, -7)  -- the shard's prefix: the stream's name without 'events'
local now, today, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if redis.call('XLEN', stream) > tonumber(ARGV[4]) then
  return {-1, 0, 0}
end
local expire, present, fields = {}, {}, {}
local repeated_activity, repeated_geo = 0, 0
for i = 5, #ARGV, 8 do
  local at, day, community, user = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local field, event_id, live, payload = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] == '1', ARGV[i + 7]
  if event_id == '' or redis.call('SET', P .. 'seen:' .. event_id, '1', 'NX', 'EX', 86400) then
    -- A key gets its expiry when it is made, which is when a field of it is new (HINCRBY and INCR answer 1): the
    -- daily keys are not touched again per event.
    local counts = P .. 'counts:' .. day
    if redis.call('HINCRBY', counts, field, 1) == 1 then
      expire[counts] = ttl
    end
    if community ~= '' then
      counts = counts .. ':' .. community
      if redis.call('HINCRBY', counts, field, 1) == 1 then
        expire[counts] = ttl
      end
      if live then  -- activity only: the activity score's 7-day baseline
        redis.call('HINCRBY', counts, 'events', 1)
      end
      if live and user ~= '' and at > now - 300 then
        redis.call('ZADD', P .. 'presence:' .. community, 'GT', at, user)
        present[community] = true
      end
      if live and at > now - 900 then
        local minute = P .. 'activity:' .. community .. ':' .. math.floor(at / 60)
        if redis.call('INCR', minute) == 1 then
          expire[minute] = 1200
        end
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
local peaks, online = P .. 'peak:' .. today, P .. 'online'
for community in pairs(present) do
  local presence = P .. 'presence:' .. community
  redis.call('ZREMRANGEBYSCORE', presence, '-inf', now - 300)
  redis.call('EXPIRE', presence, 600)
  redis.call('ZADD', online, 'GT', now, community)
  local count, peak = redis.call('ZCARD', presence), redis.call('HGET', peaks, community)
  if count > tonumber(peak or '0') then
    redis.call('HSET', peaks, community, count)
    if not peak then
      expire[peaks] = ttl
    end
  end
end
if next(present) ~= nil then
  redis.call('ZREMRANGEBYSCORE', online, '-inf', now - 600)
  expire[online] = 600
end
for key, seconds in pairs(expire) do
  redis.call('EXPIRE', key, seconds)
end
for first = 1, #fields, 2000 do  -- at most 1,000 events per entry (and per unpack)
  redis.call('XADD', stream, '*', unpack(fields, first, math.min(first + 1999, #fields)))
end
return {redis.call('XLEN', stream), repeated_activity, repeated_geo}
"""


_TRACK_SHA = hashlib.sha1(_TRACK.encode()).hexdigest()  # noqa: S324 - the name Redis gives the script


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
    args: dict[Shard, list[str | bytes]]  # per shard: the script's per-event values of the request's records
    done: asyncio.Future[None]


class LiveWriter:
    """Writes accepted events to Redis, sharing one script call per shard among the requests that arrive together.

    While one flush is in flight, new requests queue up; the next flush takes them all (up to `max_events`) and
    makes one call per shard they touch, the shards' calls at once, each putting its events in one stream entry.
    Under load this turns many small round trips into few large ones (group commit), without delaying a lone
    request. A request fails when a call holding any of its events fails (a shard's node down, or its stream
    backlogged); the other requests of the flush do not.
    """

    def __init__(self, client: AsyncRedis, shards: Shards, max_backlog: int, max_events: int = 1000) -> None:
        self.client = client
        self.shards = shards
        self.max_backlog = max_backlog
        self.max_events = max_events
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
        args: dict[Shard, list[str | bytes]] = {}
        for record in records:
            shard = self.shards.of_event(record.community_id, record.event_id)
            args.setdefault(shard, []).extend(track_args(record, record.event_id in ids))
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
                    failed = await self._execute(batch)
                except Exception as exc:  # noqa: BLE001 - whatever went wrong fails the batch's requests, never hangs them
                    failed = {shard: exc for item in batch for shard in item.args}
                for item in batch:
                    if item.done.done():
                        continue
                    error = next((failed[shard] for shard in item.args if shard in failed), None)
                    if error is None:
                        item.done.set_result(None)
                    else:
                        item.done.set_exception(error)
        finally:
            self._flusher = None

    async def _execute(self, batch: list[_Pending]) -> dict[Shard, BaseException]:
        """One script call per shard of the batch, all at once; the shards whose call failed, with the error."""
        now = time.time()
        header: list[str | bytes] = [repr(now), utc_day(now), str(DAY_TTL), str(self.max_backlog)]
        per_shard: dict[Shard, list[str | bytes]] = {}
        for item in batch:
            for shard, args in item.args.items():
                if shard not in per_shard:
                    per_shard[shard] = header.copy()
                per_shard[shard].extend(args)
        shards = list(per_shard)
        answers: list[Any]
        if len(shards) == 1:  # a single Redis, or a flush in one shard: no task per call
            try:
                answers = [await self._call(shards[0], per_shard[shards[0]])]
            except Exception as exc:  # noqa: BLE001 - handed to the requests of the shard
                answers = [exc]
        else:
            answers = await asyncio.gather(
                *(self._call(shard, per_shard[shard]) for shard in shards), return_exceptions=True
            )
        failed: dict[Shard, BaseException] = {}
        repeated_activity = repeated_geo = 0
        for shard, answer in zip(shards, answers, strict=True):
            if isinstance(answer, BaseException):
                failed[shard] = answer
                continue
            length, activity, geo = (int(n) for n in answer)
            if length < 0:
                failed[shard] = Backlogged(f"more than {self.max_backlog} stream entries wait for ingest")
            repeated_activity += activity
            repeated_geo += geo
        # A client event id seen in the last day: the first event stands, whatever this one holds (a retry, or a
        # client reusing ids); counted so that reuse shows.
        if repeated_activity:
            EVENTS_REPEATED.labels("activity").inc(repeated_activity)
        if repeated_geo:
            EVENTS_REPEATED.labels("geo").inc(repeated_geo)
        return failed

    async def _call(self, shard: Shard, args: list[str | bytes]) -> Any:
        try:
            return await self.client.evalsha(_TRACK_SHA, 1, shard.stream, *args)
        except NoScriptError:
            # This node lacks the script (a restart, SCRIPT FLUSH, a new master): EVAL runs it and caches it
            # there, on that node alone (SCRIPT LOAD on a cluster goes to every master, and fails while one is down).
            return await self.client.eval(_TRACK, 1, shard.stream, *args)

"""The ingest streams' state: their length, what the consumer group has not acknowledged, trimming (one stream
per shard; the figures of all of them are summed)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple, cast

from service.live.client import AsyncRedis, SyncRedis
from service.live.keys import GROUP, Shard, Shards


def stream_events(client: SyncRedis, shards: Shards) -> int:
    """How many events the streams hold (every field of an entry is one event); reads them all, for checks."""
    total = 0
    for shard in shards.all:
        start = "-"
        while entries := cast(
            list[tuple[bytes, dict[bytes, bytes]]], client.xrange(shard.stream, min=start, count=1000)
        ):
            total += sum(len(fields) for _, fields in entries)
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
    return total


def trim_acknowledged(client: SyncRedis, shard: Shard) -> int:
    """Drop entries of a shard's stream every consumer acknowledged, so that the stream's length is the backlog
    the API checks; returns how many were dropped."""
    # The delivered mark first, then the pending list: an entry delivered in between is then either below the
    # pending minimum or above the mark read before, never trimmed while unacknowledged.
    groups: Any = client.xinfo_groups(shard.stream)
    delivered = next((g["last-delivered-id"] for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    if delivered is None:
        return 0
    summary: Any = client.xpending(shard.stream, GROUP)
    floor = min(summary["min"], delivered, key=_entry_order) if summary["pending"] else delivered
    return int(client.xtrim(shard.stream, minid=floor, approximate=True))


def _entry_order(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def stream_backlog(client: SyncRedis, shards: Shards) -> tuple[int, int]:
    """(the backlog as /metrics counts it: entries not acknowledged yet, of which delivered and pending)."""
    pipe = client.pipeline(transaction=False)
    for shard in shards.all:
        pipe.xlen(shard.stream)
        pipe.xinfo_groups(shard.stream)
        pipe.xpending(shard.stream, GROUP)
    replies = pipe.execute(raise_on_error=False)
    backlog = pending = 0
    for k in range(len(shards.all)):
        length, groups, in_flight = replies[3 * k : 3 * k + 3]
        if isinstance(length, Exception):
            raise length
        shard_backlog, shard_pending = _unacknowledged(int(length), groups, in_flight)
        backlog, pending = backlog + shard_backlog, pending + shard_pending
    return backlog, pending


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


async def stream_state(client: AsyncRedis, shards: Shards) -> StreamState:
    """The backlog of all shards' streams and the age of their oldest waiting entry (by Redis's clock), the
    shards at once."""
    seconds, micros = await client.time()
    now = seconds + micros / 1e6
    states = await asyncio.gather(*(_shard_state(client, shard, now) for shard in shards.all))
    return StreamState(sum(s.backlog for s in states), max(s.oldest_age for s in states))


async def _shard_state(client: AsyncRedis, shard: Shard, now: float) -> StreamState:
    """The backlog of one shard's stream and the age of its oldest entry, in two round trips at most."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(shard.stream)
    pipe.xinfo_groups(shard.stream)
    pipe.xpending(shard.stream, GROUP)
    length, groups, pending = await pipe.execute(raise_on_error=False)
    if isinstance(length, Exception):
        raise length
    if not length:
        return StreamState(0, 0.0)
    backlog, in_flight = _unacknowledged(int(length), groups, pending)
    group = _group_info(groups)
    if group is None or isinstance(pending, Exception):  # no consumer group yet: nothing was ever delivered
        first: Any = await client.xrange(shard.stream, count=1)
        return StreamState(backlog, _age(now, [first[0][0]] if first else []))
    oldest = [pending["min"]] if in_flight else []
    if backlog > in_flight:  # some not delivered yet: the first after the group's mark is the oldest of those
        after: Any = await client.xrange(shard.stream, min=b"(" + as_bytes(group["last-delivered-id"]), count=1)
        oldest += [after[0][0]] if after else []
    return StreamState(backlog, _age(now, oldest))


def _group_info(groups: Any) -> dict[str, Any] | None:
    if isinstance(groups, Exception):
        if "no such key" in str(groups).lower():
            return None
        raise groups
    return next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)


def as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _age(now: float, entry_ids: list[bytes | str]) -> float:
    """Seconds between `now` and the oldest of these entry ids (their first part is Redis's clock, in ms)."""
    if not entry_ids:
        return 0.0
    oldest_ms = min(_entry_order(entry_id) for entry_id in entry_ids)[0]
    return max(0.0, now - oldest_ms / 1000)

"""The periodic task `cleanup_redis_analytics`: expired live keys and acknowledged stream entries."""

from __future__ import annotations

import re
from typing import Any

from service.core.task_context import TaskContext
from service.live.client import layout
from service.live.keys import DAY_TTL, PRESENCE_WINDOW
from service.live.stream import trim_acknowledged

# How long each kind of live key lives (the writer sets these; the cleanup restores a lost one), by the kind's
# name after the prefix `analytics:` or a shard's `analytics:{tag}:`.
_TTLS = {
    "presence": 600,
    "online": 600,
    "peak": DAY_TTL,
    "activity": 1200,
    "counts": DAY_TTL,
    "seen": 86400,
    "requests": DAY_TTL,
}
_KIND = re.compile(rb"^analytics:(?:\{[^}]*\}:)?([a-z]+)(?::|$)")
DEAD_LETTERS_KEPT = 10_000


def cleanup_redis_analytics(context: TaskContext) -> dict[str, Any]:
    """The periodic task: drop members gone from presence sets, give any live key without an expiry its
    expiry back, trim acknowledged stream entries and keep the newest dead letters only (every shard)."""
    now = context.now.timestamp()
    shards = layout(context.settings)
    client = context.redis
    stale_members = repaired = trimmed = dead = 0
    for key in client.scan_iter(match="analytics:*", count=1000):
        match = _KIND.match(key if isinstance(key, bytes) else str(key).encode())
        kind = match.group(1).decode() if match else None
        if kind not in _TTLS:
            continue  # the streams, dead letters, task locks, huey's keys: not live state
        if kind == "presence":
            stale_members += int(client.zremrangebyscore(key, "-inf", now - PRESENCE_WINDOW))
        if client.ttl(key) == -1:
            client.expire(key, _TTLS[kind])
            repaired += 1
    for shard in shards.all:
        trimmed += trim_acknowledged(client, shard) if client.exists(shard.stream) else 0
        if client.exists(shard.dead_letters):
            dead += int(client.xtrim(shard.dead_letters, maxlen=DEAD_LETTERS_KEPT, approximate=False))
    return {"stale_presence_members": stale_members, "expiries_restored": repaired, "stream_entries_trimmed": trimmed,
            "dead_letters_trimmed": dead}  # fmt: skip

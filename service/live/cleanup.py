"""The periodic task `cleanup_redis_analytics`: expired live keys and acknowledged stream entries."""

from __future__ import annotations

from typing import Any

from service.core.task_context import TaskContext
from service.live.keys import DAY_TTL, DEAD_LETTERS, PRESENCE_WINDOW, STREAM
from service.live.stream import trim_acknowledged

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

"""The periodic task `update_community_analytics`: presence in Redis persisted per community and day."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from service.live import PRESENCE_WINDOW, live_communities, peak_key
from service.scheduling import TaskContext, quarter_hour

# A community sampled earlier today that has no presence left is sampled as 0 online, so its daily average
# counts the quiet quarter hours too (from its first sample of the day on).
_ZERO_SAMPLES = """
INSERT INTO community_presence_samples (community_id, slot, online)
SELECT DISTINCT community_id, %(slot)s, 0 FROM community_presence_samples
WHERE slot >= %(start)s AND slot < %(slot)s AND NOT community_id = ANY(%(live)s)
ON CONFLICT (community_id, slot) DO UPDATE SET online = 0
"""

# A day's figures from its samples and its peak in Redis: the average of the quarter-hour samples and the highest
# count seen (the live peak catches the highs between two samples, and communities seen only between samples).
_UPSERT_DAY = """
WITH sampled AS (
    SELECT community_id, max(online) AS top, avg(online) AS mean, count(*) AS samples
    FROM community_presence_samples
    WHERE slot >= %(start)s AND slot < %(end)s
    GROUP BY community_id
), peaks AS (
    SELECT unnest(%(communities)s::bigint[]) AS community_id, unnest(%(peaks)s::int[]) AS peak
)
INSERT INTO community_presence_daily (community_id, day, peak_online, average_online, samples)
SELECT coalesce(s.community_id, p.community_id), %(day)s, greatest(coalesce(s.top, 0), coalesce(p.peak, 0)),
       coalesce(s.mean, 0), coalesce(s.samples, 0)
FROM sampled s FULL JOIN peaks p ON p.community_id = s.community_id
ON CONFLICT (community_id, day) DO UPDATE
SET peak_online = excluded.peak_online, average_online = excluded.average_online, samples = excluded.samples
"""


def update_community_analytics(context: TaskContext) -> dict[str, Any]:
    """Sample every community's online members into this quarter hour's slot (rerunning in the same slot
    overwrites it), then recompute today's average and peak per community."""
    now = context.now
    online = live_communities(context.redis, now.timestamp())
    slot = quarter_hour(now)
    today = datetime.combine(now.date(), time(), now.tzinfo)
    with context.conn.transaction():
        if online:
            context.conn.cursor().executemany(
                "INSERT INTO community_presence_samples (community_id, slot, online) VALUES (%s, %s, %s) "
                "ON CONFLICT (community_id, slot) DO UPDATE SET online = excluded.online",
                [(community, slot, count) for community, count in online.items()],
            )
        context.conn.execute(_ZERO_SAMPLES, {"slot": slot, "start": today, "live": list(online)})
        # Yesterday too: its last quarter hour's highs reached Redis after its last sample.
        for day_start in (today - timedelta(days=1), today):
            raw = context.redis.hgetall(peak_key(day_start.strftime("%Y-%m-%d")))
            peaks = {int(k): int(v) for k, v in raw.items()}
            context.conn.execute(
                _UPSERT_DAY,
                {
                    "day": day_start.date(),
                    "start": day_start,
                    "end": day_start + timedelta(days=1),
                    "communities": list(peaks),
                    "peaks": list(peaks.values()),
                },
            )
    return {"slot": slot.isoformat(), "communities_sampled": len(online), "online": sum(online.values()),
            "presence_window_seconds": PRESENCE_WINDOW}  # fmt: skip

"""The periodic task `update_community_analytics`: presence in Redis persisted per community and day."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from service.live import PRESENCE_WINDOW, live_communities, peak_key
from service.scheduling import TaskContext

SLOT = timedelta(minutes=15)

# A community sampled earlier today that has no presence left is sampled as 0 online, so its daily average
# counts the quiet quarter hours too (from its first sample of the day on).
_ZERO_SAMPLES = """
INSERT INTO community_presence_samples (community_id, slot, online)
SELECT DISTINCT community_id, %(slot)s, 0 FROM community_presence_samples
WHERE slot >= %(start)s AND slot < %(slot)s AND NOT community_id = ANY(%(live)s)
ON CONFLICT (community_id, slot) DO UPDATE SET online = 0
"""

# Today's figures from the samples of the day and the live peak: the average of the quarter-hour samples and
# the highest count seen (the live peak catches the highs between two samples).
_UPSERT_DAY = """
INSERT INTO community_presence_daily (community_id, day, peak_online, average_online, samples)
SELECT s.community_id, %(day)s, greatest(max(s.online), coalesce(p.peak, 0)), avg(s.online), count(*)
FROM community_presence_samples s
LEFT JOIN (SELECT unnest(%(communities)s::bigint[]) AS community_id, unnest(%(peaks)s::int[]) AS peak) p
  ON p.community_id = s.community_id
WHERE s.slot >= %(start)s AND s.slot < %(end)s
GROUP BY s.community_id, p.peak
ON CONFLICT (community_id, day) DO UPDATE
SET peak_online = excluded.peak_online, average_online = excluded.average_online, samples = excluded.samples
"""


def slot_of(now: datetime) -> datetime:
    """The quarter hour holding `now`."""
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)


def update_community_analytics(context: TaskContext) -> dict[str, Any]:
    """Sample every community's online members into this quarter hour's slot (rerunning in the same slot
    overwrites it), then recompute today's average and peak per community."""
    now = context.now
    online = live_communities(context.redis, now.timestamp())
    peaks_raw = context.redis.hgetall(peak_key(now.strftime("%Y-%m-%d")))
    peaks = {int(k): int(v) for k, v in peaks_raw.items()}
    slot = slot_of(now)
    day_start = datetime.combine(now.date(), time(), now.tzinfo)
    with context.conn.transaction():
        if online:
            context.conn.cursor().executemany(
                "INSERT INTO community_presence_samples (community_id, slot, online) VALUES (%s, %s, %s) "
                "ON CONFLICT (community_id, slot) DO UPDATE SET online = excluded.online",
                [(community, slot, count) for community, count in online.items()],
            )
        context.conn.execute(_ZERO_SAMPLES, {"slot": slot, "start": day_start, "live": list(online)})
        context.conn.execute(
            _UPSERT_DAY,
            {
                "day": now.date(),
                "start": day_start,
                "end": day_start + timedelta(days=1),
                "communities": list(peaks),
                "peaks": list(peaks.values()),
            },
        )
    return {"slot": slot.isoformat(), "communities_sampled": len(online), "online": sum(online.values()),
            "presence_window_seconds": PRESENCE_WINDOW}  # fmt: skip

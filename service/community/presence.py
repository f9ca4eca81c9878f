"""The periodic task `update_community_analytics`: presence in Redis persisted per community and day.

Quarter hours of yesterday and today that no run sampled (the worker was not running, or the activity arrived
back-dated: an import, `analytics demo`'s history) are sampled from the stored events instead, by the same
definition: the distinct members with an activity in the 5 minutes up to the slot. A community with events that
day gets a sample (0 when quiet) in each such slot, so its daily average counts the quiet hours too."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from service.core.task_context import TaskContext
from service.core.windows import quarter_hour
from service.live.client import layout
from service.live.keys import PRESENCE_WINDOW
from service.live.realtime import day_peaks, live_communities

# A community sampled earlier today that has no presence left is sampled as 0 online, so its daily average
# counts the quiet quarter hours too (from its first sample of the day on).
_ZERO_SAMPLES = """
INSERT INTO community_presence_samples (community_id, slot, online)
SELECT DISTINCT community_id, %(slot)s, 0 FROM community_presence_samples
WHERE slot >= %(start)s AND slot < %(slot)s AND NOT community_id = ANY(%(live)s)
ON CONFLICT (community_id, slot) DO UPDATE SET online = 0
"""

# Slots of [start, before) without any sample: the sampler did not see them.
_UNSAMPLED = """
SELECT slot FROM generate_series(%(start)s::timestamptz, %(before)s::timestamptz - interval '15 minutes',
                                 interval '15 minutes') AS slot
WHERE NOT EXISTS (SELECT 1 FROM community_presence_samples s WHERE s.slot = slot.slot)
"""

# Those slots sampled from activity_events: members with an event in the 5 minutes up to the slot, and 0 for the
# other communities active on the slot's day.
_FROM_EVENTS = """
WITH slots AS (
    SELECT unnest(%(slots)s::timestamptz[]) AS slot
), online AS (
    SELECT s.slot, e.community_id, count(DISTINCT e.user_id)::integer AS online
    FROM slots s
    JOIN activity_events e ON e.time > s.slot - make_interval(secs => %(window)s) AND e.time <= s.slot
    WHERE e.community_id IS NOT NULL AND e.user_id IS NOT NULL
    GROUP BY s.slot, e.community_id
), active AS (
    SELECT DISTINCT e.community_id, date_trunc('day', e.time, 'UTC') AS day
    FROM activity_events e
    WHERE e.time >= %(start)s AND e.time < %(before)s AND e.community_id IS NOT NULL
)
INSERT INTO community_presence_samples (community_id, slot, online)
SELECT a.community_id, s.slot, coalesce(o.online, 0)
FROM slots s
JOIN active a ON a.day = date_trunc('day', s.slot, 'UTC')
LEFT JOIN online o ON o.slot = s.slot AND o.community_id = a.community_id
ON CONFLICT (community_id, slot) DO NOTHING
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
    shards = layout(context.settings)
    online = live_communities(context.redis, shards, now.timestamp())
    slot = quarter_hour(now)
    today = datetime.combine(now.date(), time(), now.tzinfo)
    yesterday = today - timedelta(days=1)
    with context.conn.transaction():
        found = context.conn.execute(_UNSAMPLED, {"start": yesterday, "before": slot}).fetchall()
        unsampled = [row[0] for row in found]
        if unsampled:
            params = {"slots": unsampled, "start": yesterday, "before": slot, "window": PRESENCE_WINDOW}
            context.conn.execute(_FROM_EVENTS, params)
        if online:
            context.conn.cursor().executemany(
                "INSERT INTO community_presence_samples (community_id, slot, online) VALUES (%s, %s, %s) "
                "ON CONFLICT (community_id, slot) DO UPDATE SET online = excluded.online",
                [(community, slot, count) for community, count in online.items()],
            )
        context.conn.execute(_ZERO_SAMPLES, {"slot": slot, "start": today, "live": list(online)})
        # Yesterday too: its last quarter hour's highs reached Redis after its last sample.
        for day_start in (yesterday, today):
            peaks = day_peaks(context.redis, shards, day_start.strftime("%Y-%m-%d"))
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
            "slots_sampled_from_events": len(unsampled), "presence_window_seconds": PRESENCE_WINDOW}  # fmt: skip

"""The periodic task `process_geo_restriction_analytics`: late bypass detection and per-community summaries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core.task_context import TaskContext
from service.storage.rollups import record_invalidation

LOOKBACK = timedelta(days=1)

# The ingest worker flags a bypass when the allowed access arrives after the block. When the block arrives
# later (out-of-order delivery, a worker catching up), the allowed access is flagged here.
_FLAG_BYPASSES = """
UPDATE geo_access_events a SET restriction_bypass = true
WHERE a.time >= %(since)s AND a.access_result = 'allowed' AND NOT a.restriction_bypass
  AND a.user_id IS NOT NULL AND a.country_code IS NOT NULL
  AND EXISTS (SELECT 1 FROM geo_access_events b
              WHERE b.user_id = a.user_id AND b.community_id = a.community_id AND b.access_result = 'blocked'
                AND b.country_code <> a.country_code
                AND b.time BETWEEN a.time - make_interval(secs => %(window)s) AND a.time)
RETURNING a.time
"""

_SUMMARIES = """
SELECT community_id, sum(attempts)::bigint AS attempts,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint,
       sum(bypasses)::bigint
FROM geo_daily WHERE bucket = %(today)s
GROUP BY community_id ORDER BY attempts DESC, community_id LIMIT 50
"""


def process_geo_restrictions(context: TaskContext) -> dict[str, Any]:
    """Flag bypasses the ingest order hid (last day), then summarize today's geo decisions per community."""
    window = context.settings.geo_bypass_window
    since = context.now - LOOKBACK - timedelta(seconds=window)
    with context.conn.transaction():
        flagged = [row[0] for row in context.conn.execute(_FLAG_BYPASSES, {"since": since, "window": window})]
        record_invalidation(context.conn, "geo", flagged)  # the rollups' bypass counts change
    today = context.now.replace(hour=0, minute=0, second=0, microsecond=0)
    summaries = [
        {"community_id": c, "attempts": a, "blocked": b, "travelers": t, "bypasses": x}
        for c, a, b, t, x in context.conn.execute(_SUMMARIES, {"today": today})
    ]
    return {"bypasses_flagged": len(flagged), "communities": summaries}

"""Today's figures per community so far (`community_today`): what the communities overview lists.

The refresh job calls `refresh_today` after the rollups. Each run recomputes today's events, views and joins per
community up to its own time (`through`): the hourly rollup's hours before the current one, the raw rows of the
current hour. It adds the members active since the previous run, and in the hours where late events landed, to
today's member set, whose size per community is the visitors figure. The overview reads these rows and adds the
raw events after `through` (`service.community.queries`). An event dated before `through` but stored after the
run is counted by the next run, as in the rollups. At the first run of a day, yesterday's rows go.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from service.core.windows import midnight
from service.storage.buckets import HOUR, Range, floor, merge

_MEMBERS = """
INSERT INTO community_today_members (day, community_id, user_id)
SELECT DISTINCT %(day)s::date, community_id, user_id
FROM activity_events
WHERE time >= %(lo)s AND time < %(hi)s AND community_id IS NOT NULL AND user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""

_TOTALS = """
WITH events AS (
    SELECT community_id, activity_type, events FROM activity_hourly
    WHERE bucket >= %(start)s AND bucket < %(hour)s AND community_id IS NOT NULL
    UNION ALL
    SELECT community_id, activity_type, count(*) FROM activity_events
    WHERE time >= %(hour)s AND time < %(through)s AND community_id IS NOT NULL
    GROUP BY community_id, activity_type
), totals AS (
    SELECT community_id, sum(events) AS events,
           coalesce(sum(events) FILTER (WHERE activity_type = 'view'), 0) AS views,
           coalesce(sum(events) FILTER (WHERE activity_type = 'join'), 0) AS joins
    FROM events
    GROUP BY community_id
), visitors AS (
    SELECT community_id, count(*) AS visitors FROM community_today_members WHERE day = %(day)s GROUP BY community_id
)
INSERT INTO community_today (day, community_id, events, views, joins, visitors)
SELECT %(day)s, community_id, coalesce(t.events, 0), coalesce(t.views, 0), coalesce(t.joins, 0),
       coalesce(v.visitors, 0)
FROM totals t
FULL JOIN visitors v USING (community_id)  -- members whose events the hourly rollup does not hold yet count too
"""

_THROUGH = """
INSERT INTO community_today_through (day, through) VALUES (%(day)s, %(through)s)
ON CONFLICT (single) DO UPDATE SET day = excluded.day, through = excluded.through
"""


def refresh_today(conn: psycopg.Connection[Any], now: datetime, changed: Iterable[Range]) -> None:
    """Bring today's figures up to `now`; `changed`: the time ranges of activity stored since the last run (their
    members are added again, so that late events count). Runs inside the caller's transaction."""
    day = now.astimezone(UTC).date()
    start = midnight(day)
    row = conn.execute("SELECT day, through FROM community_today_through").fetchone()
    # The member set grows from the previous run's time on; a run dated before it (a `now` given) starts over.
    since = row[1] if row is not None and row[0] == day and row[1] <= now else start
    conn.execute("DELETE FROM community_today_members WHERE day <> %s OR %s", (day, since == start))
    ranges = [(since, now)] + [(max(lo, start), min(hi + timedelta(microseconds=1), now)) for lo, hi in changed]
    for lo, hi in merge(r for r in ranges if r[0] < r[1]):
        conn.execute(_MEMBERS, {"day": day, "lo": lo, "hi": hi})
    conn.execute("DELETE FROM community_today")
    conn.execute(_TOTALS, {"day": day, "start": start, "hour": max(start, floor(now, HOUR)), "through": now})
    conn.execute(_THROUGH, {"day": day, "through": now})

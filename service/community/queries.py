"""Community figures from the rollups (activity_daily/hourly, community_members_daily) and sessions_daily."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from service.core.windows import Window

# One round trip for the report. Unique visitors: distinct members with any event in the window. Retention:
# of the members active in the previous window of equal length, the share active again in this one.
# Sessions are counted in the window they start in; their mean length comes from the per-day sums (the windows
# are whole UTC days): the same numeric average as avg() over the visits, from one row per day.
REPORT_SQL = """
WITH current_members AS (
    SELECT DISTINCT user_id FROM community_members_daily
    WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
), previous_members AS (
    SELECT DISTINCT user_id FROM community_members_daily
    WHERE community_id = %(community)s AND bucket >= %(previous_start)s AND bucket < %(start)s
)
SELECT
    (SELECT coalesce(sum(events), 0) FROM activity_daily
     WHERE community_id = %(community)s AND activity_type = 'view' AND bucket >= %(start)s AND bucket < %(end)s),
    (SELECT count(*) FROM current_members),
    (SELECT count(*) FROM previous_members),
    (SELECT count(*) FROM previous_members JOIN current_members USING (user_id)),
    (SELECT sum(duration_seconds) / sum(sessions) FROM sessions_daily
     WHERE community_id = %(community)s AND day >= %(start_day)s AND day < %(end_day)s),
    (SELECT max(peak_online) FROM community_presence_daily
     WHERE community_id = %(community)s AND day >= %(start_day)s AND day < %(end_day)s)
"""

PATTERNS_SQL = """
SELECT bucket, sum(events)::bigint
FROM activity_hourly
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY bucket
"""

# From the hourly rollup: today's daily bucket is not materialized before midnight, and the daily view would group
# today's hours by activity type first, then again here (26 ms against 11 ms on the 10 M-event bench data).
_TODAY = """
SELECT community_id, sum(events)::bigint AS events,
       coalesce(sum(events) FILTER (WHERE activity_type = 'view'), 0)::bigint AS views,
       coalesce(sum(events) FILTER (WHERE activity_type = 'join'), 0)::bigint AS joins
FROM activity_hourly
WHERE bucket >= %(today)s AND bucket < %(today)s + interval '1 day' AND community_id IS NOT NULL
GROUP BY community_id
ORDER BY events DESC, community_id
LIMIT %(limit)s
"""

_VISITORS_TODAY = """
SELECT community_id, count(*) FROM community_members_daily
WHERE bucket = %(today)s AND community_id = ANY(%(ids)s)
GROUP BY community_id
"""


def report_params(community_id: int, window: Window) -> dict[str, object]:
    """The parameters of REPORT_SQL."""
    return {
        "community": community_id,
        "start": window.start,
        "end": window.end,
        "previous_start": window.previous_start,
        "start_day": window.start.date(),
        "end_day": window.end.date(),
    }


async def report_figures(conn: AsyncConnection[Any], community_id: int, window: Window) -> tuple[Any, ...]:
    """(views, unique visitors, previous visitors, returning visitors, mean session seconds, stored peak)."""
    cur = await conn.execute(REPORT_SQL, report_params(community_id, window))
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def hourly_volumes(conn: AsyncConnection[Any], community_id: int, window: Window) -> list[tuple[datetime, int]]:
    """(hour bucket, events) of the window, hours without events left out."""
    cur = await conn.execute(PATTERNS_SQL, {"community": community_id, "start": window.start, "end": window.end})
    return [(bucket, int(events)) for bucket, events in await cur.fetchall()]


async def today_by_community(conn: AsyncConnection[Any], limit: int) -> list[tuple[int, int, int, int, int]]:
    """(community, events, views, joins, unique visitors) today (UTC), busiest first."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cur = await conn.execute(_TODAY, {"today": today, "limit": limit})
    rows = await cur.fetchall()
    ids = [row[0] for row in rows]
    cur = await conn.execute(_VISITORS_TODAY, {"today": today, "ids": ids})
    visitors = dict(await cur.fetchall())
    return [(c, int(e), int(v), int(j), int(visitors.get(c, 0))) for c, e, v, j in rows]


def week_start(t: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding `t`."""
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())

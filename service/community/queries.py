"""Community figures from the rollups (activity_daily/hourly, community_members_daily) and sessions_daily."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
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

# Events by UTC hour of day, by weekday (0 = Monday) and by week (its Monday) in one row per group, `hour`,
# `weekday` or `week` set and the others null: 24 + 7 + a row per week at most, where a 31-day window has 744 hours.
# The hours are summed over activity types first (from the index alone: rollups/080), then grouped three ways.
PATTERNS_SQL = """
WITH hours AS (
    SELECT bucket AT TIME ZONE 'UTC' AS at, sum(events) AS events
    FROM activity_hourly
    WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
    GROUP BY bucket
)
SELECT extract(hour FROM at)::int AS hour, extract(isodow FROM at)::int - 1 AS weekday,
       date_trunc('week', at)::date AS week, sum(events)::bigint
FROM hours
GROUP BY GROUPING SETS ((hour), (weekday), (week))
"""

PatternRow = tuple[int | None, int | None, date | None, int]  # (hour, weekday, week, events): one of the three set

# Today's busiest communities: the figures the refresh job kept up to `through` (service/storage/today.py), plus
# the raw events after it (normally the last minute's) and the members among them it has not counted. Before the
# day's first refresh `through` is midnight.
_THROUGH = "SELECT through FROM community_today_through WHERE day = %(day)s"

_TODAY = """
WITH live AS (
    SELECT community_id, count(*) AS events, count(*) FILTER (WHERE activity_type = 'view') AS views,
           count(*) FILTER (WHERE activity_type = 'join') AS joins
    FROM activity_events
    WHERE time >= %(through)s AND time < %(tomorrow)s AND community_id IS NOT NULL
    GROUP BY community_id
)
SELECT community_id, (coalesce(t.events, 0) + coalesce(l.events, 0))::bigint AS events,
       (coalesce(t.views, 0) + coalesce(l.views, 0))::bigint,
       (coalesce(t.joins, 0) + coalesce(l.joins, 0))::bigint,
       coalesce(t.visitors, 0)
FROM (SELECT * FROM community_today WHERE day = %(day)s) t
FULL JOIN live l USING (community_id)
ORDER BY events DESC, community_id
LIMIT %(limit)s
"""

_NEW_VISITORS = """
SELECT e.community_id, count(DISTINCT e.user_id)
FROM activity_events e
WHERE e.time >= %(through)s AND e.time < %(tomorrow)s AND e.community_id = ANY(%(ids)s) AND e.user_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM community_today_members m
                  WHERE m.day = %(day)s AND m.community_id = e.community_id AND m.user_id = e.user_id)
GROUP BY e.community_id
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


async def pattern_volumes(conn: AsyncConnection[Any], community_id: int, window: Window) -> list[PatternRow]:
    """Events of the window by hour of day, by weekday and by week (PATTERNS_SQL's rows); groups without events
    left out."""
    cur = await conn.execute(PATTERNS_SQL, {"community": community_id, "start": window.start, "end": window.end})
    return list(await cur.fetchall())


async def today_by_community(conn: AsyncConnection[Any], limit: int) -> list[tuple[int, int, int, int, int]]:
    """(community, events, views, joins, unique visitors) today (UTC), busiest first."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    params: dict[str, Any] = {"day": today.date(), "tomorrow": today + timedelta(days=1), "limit": limit}
    # One snapshot for the three reads: a refresh committing in between cannot make a span count twice or not at
    # all. (One statement would do it too, but `through` unknown to the planner sends it to parallel workers.)
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute(_THROUGH, params)
        row = await cur.fetchone()
        params["through"] = row[0] if row is not None else today
        cur = await conn.execute(_TODAY, params)
        rows = await cur.fetchall()
        cur = await conn.execute(_NEW_VISITORS, {**params, "ids": [row[0] for row in rows]})
        new = dict(await cur.fetchall())
    return [(c, int(e), int(v), int(j), int(n) + int(new.get(c, 0))) for c, e, v, j, n in rows]

"""Geo figures from the geo_daily and geo_hourly rollups."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import AsyncConnection, sql

from service.core.windows import Window

# Attempts, blocked, travelers and bypasses, then the documented categories by restriction scope and result.
TOTALS_SQL = """
SELECT coalesce(sum(attempts), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint,
       coalesce(sum(bypasses), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'country' AND access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'country' AND access_result = 'allowed'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'city' AND access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'city' AND access_result = 'allowed'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'region' AND access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE restriction_scope = 'region' AND access_result = 'allowed'), 0)::bigint
FROM geo_daily
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
"""

TOP_BLOCKED_SQL = """
SELECT country, country_code, city, sum(attempts)::bigint AS blocked
FROM geo_daily
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s AND access_result = 'blocked'
GROUP BY country, country_code, city
ORDER BY blocked DESC, country NULLS LAST, city NULLS LAST
LIMIT %(limit)s
"""

LOCATIONS_SQL = """
SELECT country, country_code, region, city, sum(attempts)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'allowed'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint
FROM geo_daily
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY country, country_code, region, city
"""

TRENDS_SQL = """
SELECT bucket, sum(attempts)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'allowed'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint,
       coalesce(sum(bypasses), 0)::bigint
FROM {rollup}
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY bucket
ORDER BY bucket
"""


def window_params(community_id: int, window: Window, **extra: object) -> dict[str, object]:
    return {"community": community_id, "start": window.start, "end": window.end, **extra}


async def totals(conn: AsyncConnection[Any], community_id: int, window: Window) -> tuple[int, ...]:
    """(attempts, blocked, traveler attempts, bypasses, then attempts by scope and result: country blocked,
    country allowed, city blocked, city allowed, region blocked, region allowed) in the window."""
    cur = await conn.execute(TOTALS_SQL, window_params(community_id, window))
    row = await cur.fetchone()
    assert row is not None
    return tuple(int(n) for n in row)


async def top_blocked(conn: AsyncConnection[Any], community_id: int, window: Window, limit: int) -> list[Any]:
    """(country, country code, city, blocked attempts), most blocked first."""
    cur = await conn.execute(TOP_BLOCKED_SQL, window_params(community_id, window, limit=limit))
    return list(await cur.fetchall())


async def locations(conn: AsyncConnection[Any], community_id: int, window: Window) -> list[Any]:
    """(country, code, region, city, attempts, allowed, blocked, travelers) per place."""
    cur = await conn.execute(LOCATIONS_SQL, window_params(community_id, window))
    return list(await cur.fetchall())


async def trends(
    conn: AsyncConnection[Any], community_id: int, window: Window, interval: Literal["day", "hour"]
) -> list[Any]:
    """(bucket, attempts, allowed, blocked, travelers, bypasses) per day or hour with attempts."""
    cur = await conn.execute(trends_sql(interval), window_params(community_id, window))
    return list(await cur.fetchall())


def trends_sql(interval: Literal["day", "hour"]) -> sql.Composed:
    """TRENDS_SQL on the daily or the hourly rollup."""
    return sql.SQL(TRENDS_SQL).format(rollup=sql.Identifier("geo_daily" if interval == "day" else "geo_hourly"))

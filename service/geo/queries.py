"""Geo figures from the geo_daily and geo_hourly rollups."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import AsyncConnection, sql

from service.reporting import Window

TOTALS_SQL = """
SELECT coalesce(sum(attempts), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint,
       coalesce(sum(bypasses), 0)::bigint
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

_LOCATIONS = """
SELECT country, country_code, region, city, sum(attempts)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'allowed'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint
FROM geo_daily
WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY country, country_code, region, city
"""

_TRENDS = """
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


async def totals(conn: AsyncConnection[Any], community_id: int, window: Window) -> tuple[int, int, int, int]:
    """(attempts, blocked, traveler attempts, bypasses) in the window."""
    cur = await conn.execute(TOTALS_SQL, window_params(community_id, window))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def top_blocked(conn: AsyncConnection[Any], community_id: int, window: Window, limit: int) -> list[Any]:
    """(country, country code, city, blocked attempts), most blocked first."""
    cur = await conn.execute(TOP_BLOCKED_SQL, window_params(community_id, window, limit=limit))
    return list(await cur.fetchall())


async def locations(conn: AsyncConnection[Any], community_id: int, window: Window) -> list[Any]:
    """(country, code, region, city, attempts, allowed, blocked, travelers) per place."""
    cur = await conn.execute(_LOCATIONS, window_params(community_id, window))
    return list(await cur.fetchall())


async def trends(
    conn: AsyncConnection[Any], community_id: int, window: Window, interval: Literal["day", "hour"]
) -> list[Any]:
    """(bucket, attempts, allowed, blocked, travelers, bypasses) per day or hour with attempts."""
    rollup = sql.Identifier("geo_daily" if interval == "day" else "geo_hourly")
    cur = await conn.execute(sql.SQL(_TRENDS).format(rollup=rollup), window_params(community_id, window))
    return list(await cur.fetchall())

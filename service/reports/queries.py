"""SQL of the reports: one day's figures for the generators (sync) and the stored reports for the API (async).

The community and geo figures run the very SQL of the read endpoints (`service.community.queries`,
`service.geo.queries`) on the task's sync connection, so a stored report and the endpoint agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from service.community import queries as community_queries
from service.core.rows import fetch_one
from service.core.windows import Window
from service.geo import queries as geo_queries
from service.reports.schemas import Report

# Events per community (NULL: platform-level) and type: the communities active that day, the events by type
# of each, and the platform's totals.
_DAY_EVENTS = """
SELECT community_id, activity_type, sum(events)::bigint
FROM activity_daily
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY community_id, activity_type
ORDER BY community_id NULLS FIRST, activity_type
"""

_ACTIVE_USERS = """
SELECT count(DISTINCT user_id) FROM community_members_daily WHERE bucket >= %(start)s AND bucket < %(end)s
"""

# Visits count on the day they start, as in the community report.
_SESSIONS = """
SELECT count(*), avg(extract(epoch FROM ended_at - started_at))
FROM sessions
WHERE started_at >= %(start)s AND started_at < %(end)s
"""

_GEO_BY_COMMUNITY = """
SELECT community_id, sum(attempts)::bigint,
       coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint,
       coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint,
       coalesce(sum(bypasses), 0)::bigint
FROM geo_daily
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY community_id
HAVING sum(attempts) > 0
ORDER BY community_id
"""

_ERRORS = """
SELECT level, sum(errors)::bigint FROM errors_hourly WHERE bucket >= %(start)s AND bucket < %(end)s GROUP BY level
"""

# Regenerating a period replaces its report and keeps its id.
_UPSERT = """
INSERT INTO reports (kind, scope, period_start, period_end, generated_at, payload)
VALUES (%(kind)s, %(scope)s, %(period_start)s, %(period_end)s, %(generated_at)s, %(payload)s)
ON CONFLICT (kind, scope, period_start, period_end)
DO UPDATE SET generated_at = excluded.generated_at, payload = excluded.payload
"""

_COLUMNS = "id, kind, scope, period_start, period_end, generated_at, payload"

# Absent filters are NULL: one statement for every combination, values always bound.
_FILTERS = sql.SQL("""
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(scope)s::text IS NULL OR scope = %(scope)s)
  AND (%(since)s::date IS NULL OR period_start >= %(since)s)
  AND (%(until)s::date IS NULL OR period_start <= %(until)s)
""")
_COUNT = sql.SQL("SELECT count(*) FROM reports {filters}").format(filters=_FILTERS)
_PAGE = sql.SQL(
    "SELECT {columns} FROM reports {filters} ORDER BY period_start DESC, period_end DESC, id DESC "
    "LIMIT %(limit)s OFFSET %(offset)s"
).format(columns=sql.SQL(_COLUMNS), filters=_FILTERS)
_ONE = sql.SQL("SELECT {columns} FROM reports WHERE id = %(id)s").format(columns=sql.SQL(_COLUMNS))


def _window(window: Window) -> dict[str, object]:
    return {"start": window.start, "end": window.end}


def day_events(conn: psycopg.Connection[Any], window: Window) -> list[tuple[int | None, str, int]]:
    """(community or None for platform-level, activity type, events) in the window."""
    return [(c, t, int(n)) for c, t, n in conn.execute(_DAY_EVENTS, _window(window))]


def active_users(conn: psycopg.Connection[Any], window: Window) -> int:
    """Distinct members with any event in the window, anywhere."""
    row = conn.execute(_ACTIVE_USERS, _window(window)).fetchone()
    assert row is not None
    return int(row[0])


def sessions(conn: psycopg.Connection[Any], window: Window) -> tuple[int, Any]:
    """(visits starting in the window, their mean length in seconds or None)."""
    row = conn.execute(_SESSIONS, _window(window)).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def geo_by_community(conn: psycopg.Connection[Any], window: Window) -> list[tuple[int, int, int, int, int]]:
    """(community, attempts, blocked, traveler attempts, bypasses) of the communities with attempts."""
    rows = conn.execute(_GEO_BY_COMMUNITY, _window(window))
    return [(int(c), int(a), int(b), int(t), int(x)) for c, a, b, t, x in rows]


def errors_by_level(conn: psycopg.Connection[Any], window: Window) -> dict[str, int]:
    """Error logs created in the window, by level (levels without any left out)."""
    return {level: int(n) for level, n in conn.execute(_ERRORS, _window(window))}


def community_figures(conn: psycopg.Connection[Any], community_id: int, window: Window) -> tuple[Any, ...]:
    """The community report endpoint's figures (`service.community.queries.report_figures`), on a sync connection."""
    row = conn.execute(community_queries.REPORT_SQL, community_queries.report_params(community_id, window)).fetchone()
    assert row is not None
    return tuple(row)


def community_volumes(
    conn: psycopg.Connection[Any], community_id: int, window: Window
) -> list[community_queries.PatternRow]:
    """The activity patterns endpoint's rows (`service.community.queries.pattern_volumes`), on a sync connection."""
    params = {"community": community_id, "start": window.start, "end": window.end}
    return list(conn.execute(community_queries.PATTERNS_SQL, params).fetchall())


@dataclass(frozen=True)
class GeoDay:
    """The geo endpoints' rows for one community and window (`service.geo.queries`)."""

    totals: tuple[int, ...]
    top_blocked: list[Any]
    locations: list[Any]
    hourly_trends: list[Any]


def geo_figures(conn: psycopg.Connection[Any], community_id: int, window: Window, limit: int) -> GeoDay:
    """The effectiveness endpoint's totals and most blocked places, the locations endpoint's rows and the hourly
    trends (`service.geo.queries`), on a sync connection."""
    params = geo_queries.window_params(community_id, window, limit=limit)
    row = conn.execute(geo_queries.TOTALS_SQL, params).fetchone()
    assert row is not None
    return GeoDay(
        totals=tuple(int(n) for n in row),
        top_blocked=conn.execute(geo_queries.TOP_BLOCKED_SQL, params).fetchall(),
        locations=conn.execute(geo_queries.LOCATIONS_SQL, params).fetchall(),
        hourly_trends=conn.execute(geo_queries.trends_sql("hour"), params).fetchall(),
    )


def store(
    conn: psycopg.Connection[Any],
    kind: str,
    period: tuple[date, date],
    generated_at: datetime,
    payloads: Sequence[tuple[str, msgspec.Struct]],
) -> int:
    """Insert or replace the reports of `kind` for `period`, one per (scope, payload); how many were stored."""
    start, end = period
    rows = [
        {"kind": kind, "scope": scope, "period_start": start, "period_end": end, "generated_at": generated_at,
         "payload": Jsonb(msgspec.to_builtins(payload))}
        for scope, payload in payloads
    ]  # fmt: skip
    if rows:
        with conn.cursor() as cur:
            cur.executemany(_UPSERT, rows)
    return len(rows)


@dataclass(frozen=True)
class Filters:
    """What `GET /api/reports/` narrows on; None: any."""

    kind: str | None = None
    scope: str | None = None
    since: date | None = None  # period_start on or after
    until: date | None = None  # period_start on or before


async def page(conn: AsyncConnection[Any], filters: Filters, limit: int, offset: int) -> tuple[int, list[Report]]:
    """(matching reports, the `limit` of them after `offset`), newest period first."""
    params: dict[str, object] = {
        "kind": filters.kind, "scope": filters.scope, "since": filters.since, "until": filters.until,
        "limit": limit, "offset": offset,
    }  # fmt: skip
    cur = await conn.execute(_COUNT, params)
    row = await cur.fetchone()
    assert row is not None
    async with conn.cursor(row_factory=class_row(Report)) as reports:
        await reports.execute(_PAGE, params)
        return int(row[0]), await reports.fetchall()


async def one(conn: AsyncConnection[Any], report_id: int) -> Report | None:
    """The report with this id (one a bigint can hold: `rows.valid_id`), if any."""
    return await fetch_one(conn, Report, _ONE, {"id": report_id})

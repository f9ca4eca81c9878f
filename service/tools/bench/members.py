"""Distinct members over a window, two exact structures side by side (`analytics bench queries`).

The report's unique visitors and retention count distinct members of a window and of the one before it, which
no sum of daily counts gives. The service reads `community_members_daily`: one row per member and active day.
The candidate measured here keeps one row per member, community and month with the month's active days as the
bits of an integer (bit 0: the 1st): the two windows of a 30-day report touch three or four months, so a member
is read at most four times however many days they were active. Both are timed on the same communities over the
same materialized days (the report adds today's raw events to either alike) and must give the same three
counts; building the bitmaps, and adding a day not in them yet as a refresh would, is timed too: that is their
cost at ingest.

The bitmaps live in a table of the bench's own (`bench_member_months`), dropped after the measurement: nothing
of the service uses them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from service.core.windows import Window

# The three counts as the report's REPORT_SQL gets them, from one row per member and active day (materialized).
MEMBER_DAYS_SQL = """
WITH current_members AS (
    SELECT DISTINCT user_id FROM community_members_daily_mat
    WHERE community_id = %(community)s AND bucket >= %(start)s AND bucket < least(%(end)s, %(through)s)
), previous_members AS (
    SELECT DISTINCT user_id FROM community_members_daily_mat
    WHERE community_id = %(community)s AND bucket >= %(previous_start)s AND bucket < least(%(start)s, %(through)s)
)
SELECT (SELECT count(*) FROM current_members), (SELECT count(*) FROM previous_members),
       (SELECT count(*) FROM previous_members JOIN current_members USING (user_id))
"""

_BITMAPS = """
CREATE TABLE bench_member_months (
    community_id bigint NOT NULL, month date NOT NULL, user_id bigint NOT NULL, days integer NOT NULL,
    PRIMARY KEY (community_id, month, user_id) INCLUDE (days)
)
"""
# Member-days into the bitmaps, as a refresh would add them (the month's row made, or its day's bit set).
_ADD_DAYS = """
INSERT INTO bench_member_months (community_id, month, user_id, days)
SELECT community_id, date_trunc('month', bucket AT TIME ZONE 'UTC')::date, user_id,
       bit_or(1 << (extract(day FROM bucket AT TIME ZONE 'UTC')::int - 1))
FROM community_members_daily_mat
WHERE bucket >= %(lo)s AND bucket < %(hi)s AND community_id IS NOT NULL AND user_id IS NOT NULL
GROUP BY 1, 2, 3
ON CONFLICT (community_id, month, user_id) DO UPDATE SET days = bench_member_months.days | excluded.days
"""
# Per month of the two windows, the bits of the current window's days and of the previous window's.
BITMAPS_SQL = """
WITH masks (month, current, previous) AS (
    SELECT * FROM unnest(%(months)s::date[], %(current)s::int[], %(previous)s::int[])
), members AS (
    SELECT m.user_id, bool_or(m.days & k.current <> 0) AS current, bool_or(m.days & k.previous <> 0) AS previous
    FROM bench_member_months m JOIN masks k USING (month)
    WHERE m.community_id = %(community)s
    GROUP BY m.user_id
)
SELECT count(*) FILTER (WHERE current), count(*) FILTER (WHERE previous),
       count(*) FILTER (WHERE current AND previous)
FROM members
"""
_MEMBER_DAYS_ROWS = """
SELECT count(*) FROM community_members_daily_mat
WHERE community_id = %(community)s AND bucket >= %(previous_start)s AND bucket < least(%(end)s, %(through)s)
"""
_BITMAP_ROWS = "SELECT count(*) FROM bench_member_months WHERE community_id = %(community)s AND month = ANY(%(months)s)"
_THROUGH = "SELECT rollup_watermark('community_members_daily')"
_SIZE = "SELECT count(*), pg_total_relation_size('bench_member_months') FROM bench_member_months"


def month_masks(window: Window, through: datetime | None = None) -> dict[str, list[Any]]:
    """BITMAPS_SQL's month parameters: each month the two windows touch (up to `through`, when given), with the
    bits of its days in the window and in the one before it."""
    months: dict[date, list[int]] = {}
    day, end = window.previous_start.date(), window.end.date()
    if through is not None:
        end = min(end, through.date())
    while day < end:
        month = day.replace(day=1)
        masks = months.setdefault(month, [0, 0])
        masks[0 if day >= window.start.date() else 1] |= 1 << (day.day - 1)
        day += timedelta(days=1)
    return {
        "months": list(months),
        "current": [m[0] for m in months.values()],  # bits 0-30: an integer holds them
        "previous": [m[1] for m in months.values()],
    }


@dataclass
class MemberStructures:
    """Both structures timed on the same communities."""

    build_seconds: float = 0.0  # every member-day into bitmaps
    day_seconds: float = 0.0  # one day's member-days added, as a refresh would
    bitmap_rows: int = 0
    bitmap_bytes: int = 0
    member_days: list[float] = field(default_factory=list)  # latencies
    bitmaps: list[float] = field(default_factory=list)
    rows_read: tuple[int, int] = (0, 0)  # member-days, bitmaps: for the busiest community asked about
    mismatches: list[str] = field(default_factory=list)


def measure(conn: psycopg.Connection[Any], communities: Sequence[int], warmup: int, now: datetime) -> MemberStructures:
    """Build the bitmaps from the materialized member-days, then time the three counts of the 30-day report on
    both for each community (the first `warmup` untimed), comparing them; the bitmaps are dropped at the end."""
    result = MemberStructures()
    row = conn.execute(_THROUGH).fetchone()
    assert row is not None and row[0] is not None, "the member rollup has no materialized day"
    through: datetime = row[0]
    last_day = through - timedelta(days=1)  # the newest materialized day: added last, as a refresh would
    conn.execute("DROP TABLE IF EXISTS bench_member_months")
    conn.execute(_BITMAPS)
    try:
        start = time.perf_counter()
        conn.execute(_ADD_DAYS, {"lo": datetime.min.replace(tzinfo=UTC), "hi": last_day})
        result.build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute(_ADD_DAYS, {"lo": last_day, "hi": through})
        result.day_seconds = time.perf_counter() - start
        result.build_seconds += result.day_seconds
        conn.execute("VACUUM (ANALYZE) bench_member_months")  # an index-only scan needs the visibility map
        row = conn.execute(_SIZE).fetchone()
        assert row is not None
        result.bitmap_rows, result.bitmap_bytes = int(row[0]), int(row[1])
        window = Window.last(30, now)
        params: dict[str, Any] = {"start": window.start, "end": window.end, "previous_start": window.previous_start}
        params |= {"through": through, **month_masks(window, through)}
        busiest: tuple[int, int] = (0, 0)
        for i, community in enumerate(communities):
            mine = {**params, "community": community}
            start = time.perf_counter()
            expected = conn.execute(MEMBER_DAYS_SQL, mine).fetchone()
            middle = time.perf_counter()
            actual = conn.execute(BITMAPS_SQL, mine).fetchone()
            end = time.perf_counter()
            if i >= warmup:
                result.member_days.append(middle - start)
                result.bitmaps.append(end - middle)
            if expected != actual:
                result.mismatches.append(f"community {community}: member-days {expected}, bitmaps {actual}")
            busiest = max(busiest, (_count(conn, _MEMBER_DAYS_ROWS, mine), _count(conn, _BITMAP_ROWS, mine)))
        result.rows_read = busiest
    finally:
        conn.execute("DROP TABLE bench_member_months")
    return result


def _count(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])

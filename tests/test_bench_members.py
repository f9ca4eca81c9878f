"""`analytics bench queries`' second structure for distinct members (monthly bitmaps) against the member-days the
report reads: the month masks by hand, and both structures' counts on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from service.core.windows import Window
from service.tools.bench import members
from tests.support import act, refresh_rollups, store

C = 5


def test_month_masks_of_windows_across_three_months() -> None:
    window = Window.last(30, datetime(2026, 3, 5, 12, tzinfo=UTC))  # 3 Feb - 5 Mar, before it 3 Jan - 2 Feb
    assert (window.previous_start.date(), window.start.date()) == (
        datetime(2026, 1, 3).date(),
        datetime(2026, 2, 3).date(),
    )
    masks = members.month_masks(window)
    assert [m.isoformat() for m in masks["months"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert masks["previous"] == [(1 << 31) - (1 << 2), 0b11, 0]  # 3-31 Jan; 1-2 Feb
    assert masks["current"] == [0, (1 << 28) - (1 << 2), 0b11111]  # 3-28 Feb; 1-5 Mar


def test_both_structures_count_the_same_members(database_url: str) -> None:
    now = datetime.now(UTC)
    days_ago = {1: [40, 2, 2], 2: [3, 1], 3: [45, 50]}  # back again, new in this window, gone (community C)
    events = [act(now - timedelta(days=n), C, user) for user, ns in days_ago.items() for n in ns]
    store(database_url, [*events, act(now - timedelta(days=4), C + 1, 4)])  # and a member of another community
    refresh_rollups(database_url)
    member_days = {(user, (now - timedelta(days=n)).date()) for user, ns in days_ago.items() for n in ns}
    member_months = {(user, day.replace(day=1)) for user, day in member_days}
    with psycopg.connect(database_url, autocommit=True) as conn:
        measured = members.measure(conn, [C, C, C + 1], 1, now)
        assert measured.mismatches == []
        assert len(measured.bitmaps) == len(measured.member_days) == 2
        assert measured.bitmap_rows == len(member_months) + 1
        assert measured.rows_read == (len(member_days), len(member_months))  # the busiest: community C
        (through,) = conn.execute("SELECT rollup_watermark('community_members_daily')").fetchone() or (None,)
        window = Window.last(30, now)
        params = {"community": C, "through": through, "start": window.start, "end": window.end}
        params |= {"previous_start": window.previous_start}
        assert conn.execute(members.MEMBER_DAYS_SQL, params).fetchone() == (2, 2, 1)  # visitors, before, returning
        assert conn.execute("SELECT to_regclass('bench_member_months')").fetchone() == (None,)  # dropped

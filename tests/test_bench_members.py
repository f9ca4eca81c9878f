"""`analytics bench queries`' second structure for distinct members (monthly bitmaps) against the member-days the
report reads: the month masks by hand, and both structures' counts on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from service.core.windows import Window
from service.tools.bench import members
from service.tools.bench.options import Options
from tests.support import act, refresh_rollups, store

C = 5


def test_raw_twins_are_timed_on_every_timed_community_by_default() -> None:
    assert Options().raw_count == 200
    assert Options(samples=50, raw_samples=20).raw_count == 20
    assert Options(samples=10, raw_samples=20).raw_count == 10


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
    day = timedelta(days=1)
    store(
        database_url,
        [
            act(now - 40 * day, C, 1), act(now - 2 * day, C, 1), act(now - 2 * day, C, 1),  # back again
            act(now - 3 * day, C, 2), act(now - 1 * day, C, 2),  # new in this window
            act(now - 45 * day, C, 3), act(now - 50 * day, C, 3),  # gone
            act(now - 4 * day, C + 1, 4),  # another community
        ],
    )  # fmt: skip
    refresh_rollups(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        measured = members.measure(conn, [C, C, C + 1], 1, now)
        assert measured.mismatches == []
        assert (measured.bitmap_rows, len(measured.bitmaps)) >= (4, 2)
        window = Window.last(30, now)
        params = {"community": C, **members.month_masks(window)}
        assert conn.execute(members.BITMAPS_SQL, params).fetchone() == (2, 2, 1)  # visitors, before, returning

"""Cohort retention on hand-built fixtures; every expected triangle is worked out here from the events."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from service.community.cohorts import period_starts
from service.community.schemas import Period
from service.core.settings import Settings
from service.live.records import ActivityRecord
from tests.support import act, at, bearer, refresh_rollups, store

W = 41  # the community of the weekly fixture
M = 42  # the community of the monthly fixture
OTHER = 43


def monday(weeks_ago: int) -> datetime:
    """00:00 UTC of the Monday `weeks_ago` weeks before this week's."""
    today = at(0, 0)
    return today - timedelta(days=today.weekday(), weeks=weeks_ago)


def first_of_month(months_ago: int) -> datetime:
    """00:00 UTC of the 1st of the month `months_ago` months before this one."""
    day = at(0, 0).replace(day=1)
    for _ in range(months_ago):
        day = (day - timedelta(days=1)).replace(day=1)
    return day


def weekly_events() -> list[ActivityRecord]:
    """Weeks W3 (three weeks ago) .. W0 (this one). The triangle is worked out in `expected_weekly`."""
    return [
        # Member 1: first seen in W5, before the window: in no cohort, though active in W3 and W1.
        act(monday(5) + timedelta(hours=9), W, 1),
        act(monday(3) + timedelta(hours=9), W, 1),
        act(monday(1) + timedelta(hours=9), W, 1),
        # Member 8: first seen on the Sunday just before W3 (23:59): before the window too.
        act(monday(3) - timedelta(minutes=1), W, 8),
        act(monday(3) + timedelta(days=1), W, 8),
        # Cohort W3: members 2 and 3. Member 2 comes back in W2 and W0; member 3 is never seen again.
        act(monday(3) + timedelta(hours=10), W, 2),
        act(monday(3) + timedelta(days=2), W, 2, "like"),  # twice in W3: one member, once
        act(monday(2) + timedelta(days=4), W, 2),
        act(monday(0), W, 2),
        act(monday(3) + timedelta(days=6, hours=23), W, 3),  # W3's Sunday, 23:00
        # Cohort W2: members 4, 7, 9. Member 4 is back in W1 and W0, member 7 in W0.
        act(monday(2) + timedelta(hours=1), W, 4),
        act(monday(1) + timedelta(hours=1), W, 4),
        act(monday(0), W, 4),
        act(monday(5), OTHER, 7),  # member 7 was active before, in another community: new in this one
        act(monday(2) + timedelta(days=3), W, 7),
        act(monday(0), W, 7, "post"),
        act(monday(2) + timedelta(days=6), W, 9),
        # Cohort W1: member 5, first seen on W1's Sunday at 23:59, back in W0.
        act(monday(0) - timedelta(minutes=1), W, 5),
        act(monday(0), W, 5),
        # Cohort W0: member 6. Anonymous events belong to nobody.
        act(monday(0), W, 6),
        act(monday(0), W, None),
    ]


def cell(offset: int, active: int, share: float | None, complete: bool = True) -> dict[str, Any]:
    return {"offset": offset, "active": active, "share": share, "complete": complete}


def expected_weekly() -> dict[str, Any]:
    return {
        "community_id": W,
        "period": "week",
        "date_range": {"start": monday(3).date().isoformat(), "end": at(0, 0).date().isoformat()},
        "cohorts": [
            {"start": monday(3).date().isoformat(), "members": 2, "complete": True,  # members 2, 3
             "retention": [cell(0, 2, 100.0), cell(1, 1, 50.0), cell(2, 0, 0.0), cell(3, 1, 50.0, False)]},
            {"start": monday(2).date().isoformat(), "members": 3, "complete": True,  # members 4, 7, 9
             "retention": [cell(0, 3, 100.0), cell(1, 1, 33.3), cell(2, 2, 66.7, False)]},
            {"start": monday(1).date().isoformat(), "members": 1, "complete": True,  # member 5
             "retention": [cell(0, 1, 100.0), cell(1, 1, 100.0, False)]},
            {"start": monday(0).date().isoformat(), "members": 1, "complete": False,  # member 6
             "retention": [cell(0, 1, 100.0, False)]},
        ],
    }  # fmt: skip


def test_weekly_cohorts(client: TestClient[Any], database_url: str) -> None:
    store(database_url, weekly_events())
    refresh_rollups(database_url)
    response = client.get(f"/api/community-analytics/{W}/cohorts/?weeks=4&period=week")
    assert response.status_code == 200
    assert response.json() == expected_weekly()
    assert client.get(f"/api/community-analytics/{W}/cohorts/?weeks=4").json() == expected_weekly()  # the default


def test_a_longer_window_reaches_the_members_first_seen_before(client: TestClient[Any], database_url: str) -> None:
    store(database_url, weekly_events())
    refresh_rollups(database_url)
    cohorts = client.get(f"/api/community-analytics/{W}/cohorts/?weeks=6").json()["cohorts"]
    # W5: member 1 (back in W3 and W1); W4: member 8 (back in W3); W3 onwards as before.
    assert [(c["start"], c["members"]) for c in cohorts[:2]] == [
        (monday(5).date().isoformat(), 1), (monday(4).date().isoformat(), 1)
    ]  # fmt: skip
    assert [c["active"] for c in cohorts[0]["retention"]] == [1, 0, 1, 0, 1, 0]
    assert [c["active"] for c in cohorts[1]["retention"]] == [1, 1, 0, 0, 0]
    assert cohorts[2:] == expected_weekly()["cohorts"]


def monthly_events() -> list[ActivityRecord]:
    return [
        # Member 2: first seen on the last evening of the month before the window: in no cohort.
        act(first_of_month(2) - timedelta(hours=1), M, 2),
        act(first_of_month(1) + timedelta(days=3), M, 2),
        # Cohort M2 (two months ago): member 1, first seen on its 1st at 00:00, active in every month since
        # (on M1's last evening, and on this month's 1st).
        act(first_of_month(2), M, 1),
        act(first_of_month(0) - timedelta(hours=1), M, 1),
        act(first_of_month(0), M, 1),
        # Cohort M1: members 3 and 4; member 3 seen only then, member 4 also this month.
        act(first_of_month(1) + timedelta(days=10), M, 3),
        act(first_of_month(1) + timedelta(days=11), M, 4),
        act(first_of_month(0), M, 4),
        # Cohort M0: member 5.
        act(first_of_month(0), M, 5),
    ]


def test_monthly_cohorts(client: TestClient[Any], database_url: str) -> None:
    store(database_url, monthly_events())
    refresh_rollups(database_url)
    body = client.get(f"/api/community-analytics/{M}/cohorts/?weeks=3&period=month").json()
    assert body == {
        "community_id": M,
        "period": "month",
        "date_range": {"start": first_of_month(2).date().isoformat(), "end": at(0, 0).date().isoformat()},
        "cohorts": [
            {"start": first_of_month(2).date().isoformat(), "members": 1, "complete": True,
             "retention": [cell(0, 1, 100.0), cell(1, 1, 100.0), cell(2, 1, 100.0, False)]},
            {"start": first_of_month(1).date().isoformat(), "members": 2, "complete": True,
             "retention": [cell(0, 2, 100.0), cell(1, 1, 50.0, False)]},
            {"start": first_of_month(0).date().isoformat(), "members": 1, "complete": False,
             "retention": [cell(0, 1, 100.0, False)]},
        ],
    }  # fmt: skip


def test_todays_events_count_before_any_refresh(client: TestClient[Any], database_url: str) -> None:
    store(database_url, [act(at(0, 0), W, 1), act(at(0, 0), W, 2)])
    [current] = client.get(f"/api/community-analytics/{W}/cohorts/?weeks=1").json()["cohorts"]
    assert (current["members"], current["retention"]) == (2, [cell(0, 2, 100.0, False)])


def test_a_community_without_members_has_empty_cohorts(client: TestClient[Any]) -> None:
    body = client.get("/api/community-analytics/424242/cohorts/?weeks=2").json()
    assert body["cohorts"] == [
        {"start": monday(1).date().isoformat(), "members": 0, "complete": True,
         "retention": [cell(0, 0, None), cell(1, 0, None, False)]},
        {"start": monday(0).date().isoformat(), "members": 0, "complete": False,
         "retention": [cell(0, 0, None, False)]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=year", "period"),
        ("weeks=0", "weeks"),
        ("weeks=53", "weeks"),
        ("weeks=eight", "weeks"),
        ("weeks=30&period=month", "weeks"),
    ],  # 30 months reach before what the member rollup keeps (730 days)
)
def test_parameters_are_validated(client: TestClient[Any], query: str, field: str) -> None:
    response = client.get(f"/api/community-analytics/{W}/cohorts/?{query}")
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_moderators_of_the_community_only(client: TestClient[Any], settings: Settings) -> None:
    path = f"/api/community-analytics/{W}/cohorts/"
    assert client.get(path, headers=bearer(settings, "2", moderated=[W])).status_code == 200
    assert client.get(path, headers=bearer(settings, "2", moderated=[OTHER])).status_code == 403


@pytest.mark.parametrize(
    ("period", "today", "starts"),
    [
        ("week", date(2026, 3, 2), [date(2026, 2, 16), date(2026, 2, 23), date(2026, 3, 2)]),  # a Monday
        ("week", date(2026, 3, 8), [date(2026, 2, 16), date(2026, 2, 23), date(2026, 3, 2)]),  # the Sunday after
        ("month", date(2026, 2, 28), [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]),  # across a year
        ("month", date(2026, 1, 1), [date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1)]),
    ],
)
def test_period_starts(period: Period, today: date, starts: list[date]) -> None:
    assert period_starts(period, 3, today) == starts

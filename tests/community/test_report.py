"""Community report and activity patterns on a hand-built fixture; every expected number is worked out here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from service.core.db import detect_engine
from service.live.records import ActivityRecord
from service.storage.rollups import refresh
from tests.support import act, at, refresh_rollups, rows, store

C = 7  # the community of the report fixture
P = 9  # the community of the patterns fixture
OTHER = 8


def report_events() -> list[ActivityRecord]:
    """The report fixture; the expected figures are worked out in `expected_report`."""
    return [
        # Previous window (days 15..8 before today): members 1, 2, 3, 4 active once each.
        *(act(at(10, 12), C, user) for user in (1, 2, 3, 4)),
        # Current window (days 7..0 before today).
        # Member 1, day -2: 10:00 view, 10:20 like, 10:45 view -> one visit of 45 min (gaps 20 and 25 min);
        # then 12:00 view -> a new visit (75 min later) of 0 min.
        act(at(2, 10, 0), C, 1, "view"),
        act(at(2, 10, 20), C, 1, "like"),
        act(at(2, 10, 45), C, 1, "view"),
        act(at(2, 12, 0), C, 1, "view"),
        # Member 2, day -1: 09:00 view, 09:10 post -> a visit of 10 min.
        act(at(1, 9, 0), C, 2, "view"),
        act(at(1, 9, 10), C, 2, "post"),
        # Member 5, day -3: 15:00 join, 15:30 view -> exactly 30 min apart: still one visit, 30 min.
        act(at(3, 15, 0), C, 5, "join"),
        act(at(3, 15, 30), C, 5, "view"),
        # An anonymous view counts as a view, not as a visitor.
        act(at(1, 13, 0), C, None, "view"),
        # Another community's member: not ours.
        act(at(1, 13, 0), OTHER, 6, "view"),
        # Older than both windows: ignored.
        act(at(30, 8, 0), C, 9, "view"),
    ]


def store_presence(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO community_presence_daily (community_id, day, peak_online, average_online) VALUES "
            "(%s, %s, 4, 1.5), (%s, %s, 10, 3.0), (%s, %s, 12, 6.0)",
            (C, at(3, 0).date(), C, at(9, 0).date(), OTHER, at(2, 0).date()),
        )


def seed_report(database_url: str) -> None:
    store(database_url, report_events())
    store_presence(database_url)


def expected_report() -> dict[str, Any]:
    return {
        "community_id": C,
        "date_range": {"start": at(7, 0).date().isoformat(), "end": at(0, 0).date().isoformat()},
        "metrics": {
            "total_views": 6,  # member 1: 3, member 2: 1, member 5: 1, anonymous: 1
            "unique_visitors": 3,  # members 1, 2, 5
            "peak_online_members": 4,  # day -3; the 10 of day -9 is outside the window
            "average_session_duration": 21.25,  # (45 + 0 + 10 + 30) / 4 minutes
            "member_retention": 50.0,  # of members 1-4 (previous window), 1 and 2 came back
        },
    }


def test_report(client: TestClient[Any], database_url: str) -> None:
    seed_report(database_url)
    refresh_rollups(database_url)
    response = client.get(f"/api/community-analytics/{C}/report/?days=7")
    assert response.status_code == 200
    assert response.json() == expected_report()


def test_late_event_changes_the_report_after_a_refresh(client: TestClient[Any], database_url: str) -> None:
    seed_report(database_url)
    refresh_rollups(database_url)
    # Member 3 shows up late with an event from two days ago, in an already materialized bucket.
    store(database_url, [act(at(2, 10, 30), C, 3, "view")])
    refresh_rollups(database_url)
    body = client.get(f"/api/community-analytics/{C}/report/?days=7").json()["metrics"]
    assert body["total_views"] == 7
    assert body["unique_visitors"] == 4
    assert body["member_retention"] == 75.0  # 1, 2 and now 3 of 1-4
    assert body["average_session_duration"] == 17.0  # (45 + 0 + 10 + 30 + 0) / 5


def test_late_events_split_and_join_visits(client: TestClient[Any], database_url: str) -> None:
    seed_report(database_url)
    refresh_rollups(database_url)

    def average_after(minute_of_day: tuple[int, int]) -> float:
        store(database_url, [act(at(2, *minute_of_day), C, 1, "like")])
        refresh_rollups(database_url)
        return float(
            client.get(f"/api/community-analytics/{C}/report/?days=7").json()["metrics"]["average_session_duration"]
        )

    # 11:20 is 35 min after 10:45 and 40 min before 12:00: a visit of its own.
    # Member 1: 45, 0, 0; member 2: 10; member 5: 30 -> 85 / 5.
    assert average_after((11, 20)) == 17.0
    # 11:40 joins 11:20 and 12:00 (20 min each): member 1: 45, 40 -> (45 + 40 + 10 + 30) / 4.
    assert average_after((11, 40)) == 31.25
    # 11:05 bridges 10:45 and 11:20: member 1 has one visit 10:00-12:00 -> (120 + 10 + 30) / 3.
    assert average_after((11, 5)) == 53.33


def test_recent_events_count_before_any_refresh(client: TestClient[Any], database_url: str) -> None:
    store(database_url, [act(at(0, 0, 5), C, 1, "view"), act(at(0, 0, 6), C, 2, "view")])
    body = client.get(f"/api/community-analytics/{C}/report/?days=1").json()["metrics"]
    assert (body["total_views"], body["unique_visitors"]) == (2, 2)


def test_unknown_community_has_zero_counts_and_null_averages(client: TestClient[Any]) -> None:
    body = client.get("/api/community-analytics/424242/report/").json()["metrics"]
    assert body["total_views"] == body["unique_visitors"] == body["peak_online_members"] == 0
    # No visit to average, nobody in the window before to come back: no defined value, not a 0 that means "none".
    assert body["average_session_duration"] is None
    assert body["member_retention"] is None


@pytest.mark.parametrize("days", ["0", "366", "seven"])
def test_days_is_validated(client: TestClient[Any], days: str) -> None:
    response = client.get(f"/api/community-analytics/{C}/report/?days={days}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "days"


def pattern_events() -> list[ActivityRecord]:
    return [
        *(act(at(1, 10, m), P, 1) for m in (0, 10, 20)),  # 3 events, day -1, 10h
        act(at(1, 14, 0), P, 2),  # 1 event, day -1, 14h
        *(act(at(8, 10, m), P, 3) for m in (0, 30)),  # 2 events, day -8, 10h
        *(act(at(8, 22, m), P, 4) for m in range(5)),  # 5 events, day -8, 22h
        act(at(1, 3, 0), OTHER, 5),  # another community
    ]


def check_patterns(body: dict[str, Any]) -> None:
    hourly = {h["hour"]: h["events"] for h in body["hourly"] if h["events"]}
    assert hourly == {10: 5, 14: 1, 22: 5}
    assert len(body["hourly"]) == 24
    assert body["peak_hours"] == [10, 22, 14]  # 10 and 22 tie at 5: the earlier first
    # Day -8 is a week before day -1: the same weekday gets all 11 events; they fall in two different weeks.
    weekday = at(1, 0).weekday()
    assert {d["weekday"]: d["events"] for d in body["daily"] if d["events"]} == {weekday: 11}
    assert [d["name"] for d in body["daily"]][:2] == ["Monday", "Tuesday"]

    def monday(days_ago: int) -> str:
        day = at(days_ago, 0).date()
        return (day - timedelta(days=day.weekday())).isoformat()

    assert body["weekly"] == [{"week_start": monday(8), "events": 7}, {"week_start": monday(1), "events": 4}]


def test_activity_patterns(client: TestClient[Any], database_url: str) -> None:
    store(database_url, pattern_events())
    refresh_rollups(database_url)
    check_patterns(client.get(f"/api/community-analytics/{P}/activity-patterns/?days=30").json())


def test_communities_active_today(client: TestClient[Any], database_url: str) -> None:
    store(
        database_url,
        [
            act(at(0, 0, 1), 31, 1, "view"),
            act(at(0, 0, 2), 31, 2, "view"),
            act(at(0, 0, 3), 31, 2, "join"),
            act(at(0, 0, 4), 32, 3, "like"),
            act(at(1, 12), 33, 4, "view"),  # yesterday: not listed
        ],
    )
    body = client.get("/api/community-analytics/?limit=10").json()
    assert body == [
        {"community_id": 31, "online_members": 0, "peak_members_today": 0, "events_today": 3, "views_today": 2,
         "joins_today": 1, "unique_visitors_today": 2},
        {"community_id": 32, "online_members": 0, "peak_members_today": 0, "events_today": 1, "views_today": 0,
         "joins_today": 0, "unique_visitors_today": 1},
    ]  # fmt: skip
    assert client.get("/api/community-analytics/?limit=1").json()[0]["community_id"] == 31
    assert client.get("/api/community-analytics/?limit=0").status_code == 400


def overview_rows(client: TestClient[Any]) -> list[tuple[int, int, int, int, int]]:
    keys = ("community_id", "events_today", "views_today", "joins_today", "unique_visitors_today")
    return [tuple(row[k] for k in keys) for row in client.get("/api/community-analytics/?limit=10").json()]


def test_overview_adds_the_events_after_the_last_refresh_to_the_kept_figures(
    client: TestClient[Any], database_url: str
) -> None:
    store(database_url, [act(at(0, 0, 1), 41, 1), act(at(0, 0, 2), 41, 2), act(at(0, 0, 3), 41, 2, "join"),
                         act(at(0, 0, 4), 42, 3, "like")])  # fmt: skip
    refresh_rollups(database_url)  # keeps 41: 3 events, 2 views, 1 join, members 1 and 2; 42: 1 event, member 3
    assert rows(database_url, "SELECT community_id, events, views, joins, visitors FROM community_today") == [
        (41, 3, 2, 1, 2), (42, 1, 0, 0, 1)
    ]  # fmt: skip
    # After the refresh: member 2 again (counted already), member 5 (new) in 41, member 6 in a new community 43.
    now = datetime.now(UTC)
    store(database_url, [act(now, 41, 2), act(now, 41, 5), act(now, 43, 6, "post")])
    assert overview_rows(client) == [(41, 5, 4, 1, 3), (42, 1, 0, 0, 1), (43, 1, 0, 0, 1)]
    # An event dated before that refresh but stored after it counts from the next refresh on, as in the rollups.
    store(database_url, [act(at(0, 0, 5), 42, 7)])
    assert overview_rows(client)[1] == (42, 1, 0, 0, 1)
    refresh_rollups(database_url)
    assert overview_rows(client) == [(41, 5, 4, 1, 3), (42, 2, 1, 0, 2), (43, 1, 0, 0, 1)]


def test_overview_before_the_first_refresh_of_the_day(client: TestClient[Any], database_url: str) -> None:
    store(database_url, [act(at(1, 23, 50), 51, 1), act(at(0, 0, 10), 51, 1), act(at(0, 0, 20), 52, 2)])
    with psycopg.connect(database_url) as conn:  # the last refresh ran yesterday
        refresh(conn, detect_engine(conn), now=at(1, 23, 55))
    assert rows(database_url, "SELECT DISTINCT day FROM community_today_members") == [(at(1, 0).date(),)]
    assert overview_rows(client) == [(51, 1, 1, 0, 1), (52, 1, 1, 0, 1)]  # today's raw events, all of them
    refresh_rollups(database_url)  # the day's first refresh: yesterday's members go
    assert rows(database_url, "SELECT DISTINCT day FROM community_today_members") == [(at(0, 0).date(),)]
    assert overview_rows(client) == [(51, 1, 1, 0, 1), (52, 1, 1, 0, 1)]


def test_a_refresh_dated_before_the_previous_one_counts_the_members_again(
    client: TestClient[Any], database_url: str
) -> None:
    store(database_url, [act(at(0, 0, 30), 61, 1)])
    refresh_rollups(database_url)  # member 1 kept as today's visitor of 61
    with psycopg.connect(database_url) as conn:  # a run dated before that event: it is raw again, and so is member 1
        refresh(conn, detect_engine(conn), now=at(0, 0, 29))
    assert overview_rows(client) == [(61, 1, 1, 0, 1)]

"""update_daily_analytics on a hand-built fixture, run through the task runner; every number is worked out here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from service.core.settings import Settings
from service.live.records import ActivityRecord, GeoRecord
from service.tasks.worker import execute
from tests.support import act, at, refresh_rollups, rows, store

A, B, C = 31, 32, 33  # communities
NOW = at(0, 12)  # the task runs at noon today (UTC); "today" is day 0, "yesterday" day 1
TASK = "update_daily_analytics"


def activity() -> list[ActivityRecord]:
    """Events of the fixture; sessions (30 minutes of inactivity split them) are worked out beside them."""
    return [
        # Day -5: members 1 and 6 appear; they count in total_users of later days only.
        act(at(5, 9), A, 1, "view"),
        act(at(5, 10), None, 6, "register"),
        # Yesterday.
        # Member 2: a platform-level registration (session (2, none): 1 event, 0 min, a bounce) ...
        act(at(1, 9), None, 2, "register"),
        # ... then view, join, post in A (session (2, A): 10:00-10:20, 3 events, 20 min).
        act(at(1, 10, 0), A, 2, "view"),
        act(at(1, 10, 10), A, 2, "join"),
        act(at(1, 10, 20), A, 2, "post"),
        # Member 3: a view in B (session: 1 event, 0 min, a bounce) ...
        act(at(1, 14, 0), B, 3, "view"),
        # ... and a like at 23:50 followed by one at 00:10 today: one session of 20 min, 2 events, that started
        # yesterday (it counts for yesterday's sessions; the 00:10 like counts for today's likes).
        act(at(1, 23, 50), B, 3, "like"),
        act(at(0, 0, 10), B, 3, "like"),
        # An anonymous view: a community view, but no member and no session.
        act(at(1, 15, 0), A, None, "view"),
        # Today (before noon).
        # Member 1 in A: view, like, comment, share (08:00-08:25: 25 min, 4 events) ...
        act(at(0, 8, 0), A, 1, "view"),
        act(at(0, 8, 10), A, 1, "like", metadata={"target_user_id": 2}),
        act(at(0, 8, 20), A, 1, "comment"),
        act(at(0, 8, 25), A, 1, "share"),
        # ... a view 65 min later: a new session of 1 event, 0 min (a bounce) ...
        act(at(0, 9, 30), A, 1, "view"),
        # ... and at platform level a content view, a like and a follow (10:00-10:06: 6 min, 3 events).
        act(at(0, 10, 0), None, 1, "content_view"),
        act(at(0, 10, 5), None, 1, "like", metadata={"target_user_id": 3}),
        act(at(0, 10, 6), None, 1, "follow", metadata={"target_user_id": 2}),
        # Member 2: two messages in B exactly 30 min apart: one session of 30 min, 2 events.
        act(at(0, 11, 0), B, 2, "message"),
        act(at(0, 11, 30), B, 2, "message"),
        # Member 4 registers, is shown a recommendation and clicks it (07:00-07:06: 6 min, 3 events).
        act(at(0, 7, 0), None, 4, "register"),
        act(at(0, 7, 5), None, 4, "recommendation_shown"),
        act(at(0, 7, 6), None, 4, "recommendation_clicked"),
        # Member 5: one page view (1 event, 0 min, a bounce).
        act(at(0, 11, 50), None, 5, "page_view"),
    ]


def attempt(when: datetime, community: int, user: int | None, result: str, code: str, traveler: bool) -> GeoRecord:
    return GeoRecord(
        time=when, event_id=uuid.uuid4(), community_id=community, user_id=user, country=code, country_code=code,
        region=None, city=None, access_result=result, restriction_scope="country", is_traveler=traveler,
    )  # fmt: skip


def geo() -> list[GeoRecord]:
    return [
        attempt(at(1, 16), A, 3, "blocked", "DE", False),  # yesterday
        attempt(at(0, 9), A, 7, "allowed", "US", True),  # today: member 7 only shows up here, as a traveler
        attempt(at(0, 9, 5), B, 3, "blocked", "FR", False),
        attempt(at(0, 9, 10), A, None, "allowed", "US", False),  # anonymous
        attempt(at(3, 9), A, 3, "blocked", "DE", False),  # three days ago: in neither row
    ]


def seed(database_url: str, redis_url: str) -> None:
    store(database_url, activity(), geo())
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO community_presence_daily (community_id, day, peak_online, average_online) VALUES "
            "(%(A)s, %(y)s, 3, 1.5), (%(B)s, %(y)s, 5, 0.25), "
            "(%(A)s, %(t)s, 4, 2.0), (%(B)s, %(t)s, 1, 0.5), (%(C)s, %(t)s, 6, 0.75), "
            "(%(A)s, %(old)s, 50, 40.0)",
            {"A": A, "B": B, "C": C, "y": at(1, 0).date(), "t": at(0, 0).date(), "old": at(2, 0).date()},
        )
        conn.execute(
            "INSERT INTO error_logs (level, message, created_at) VALUES "
            "('error', 'late last night', %s), ('error', 'at midnight', %s), ('warning', 'this morning', %s), "
            "('error', 'days ago', %s)",
            (at(1, 23, 30), at(0, 0, 0), at(0, 11), at(3, 12)),
        )
    client = redis.Redis.from_url(redis_url)
    try:
        # What the request-tracking middleware keeps: today only; yesterday has no hash.
        client.hset(f"analytics:requests:{at(0, 0).date().isoformat()}", mapping={"count": 40, "duration_ms_sum": 1234})
    finally:
        client.close()
    refresh_rollups(database_url)


def expected_yesterday() -> dict[str, Any]:
    return {
        "date": at(1, 0).date(),
        "total_users": 4,  # 1 and 6 (day -5), 2 and 3
        "active_users": 2,  # 2 and 3
        "new_registrations": 1,  # member 2
        "community_views": 3,  # 2 in A, 3 in B, the anonymous one in A
        "community_joins": 1,
        "average_online_members": 1.75,  # A 1.5 + B 0.25
        "peak_community_activity": 5,  # B
        "geo_access_attempts": 1,
        "geo_blocked_attempts": 1,
        "geo_allowed_access": 0,
        "traveler_access_count": 0,
        "content_views": 0,
        "content_interactions": 1,  # member 3's 23:50 like
        "new_posts": 1,
        "new_comments": 0,
        "total_likes": 1,
        "total_shares": 0,
        "total_interactions": 2,  # post + like
        "avg_session_duration": 10.0,  # (0 + 20 + 0 + 20) / 4 sessions started yesterday
        "bounce_rate": 50.0,  # 2 of those 4 have one event
        "api_requests": 0,  # no hash for yesterday
        "avg_response_time": 0.0,
        "error_count": 1,  # 23:30
    }


def expected_today() -> dict[str, Any]:
    return {
        "date": at(0, 0).date(),
        "total_users": 6,  # 1, 2, 3, 4, 5, 6 (member 7 has geo events only)
        "active_users": 5,  # 1, 2, 3 (00:10 like), 4, 5
        "new_registrations": 1,  # member 4
        "community_views": 2,  # member 1's two views in A (a content view is not a community view)
        "community_joins": 0,
        "average_online_members": 3.25,  # A 2.0 + B 0.5 + C 0.75
        "peak_community_activity": 6,  # C
        "geo_access_attempts": 3,
        "geo_blocked_attempts": 1,  # member 3 from FR
        "geo_allowed_access": 2,  # member 7 and the anonymous one
        "traveler_access_count": 1,  # member 7
        "content_views": 1,
        "content_interactions": 5,  # likes 3 + comment 1 + share 1
        "new_posts": 0,
        "new_comments": 1,
        "total_likes": 3,  # member 3 at 00:10, member 1 at 08:10 and 10:05
        "total_shares": 1,
        "total_interactions": 7,  # post 0 + comment 1 + like 3 + share 1 + message 2
        # Sessions started today: (1, A) 25 and 0, (1, none) 6, (2, B) 30, (4, none) 6, (5, none) 0 minutes;
        # member 3's 23:50-00:10 session started yesterday.
        "avg_session_duration": 11.17,  # 67 / 6 = 11.1666...
        "bounce_rate": 33.3,  # 2 of 6 sessions have one event: 33.33...
        "api_requests": 40,
        "avg_response_time": 30.85,  # 1234 ms / 40
        "error_count": 2,  # 00:00:00 and 11:00 (the midnight one belongs to today)
    }


def snapshot(database_url: str) -> dict[Any, dict[str, Any]]:
    """Every stored row by date, all columns."""
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return {row["date"]: row for row in cur.execute("SELECT * FROM daily_analytics ORDER BY date").fetchall()}


def figures(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its bookkeeping columns."""
    return {k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at")}


def test_daily_analytics(settings: Settings, database_url: str, redis_url: str) -> None:
    seed(database_url, redis_url)
    outcome = execute(settings, TASK, now=NOW)
    assert outcome.status == "success", outcome.error
    stored = snapshot(database_url)
    assert list(stored) == [at(1, 0).date(), at(0, 0).date()]  # yesterday and today only
    assert figures(stored[at(1, 0).date()]) == expected_yesterday()
    assert figures(stored[at(0, 0).date()]) == expected_today()
    # The run is recorded with its summary.
    assert rows(database_url, "SELECT status, details FROM task_runs WHERE id = %s", outcome.run_id) == [
        ("success", {"days": {
            at(1, 0).date().isoformat(): {"active_users": 2, "total_interactions": 2, "api_requests": 0,
                                          "error_count": 1},
            at(0, 0).date().isoformat(): {"active_users": 5, "total_interactions": 7, "api_requests": 40,
                                          "error_count": 2},
        }})
    ]  # fmt: skip


def test_second_run_gives_the_same_rows(settings: Settings, database_url: str, redis_url: str) -> None:
    seed(database_url, redis_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    first = snapshot(database_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    second = snapshot(database_url)
    assert list(second) == list(first)
    for day, row in second.items():
        assert figures(row) == figures(first[day])
        assert row["id"] == first[day]["id"]  # updated in place, not replaced
        assert row["created_at"] == first[day]["created_at"]
        assert row["updated_at"] > first[day]["updated_at"]


def test_late_events_change_yesterday_on_the_next_run(settings: Settings, database_url: str, redis_url: str) -> None:
    seed(database_url, redis_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    # Member 8 shows up late with a post from yesterday 20:00 (a session of its own, one event: a bounce), and
    # requests of yesterday are counted after all.
    store(database_url, [act(at(1, 20), B, 8, "post")])
    refresh_rollups(database_url)
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(f"analytics:requests:{at(1, 0).date().isoformat()}", mapping={"count": 3, "duration_ms_sum": 10})
    finally:
        client.close()
    assert execute(settings, TASK, now=NOW).status == "success"
    stored = snapshot(database_url)
    assert figures(stored[at(1, 0).date()]) == {
        **expected_yesterday(),
        "total_users": 5,  # + member 8
        "active_users": 3,
        "new_posts": 2,
        "total_interactions": 3,
        "avg_session_duration": 8.0,  # (0 + 20 + 0 + 20 + 0) / 5
        "bounce_rate": 60.0,  # 3 of 5
        "api_requests": 3,
        "avg_response_time": 3.33,  # 10 / 3 = 3.333...
    }
    assert figures(stored[at(0, 0).date()]) == {**expected_today(), "total_users": 7}  # member 8 is known now


def test_quiet_days_get_rows_of_zeros(settings: Settings, database_url: str) -> None:
    outcome = execute(settings, TASK, now=NOW)
    assert outcome.status == "success", outcome.error
    stored = snapshot(database_url)
    assert list(stored) == [at(1, 0).date(), at(0, 0).date()]
    for day, row in stored.items():
        values = figures(row)
        assert values.pop("date") == day
        assert set(values.values()) == {0}

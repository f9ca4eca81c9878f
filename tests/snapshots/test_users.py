"""update_user_analytics on a hand-built fixture, run through the task runner; every number is worked out here."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from service.core.settings import Settings
from service.live.records import ActivityRecord, GeoRecord
from service.tasks.worker import execute
from tests.support import act, at, refresh_rollups, rows, store

A, B = 41, 42  # communities
NOW = at(0, 12)  # the task runs at noon today (UTC); "today" is day 0, "yesterday" day 1
TODAY, YESTERDAY = at(0, 0).date(), at(1, 0).date()
TASK = "update_user_analytics"


def target(user: int | str) -> dict[str, Any]:
    """The metadata of a like, follow or unfollow aimed at `user`."""
    return {"target_user_id": user}


def activity() -> list[ActivityRecord]:
    """Events of the fixture; sessions (30 minutes of inactivity split them) are worked out in the expectations."""
    return [
        # Member 1, today, in communities A and B.
        act(at(0, 8, 0), A, 1, "view"),
        act(at(0, 8, 5), A, 1, "view"),
        act(at(0, 8, 10), B, 1, "view"),
        act(at(0, 8, 15), B, 1, "join"),
        act(at(0, 8, 20), B, 1, "post"),
        act(at(0, 8, 25), B, 1, "comment"),
        act(at(0, 8, 30), B, 1, "like", metadata=target(2)),
        act(at(0, 8, 35), A, 1, "share"),
        act(at(0, 8, 40), B, 1, "message"),
        act(at(0, 11, 0), A, 1, "view"),
        # Member 1, today, at platform level.
        act(at(0, 9, 0), None, 1, "page_view"),
        act(at(0, 9, 5), None, 1, "content_view"),
        act(at(0, 9, 10), None, 1, "recommendation_shown"),
        act(at(0, 9, 11), None, 1, "recommendation_shown"),
        act(at(0, 9, 12), None, 1, "recommendation_clicked"),
        act(at(0, 9, 15), None, 1, "follow", metadata=target(2)),
        act(at(0, 9, 20), None, 1, "session_start"),
        act(at(0, 9, 21), None, 1, "session_end"),
        act(at(0, 9, 25), None, 1, "like", metadata=target(3)),
        act(at(0, 9, 30), None, 1, "comment"),
        # Member 1, three days ago: in no row written by this run.
        act(at(3, 9), A, 1, "view"),
        # Member 2: yesterday two views in A 10 minutes apart; today three likes in A (10:00-10:02), aimed at
        # member 1 (a number, then a string of digits) and at "abc" (no usable target: only a like given).
        act(at(1, 15, 0), A, 2, "view"),
        act(at(1, 15, 10), A, 2, "view"),
        act(at(0, 10, 0), A, 2, "like", metadata=target(1)),
        act(at(0, 10, 1), A, 2, "like", metadata=target("1")),
        act(at(0, 10, 2), A, 2, "like", metadata=target("abc")),
        # Members 3 and 4 follow member 1, member 5 unfollows them; member 4 also follows member 8.
        act(at(0, 7, 0), None, 3, "follow", metadata=target(1)),
        act(at(0, 7, 30), None, 4, "follow", metadata=target(1)),
        act(at(0, 7, 31), None, 4, "follow", metadata=target(8)),
        act(at(0, 7, 45), None, 5, "unfollow", metadata=target(1)),
        # Member 7: a post at 23:50 yesterday and a comment at 00:05 today in B: one session of 15 minutes that
        # started yesterday.
        act(at(1, 23, 50), B, 7, "post"),
        act(at(0, 0, 5), B, 7, "comment"),
        # Anonymous: counted for nobody.
        act(at(0, 10, 0), A, None, "view"),
    ]


def attempt(when: datetime, user: int, result: str, code: str | None, city: str | None, traveler: bool,
            community: int = A) -> GeoRecord:  # fmt: skip
    return GeoRecord(
        time=when, event_id=uuid.uuid4(), community_id=community, user_id=user, country=code, country_code=code,
        region=None, city=city, access_result=result, restriction_scope="country", is_traveler=traveler,
    )  # fmt: skip


def geo() -> list[GeoRecord]:
    return [
        # Member 1 today: blocked then allowed from Berlin, then as a traveler from New York and from somewhere in
        # France, and once from an address nobody could place (no location).
        attempt(at(0, 10, 0), 1, "blocked", "DE", "Berlin", False),
        attempt(at(0, 10, 5), 1, "allowed", "DE", "Berlin", False),
        attempt(at(0, 10, 10), 1, "allowed", "US", "New York", True, community=B),
        attempt(at(0, 10, 15), 1, "allowed", "FR", None, True, community=B),
        attempt(at(0, 10, 20), 1, "allowed", None, None, False),
        # Member 2 yesterday, as a traveler from Boston.
        attempt(at(1, 16, 0), 2, "allowed", "US", "Boston", True),
        # Member 6 today: geo only, blocked from Shanghai.
        attempt(at(0, 6, 0), 6, "blocked", "CN", "Shanghai", False),
    ]


def seed(database_url: str) -> None:
    store(database_url, activity(), geo())
    refresh_rollups(database_url)


ZERO: dict[str, Any] = {
    "page_views": 0, "actions_performed": 0, "communities_viewed": 0, "communities_joined": 0,
    "community_online_time": 0.0, "community_interactions": 0, "geo_restricted_attempts": 0,
    "locations_accessed_from": [], "travel_detected": False, "total_posts": 0, "total_comments": 0,
    "total_likes_given": 0, "total_likes_received": 0, "followers_gained": 0, "followers_lost": 0,
    "total_sessions": 0, "total_time_spent": 0.0, "avg_session_duration": 0.0, "recommendations_shown": 0,
    "recommendations_clicked": 0,
}  # fmt: skip


def row(user: int, day: date, **figures: Any) -> dict[str, Any]:
    """An expected row: every field, zero unless given."""
    assert set(figures) <= set(ZERO)
    return {"user_id": user, "date": day, **ZERO, **figures}


def expected() -> list[dict[str, Any]]:
    return [
        row(2, YESTERDAY,
            communities_viewed=1,  # two views of A
            # One session in A, 15:00-15:10.
            community_online_time=10.0, total_sessions=1, total_time_spent=10.0, avg_session_duration=10.0,
            locations_accessed_from=[{"country_code": "US", "city": "Boston"}], travel_detected=True),
        row(7, YESTERDAY,
            actions_performed=1, community_interactions=1, total_posts=1,  # the 23:50 post in B
            # The 23:50-00:05 session started yesterday.
            community_online_time=15.0, total_sessions=1, total_time_spent=15.0, avg_session_duration=15.0),
        row(1, TODAY,
            page_views=1,
            # join, post, comment (B), like (B), share, message, recommendation_clicked, follow, like and comment
            # at platform level; not: 4 views, page_view, content_view, 2 recommendation_shown, session_start/end.
            actions_performed=10,
            communities_viewed=2,  # A (3 views) and B (1)
            communities_joined=1,
            community_interactions=5,  # post, comment, like, message in B; share in A (not the platform-level ones)
            total_posts=1, total_comments=2, total_likes_given=2,
            total_likes_received=2,  # member 2's likes aimed at 1 and "1"
            followers_gained=2, followers_lost=1,  # members 3 and 4; member 5
            recommendations_shown=2, recommendations_clicked=1,
            # Sessions: (1, A) 08:00, 08:05, 08:35 (gaps of 5 and exactly 30 minutes: one session) = 35 min, and
            # 11:00 alone = 0 min; (1, B) 08:10-08:40 = 30 min; (1, none) 09:00-09:30 = 30 min.
            total_sessions=4, total_time_spent=95.0, avg_session_duration=23.75,  # 35 + 0 + 30 + 30; 95 / 4
            community_online_time=65.0,  # 35 + 0 + 30 in communities
            geo_restricted_attempts=1,  # the Berlin block
            # Berlin twice is one place; the unplaced attempt is no place; sorted by country code.
            locations_accessed_from=[{"country_code": "DE", "city": "Berlin"}, {"country_code": "FR", "city": None},
                                     {"country_code": "US", "city": "New York"}],
            travel_detected=True),
        row(2, TODAY,
            actions_performed=3, community_interactions=3, total_likes_given=3,  # three likes in A
            total_likes_received=1, followers_gained=1,  # member 1's like and follow
            total_sessions=1, total_time_spent=2.0, avg_session_duration=2.0, community_online_time=2.0),  # 10:00-10:02
        row(3, TODAY,
            actions_performed=1,  # the follow
            total_likes_received=1,  # member 1's platform-level like
            total_sessions=1),  # a one-event session of 0 minutes
        row(4, TODAY, actions_performed=2,  # two follows
            total_sessions=1, total_time_spent=1.0, avg_session_duration=1.0),  # 07:30-07:31
        row(5, TODAY, actions_performed=1, total_sessions=1),  # the unfollow
        row(6, TODAY, geo_restricted_attempts=1, locations_accessed_from=[{"country_code": "CN", "city": "Shanghai"}]),
        row(7, TODAY, actions_performed=1, community_interactions=1, total_comments=1),  # its session began yesterday
        row(8, TODAY, followers_gained=1),  # inactive, but followed by member 4
    ]  # fmt: skip


def snapshot(database_url: str) -> list[dict[str, Any]]:
    """Every stored row, all columns, by date then user."""
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM user_analytics ORDER BY date, user_id").fetchall()


def figures(stored: dict[str, Any]) -> dict[str, Any]:
    """A row without its bookkeeping columns."""
    return {k: v for k, v in stored.items() if k not in ("id", "last_calculated")}


def test_user_analytics(settings: Settings, database_url: str) -> None:
    seed(database_url)
    outcome = execute(settings, TASK, now=NOW)
    assert outcome.status == "success", outcome.error
    assert [figures(r) for r in snapshot(database_url)] == expected()
    summary = {"users": {YESTERDAY.isoformat(): 2, TODAY.isoformat(): 8}}
    assert rows(database_url, "SELECT status, details FROM task_runs WHERE id = %s", outcome.run_id) == [
        ("success", summary)
    ]


def test_second_run_gives_the_same_rows(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    first = snapshot(database_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    second = snapshot(database_url)
    assert [figures(r) for r in second] == [figures(r) for r in first] == expected()
    assert [r["id"] for r in second] == [r["id"] for r in first]  # updated in place, not replaced
    assert all(s["last_calculated"] > f["last_calculated"] for s, f in zip(second, first, strict=True))


def test_late_events_change_yesterday_on_the_next_run(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    # Member 2's page view at 15:20 yesterday arrives late. Sessions are per community, so this platform-level
    # event does not extend the 15:00-15:10 visit of A: it is a session of its own (1 event, 0 minutes).
    store(database_url, [act(at(1, 15, 20), None, 2, "page_view")])
    refresh_rollups(database_url)
    assert execute(settings, TASK, now=NOW).status == "success"
    stored = {(r["user_id"], r["date"]): figures(r) for r in snapshot(database_url)}
    assert stored[(2, YESTERDAY)] == {
        **expected()[0],
        "page_views": 1,
        "total_sessions": 2,
        "total_time_spent": 10.0,  # 10 + 0
        "avg_session_duration": 5.0,  # 10 / 2
    }


def test_a_day_without_users_writes_nothing(settings: Settings, database_url: str) -> None:
    outcome = execute(settings, TASK, now=NOW)
    assert outcome.status == "success", outcome.error
    assert outcome.details == {"users": {YESTERDAY.isoformat(): 0, TODAY.isoformat(): 0}}
    assert snapshot(database_url) == []

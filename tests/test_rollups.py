"""Rollups agree with the raw tables after a refresh, late events included; refreshing is idempotent."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

from service.core.settings import Settings
from service.live.realtime import activity_level
from service.live.records import ActivityRecord, GeoRecord
from service.storage.buckets import floor, merge
from service.storage.rollups import record_invalidation
from service.tasks.worker import execute
from tests.support import act, at, refresh_rollups, rows, staff_client, store

TYPES = ["view", "join", "like", "post", "comment"]

# The same figures computed straight from the raw tables, written independently of the rollup definitions.
RAW = {
    "activity_hourly": """
        SELECT date_trunc('hour', time AT TIME ZONE 'UTC'), community_id, activity_type, count(*),
               coalesce(sum(duration), 0), count(duration)
        FROM activity_events GROUP BY 1, 2, 3""",
    "activity_daily": """
        SELECT date_trunc('day', time AT TIME ZONE 'UTC'), community_id, activity_type, count(*),
               coalesce(sum(duration), 0), count(duration)
        FROM activity_events GROUP BY 1, 2, 3""",
    "community_members_daily": """
        SELECT date_trunc('day', time AT TIME ZONE 'UTC'), community_id, user_id, count(*), min(time), max(time)
        FROM activity_events WHERE user_id IS NOT NULL GROUP BY 1, 2, 3""",
    "geo_daily": """
        SELECT date_trunc('day', time AT TIME ZONE 'UTC'), community_id, country_code, city, access_result,
               is_traveler, count(*), count(*) FILTER (WHERE restriction_bypass)
        FROM geo_access_events GROUP BY 1, 2, 3, 4, 5, 6""",
}
ROLLUP = {
    "activity_hourly": """SELECT bucket AT TIME ZONE 'UTC', community_id, activity_type, events, duration_sum,
                                 duration_count FROM {}""",
    "activity_daily": """SELECT bucket AT TIME ZONE 'UTC', community_id, activity_type, events, duration_sum,
                                duration_count FROM {}""",
    "community_members_daily": """SELECT bucket AT TIME ZONE 'UTC', community_id, user_id, events, first_seen,
                                         last_seen FROM {}""",
    "geo_daily": """SELECT bucket AT TIME ZONE 'UTC', community_id, country_code, city, access_result, is_traveler,
                           sum(attempts), sum(bypasses) FROM {} GROUP BY 1, 2, 3, 4, 5, 6""",
}


def random_batch(rng: random.Random, n: int, oldest_days: int) -> list[ActivityRecord]:
    return [
        act(
            at(rng.randrange(oldest_days), rng.randrange(24), rng.randrange(60)),
            rng.choice([1, 2, 3, None]),
            rng.choice([None, *range(1, 30)]),
            rng.choice(TYPES),
            duration=rng.choice([None, float(rng.randrange(600))]),
        )
        for _ in range(n)
    ]


def geo_batch(rng: random.Random, n: int, oldest_days: int) -> list[GeoRecord]:
    return [
        GeoRecord(
            time=at(rng.randrange(oldest_days), rng.randrange(24)),
            event_id=uuid.uuid4(),
            community_id=rng.choice([1, 2]),
            user_id=rng.choice([None, 1, 2, 3]),
            country=None,
            country_code=rng.choice(["DE", "FR", "US"]),
            region=None,
            city=rng.choice([None, "X"]),
            access_result=rng.choice(["allowed", "blocked"]),
            restriction_scope=None,
            is_traveler=None,
        )
        for _ in range(n)
    ]


def assert_agree(database_url: str) -> None:
    """Each rollup (the view the queries read) equals the raw figures; its materialized part holds exactly the
    raw figures of the buckets below its watermark."""
    for name, raw in RAW.items():
        expected = sorted(rows(database_url, raw), key=repr)
        assert expected, name
        assert sorted(rows(database_url, ROLLUP[name].format(name)), key=repr) == expected, name
        [(watermark,)] = rows(database_url, "SELECT rollup_watermark(%s) AT TIME ZONE 'UTC'", name)
        materialized = sorted(rows(database_url, ROLLUP[name].format(f"{name}_mat")), key=repr)
        assert materialized == [r for r in expected if r[0] < watermark], name


def test_rollups_agree_with_raw_tables_including_late_events(database_url: str) -> None:
    rng = random.Random(7)
    store(database_url, random_batch(rng, 400, oldest_days=10), geo_batch(rng, 200, oldest_days=10))
    refresh_rollups(database_url)
    assert_agree(database_url)
    # Late arrivals: a back-dated batch into buckets materialized long ago, and one for the current hour.
    store(database_url, random_batch(rng, 150, oldest_days=9), geo_batch(rng, 50, oldest_days=9))
    store(database_url, [act(at(0, 0) + timedelta(minutes=1), 1, 1)])
    refresh_rollups(database_url)
    assert_agree(database_url)


def test_refresh_is_idempotent(database_url: str) -> None:
    rng = random.Random(3)
    store(database_url, random_batch(rng, 200, oldest_days=5))
    refresh_rollups(database_url)
    tables = ["activity_hourly_mat", "activity_daily_mat", "community_members_daily_mat", "sessions"]
    before = {t: sorted(rows(database_url, f"SELECT * FROM {t}"), key=repr) for t in tables}
    refresh_rollups(database_url)
    assert {t: sorted(rows(database_url, f"SELECT * FROM {t}"), key=repr) for t in tables} == before
    assert rows(database_url, "SELECT count(*) FROM rollup_invalidations") == [(0,)]


def test_sessions_match_a_full_recomputation(database_url: str) -> None:
    rng = random.Random(11)
    for _ in range(4):  # several batches arriving in random time order
        store(database_url, random_batch(rng, 120, oldest_days=3))
        refresh_rollups(database_url)
    full = """
        WITH marked AS (
            SELECT user_id, community_id, time,
                   CASE WHEN time - lag(time) OVER w > interval '30 minutes' THEN 1 ELSE 0 END AS new_visit
            FROM activity_events WHERE user_id IS NOT NULL
            WINDOW w AS (PARTITION BY user_id, community_id ORDER BY time)
        ), numbered AS (
            SELECT *, sum(new_visit) OVER (PARTITION BY user_id, community_id ORDER BY time) AS visit FROM marked
        )
        SELECT user_id, community_id, min(time), max(time), count(*) FROM numbered
        GROUP BY user_id, community_id, visit"""
    stored = "SELECT user_id, community_id, started_at, ended_at, events FROM sessions"
    assert sorted(rows(database_url, stored), key=repr) == sorted(rows(database_url, full), key=repr)
    # The per-day sums the reports read agree with the same full recomputation.
    full_days = f"""
        SELECT community_id, (min AT TIME ZONE 'UTC')::date, count(*), sum(extract(epoch FROM max - min))
        FROM ({full}) visits WHERE community_id IS NOT NULL GROUP BY 1, 2"""
    daily = "SELECT community_id, day, sessions, duration_seconds FROM sessions_daily"
    assert sorted(rows(database_url, daily)) == sorted(rows(database_url, full_days))


def test_a_late_event_joining_two_visits_moves_their_day_sums(database_url: str) -> None:
    # Member 1 in community 1: 23:50 the day before yesterday, then 00:30 yesterday: 40 minutes apart, two visits
    # of one event each, one per day.
    late_evening, after_midnight = at(2, 23, 50), at(1, 0, 30)
    store(database_url, [act(late_evening, 1, 1), act(after_midnight, 1, 1)])
    refresh_rollups(database_url)
    daily = "SELECT day, sessions, duration_seconds FROM sessions_daily WHERE community_id = 1 ORDER BY day"
    assert rows(database_url, daily) == [(late_evening.date(), 1, 0), (after_midnight.date(), 1, 0)]
    # An event at 00:10 arrives late: one visit of 40 minutes started the day before; yesterday has none left.
    store(database_url, [act(at(1, 0, 10), 1, 1)])
    refresh_rollups(database_url)
    assert rows(database_url, daily) == [(late_evening.date(), 1, 2400)]


@pytest.mark.parametrize(
    ("recent", "baseline", "score", "label"),
    [
        (0, 0.0, 0.0, "low"),
        (1, 0.0, 5.0, "medium"),  # a quiet community's baseline counts as one event
        (2, 4.0, 2.5, "medium"),
        (1, 4.0, 1.2, "low"),  # 1.25 rounds to 1.2 (one decimal)
        (6, 4.0, 7.5, "high"),
        (40, 4.0, 10.0, "high"),  # capped
    ],
)
def test_activity_level(recent: int, baseline: float, score: float, label: str) -> None:
    assert activity_level(recent, baseline) == (score, label)


def test_merge_and_floor() -> None:
    t = at(1, 10, 17)
    assert floor(t, timedelta(hours=1)) == at(1, 10)
    assert floor(t, timedelta(days=1)) == at(1, 0)
    a, b, c = at(1, 1), at(1, 2), at(1, 5)
    assert merge([(b, c), (a, b)]) == [(a, c)]
    assert merge([(a, a), (c, c)], slack=timedelta(hours=4)) == [(a, c)]
    assert merge([(a, a), (c, c)], slack=timedelta(hours=1)) == [(a, a), (c, c)]


def test_realtime_score_over_http(database_url: str, redis_url: str, settings_for: Callable[..., Settings]) -> None:
    # Ten days of accepted timestamps: the history reaches back to the seventh day before today.
    with staff_client(settings_for(database_url, redis_url, TRACK_MAX_AGE="864000")) as client:
        # 1344 events over the previous 7 days: a usual quarter hour holds 1344 / (7 x 96) = 2 events.
        history = [{"community_id": 5, "activity_type": "view", "timestamp": at(d, 12).isoformat()}
                   for d in range(1, 8) for _ in range(192)]  # fmt: skip
        for i in range(0, len(history), 448):
            assert client.post("/api/community-analytics/track/batch/", json=history[i : i + 448]).status_code == 202
        for user in (1, 2):
            client.post("/api/community-analytics/track/", json={"community_id": 5, "user_id": user,
                                                                 "activity_type": "view"})  # fmt: skip
        body = client.get("/api/community-analytics/5/realtime/").json()
    assert body == {
        "community_id": 5,
        "online_members": 2,
        "activity_score": 5.0,  # 2 events now / 2 usual = 1.0 -> 5 x 1.0
        "peak_members_today": 2,
        "current_activity": "medium",
        "recent_events": 2,
        "baseline_events": 2.0,
    }


def test_one_failing_rollup_does_not_hold_back_the_others(settings: Settings, database_url: str) -> None:
    """Two samples near the float limit in one hour (stored before values were bounded at the door) overflow the
    hourly average: that rollup fails and keeps its work for the next run; sessions and the other rollups move on;
    the run is a failure naming the rollup."""
    hour = at(1, 10)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO system_metrics (metric_type, value, recorded_at) VALUES ('ovf', 1.7e308, %s), "
            "('ovf', 1.7e308, %s)",
            (hour, hour + timedelta(minutes=1)),
        )
        record_invalidation(conn, "system_metrics", [hour])
    store(database_url, [act(hour, 5, 1, "view"), act(hour + timedelta(minutes=5), 5, 1, "like")])

    outcome = execute(settings, "refresh_rollups")
    assert outcome.status == "failure"
    assert outcome.error is not None and outcome.error.startswith("RefreshFailed: system_metrics_hourly: ")
    assert rows(database_url, "SELECT sum(events)::int FROM activity_hourly WHERE community_id = 5") == [(2,)]
    assert rows(database_url, "SELECT count(*)::int FROM sessions") == [(1,)]
    assert rows(database_url, "SELECT source FROM rollup_invalidations") == [("system_metrics",)]

    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM system_metrics WHERE metric_type = 'ovf'")
    assert execute(settings, "refresh_rollups").status == "success"
    assert rows(database_url, "SELECT count(*)::int FROM rollup_invalidations") == [(0,)]

"""`analytics bench queries`: read-endpoint latency on a synthetic data set, beside the same figures from raw."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from functools import partial
from typing import Any

import msgspec
import psycopg
import redis
from psycopg import sql

from service.core.db import Engine, connect, detect_engine
from service.core.settings import Settings
from service.core.windows import Window, minutes, percent
from service.geo.figures import nest
from service.live.keys import DAY_TTL, Shards, shards
from service.storage.migrations import migrate
from service.storage.rollups import refresh
from service.tools.bench import clickhouse, members
from service.tools.bench.harness import (
    Bench,
    BenchError,
    KeepAlive,
    OtherLoad,
    Progress,
    cores,
    credentials,
    flush_redis,
    machine,
    render_table,
    run_bench,
    start_service,
)
from service.tools.bench.options import Options
from service.tools.bench.shapes import effectiveness_answer, funnel_members, patterns_answer

SINGLE = shards(1, False)  # the bench's own single Redis, unsharded

SEED = 20260101
CHUNK = 250_000  # rows per INSERT ... SELECT of the load
WARMUP_REQUESTS = 20  # untimed requests per endpoint before the timed ones
RAW_WARMUP = 2  # untimed raw computations per endpoint before the timed ones
TOP_LIMIT = 100  # ?limit= of the communities-today list
BLOCKED_LIMIT = 10  # the effectiveness endpoint's default ?limit=
SESSION_GAP = timedelta(minutes=30)
ROLLUPS = ("activity_hourly", "activity_daily", "community_members_daily", "geo_hourly", "geo_daily")
RAW_TABLES = ("activity_events", "geo_access_events")
DERIVED_TABLES = (
    "sessions", "sessions_daily", "rollup_invalidations", "community_presence_daily", "community_today",
    "community_today_members", "community_today_through",
)  # fmt: skip
# PostgreSQL started by the bench: a modest production-like memory setting, and WAL room for the bulk load.
POSTGRES_OPTIONS = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}

# Synthetic data set. Weights are relative; every list is drawn from by position.
HOUR_WEIGHTS = (3, 2, 2, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 12, 11, 9, 7, 5)  # UTC hour of day
ACTIVITY_WEIGHTS = {
    "view": 40,
    "like": 18,
    "comment": 10,
    "content_view": 8,
    "message": 7,
    "post": 5,
    "share": 4,
    "page_view": 3,
    "join": 2,
    "follow": 1,
    "leave": 1,
    "recommendation_clicked": 1,
}  # fmt: skip  -- after the first event of a visit, which is always a view
SECTIONS = ("feed", "events", "members", "chat", "about")
ANONYMOUS = 0.03  # share of visits (and geo attempts) without a member
LOYALTY = 0.8  # share of a member's visits that go to one of their three favourite communities
# (country, code, region, city, weight, chance of being blocked); the last one: an address GeoIP did not know
PLACES: tuple[tuple[str | None, str | None, str | None, str | None, int, float], ...] = (
    ("United States", "US", "California", "Los Angeles", 14, 0.05),
    ("United States", "US", "New York", "New York", 12, 0.05),
    ("Germany", "DE", "Berlin", "Berlin", 10, 0.40),
    ("Germany", "DE", "Bavaria", "Munich", 6, 0.40),
    ("United Kingdom", "GB", "England", "London", 10, 0.10),
    ("France", "FR", "Ile-de-France", "Paris", 7, 0.30),
    ("Brazil", "BR", "Sao Paulo", "Sao Paulo", 6, 0.15),
    ("India", "IN", "Maharashtra", "Mumbai", 7, 0.35),
    ("Japan", "JP", "Tokyo", "Tokyo", 5, 0.10),
    ("Russia", "RU", "Moscow", "Moscow", 5, 0.90),
    ("China", "CN", "Beijing", "Beijing", 4, 0.95),
    ("Canada", "CA", "Ontario", "Toronto", 5, 0.05),
    ("Australia", "AU", "New South Wales", "Sydney", 3, 0.05),
    ("Turkey", "TR", "Istanbul", "Istanbul", 3, 0.60),
    ("Nigeria", "NG", "Lagos", "Lagos", 2, 0.30),
    (None, None, None, None, 1, 0.50),
)

# One INSERT of activity: visits of members (or anonymous visitors) to communities, each a few events some minutes
# apart, ending at an hour drawn from the daily rhythm among the hours %(hours)s (offsets from %(slice)s) this
# statement covers; rows go in in time order, as the ingest worker appends them. Popularity is skewed (community k
# gets a share ~ 1/sqrt(k)), and so is members' activity; a member mostly returns to three favourite communities
# (a hash of their id).
_LOAD_ACTIVITY = """
WITH visits AS MATERIALIZED (
    SELECT v.user_id,
           CASE WHEN v.user_id IS NOT NULL AND v.r_loyal < %(loyalty)s
                THEN 1 + floor(%(communities)s::int * power(
                         mod(v.user_id * 7919 + floor(3 * power(v.r_which, 2))::bigint * 104729, 1000003) / 1000003.0,
                         2))
                ELSE 1 + floor(%(communities)s::int * power(v.r_community, 2))
           END::bigint AS community_id,
           least(40, 1 + floor(-5 * ln(1 - v.r_length)))::int AS events,
           20 + 220 * v.r_step AS step,
           %(slice)s + make_interval(secs => v.hour * 3600 + v.second) AS last_at
    FROM (
        SELECT CASE WHEN random() < %(anonymous)s THEN NULL
                    ELSE 1 + floor(%(users)s::int * power(random(), 1.6))::bigint END AS user_id,
               random() AS r_loyal, random() AS r_which, random() AS r_community, random() AS r_length,
               random() AS r_step, (%(hours)s::int[])[1 + floor(random() * %(hour_slots)s::int)::int] AS hour,
               3600 * random() AS second
        FROM generate_series(1, %(visits)s::int)
    ) v
), events AS MATERIALIZED (
    SELECT v.user_id, v.community_id,
           v.last_at - make_interval(secs => (v.events - 1 - k) * v.step + 0.5 * v.step * random()) AS time,
           CASE WHEN k = 0 THEN 'view'
                ELSE (%(types)s::text[])[1 + floor(random() * %(type_slots)s::int)::int] END AS activity_type,
           random() AS r_duration
    FROM visits v CROSS JOIN LATERAL generate_series(0, v.events - 1) AS k
    LIMIT %(count)s
)
INSERT INTO activity_events (time, event_id, community_id, user_id, activity_type, duration, section)
SELECT time, gen_random_uuid(), community_id, user_id, activity_type,
       CASE WHEN activity_type IN ('view', 'content_view') AND r_duration < 0.7
            THEN round(exp(5.7 * r_duration / 0.7)::numeric, 1) END,
       (%(sections)s::text[])[1 + floor(random() * %(section_slots)s::int)::int]
FROM events
ORDER BY time
"""

# One INSERT of geo access decisions in the hours %(hours)s after %(slice)s: places from a short list, each with
# its own chance of being blocked (about a quarter overall), some travelers, a few bypasses; in time order.
_LOAD_GEO = """
WITH attempts AS MATERIALIZED (
    SELECT %(slice)s + make_interval(
               secs => (%(hours)s::int[])[1 + floor(random() * %(hour_slots)s::int)::int] * 3600 + 3600 * random())
               AS time,
           1 + floor(%(communities)s::int * power(random(), 2))::bigint AS community_id,
           CASE WHEN random() < %(anonymous)s THEN NULL
                ELSE 1 + floor(%(users)s::int * power(random(), 1.6))::bigint END AS user_id,
           (%(places)s::int[])[1 + floor(random() * %(place_slots)s::int)::int] AS place,
           random() AS r_block, random() AS r_scope, random() AS r_traveler, random() AS r_bypass
    FROM generate_series(1, %(count)s::int)
)
INSERT INTO geo_access_events (time, event_id, community_id, user_id, country, country_code, region, city,
                               access_result, restriction_scope, is_traveler, restriction_bypass)
SELECT time, gen_random_uuid(), community_id, user_id, (%(countries)s::text[])[place],
       (%(codes)s::text[])[place], (%(regions)s::text[])[place], (%(cities)s::text[])[place],
       CASE WHEN blocked THEN 'blocked' ELSE 'allowed' END,
       CASE WHEN blocked THEN CASE WHEN r_scope < 0.6 THEN 'country' WHEN r_scope < 0.85 THEN 'region' ELSE 'city' END
       END,
       r_traveler < 0.08,
       NOT blocked AND r_bypass < 0.02
FROM (SELECT *, r_block < (%(block)s::float8[])[place] AS blocked FROM attempts) a
ORDER BY time
"""

# Persisted daily presence (the snapshot task's output) for the days before today: a peak of about an eighth of
# the day's members, so that the reports' peak_online_members reads something.
_PRESENCE = """
INSERT INTO community_presence_daily (community_id, day, peak_online, average_online, samples)
SELECT community_id, (bucket AT TIME ZONE 'UTC')::date, ceil(count(*) / 8.0)::int, round(count(*) / 20.0, 2), 288
FROM community_members_daily
WHERE bucket < %(today)s AND community_id IS NOT NULL
GROUP BY community_id, bucket
"""

# --- the same figures from the raw tables ---------------------------------------------------------------------

_RAW_REPORT = """
WITH events AS (
    SELECT time, user_id, activity_type FROM activity_events
    WHERE community_id = %(community)s AND time >= %(previous_start)s AND time < %(end)s
), current_members AS (
    SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL AND time >= %(start)s
), previous_members AS (
    SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL AND time < %(start)s
)
SELECT (SELECT count(*) FROM events WHERE activity_type = 'view' AND time >= %(start)s),
       (SELECT count(*) FROM current_members),
       (SELECT count(*) FROM previous_members),
       (SELECT count(*) FROM previous_members JOIN current_members USING (user_id)),
       (SELECT max(peak_online) FROM community_presence_daily
        WHERE community_id = %(community)s AND day >= %(start_day)s AND day < %(end_day)s)
"""

# Visits that start in the window: a member's events split where more than 30 minutes pass without one. Events
# from 30 minutes before the window on decide whether the first events in it start a visit.
_RAW_SESSIONS = """
WITH marked AS (
    SELECT user_id, time,
           CASE WHEN time - lag(time) OVER w <= %(gap)s THEN 0 ELSE 1 END AS starts_visit
    FROM activity_events
    WHERE community_id = %(community)s AND user_id IS NOT NULL AND time >= %(start)s - %(gap)s
    WINDOW w AS (PARTITION BY user_id ORDER BY time)
), numbered AS (
    SELECT user_id, time, sum(starts_visit) OVER (PARTITION BY user_id ORDER BY time) AS visit
    FROM marked
), visits AS (
    SELECT min(time) AS started_at, max(time) AS ended_at FROM numbered GROUP BY user_id, visit
)
SELECT avg(extract(epoch FROM ended_at - started_at)) FROM visits
WHERE started_at >= %(start)s AND started_at < %(end)s
"""

_RAW_PATTERNS = """
SELECT hour, weekday, week, count(*)
FROM (
    SELECT extract(hour FROM time AT TIME ZONE 'UTC')::int AS hour,
           extract(isodow FROM time AT TIME ZONE 'UTC')::int - 1 AS weekday,
           (date_trunc('week', time, 'UTC') AT TIME ZONE 'UTC')::date AS week
    FROM activity_events
    WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s
) e
GROUP BY GROUPING SETS ((hour), (weekday), (week))
"""

_RAW_TODAY = """
SELECT community_id, count(*), count(*) FILTER (WHERE activity_type = 'view'),
       count(*) FILTER (WHERE activity_type = 'join'), count(DISTINCT user_id)
FROM activity_events
WHERE time >= %(today)s AND time < %(tomorrow)s AND community_id IS NOT NULL
GROUP BY community_id
ORDER BY 2 DESC, community_id
LIMIT %(limit)s
"""

_RAW_GEO_TOTALS = """
SELECT count(*), count(*) FILTER (WHERE access_result = 'blocked'), count(*) FILTER (WHERE is_traveler),
       count(*) FILTER (WHERE restriction_bypass)
FROM geo_access_events
WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s
"""

_RAW_TOP_BLOCKED = """
SELECT country, country_code, city, count(*) AS blocked
FROM geo_access_events
WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s AND access_result = 'blocked'
GROUP BY country, country_code, city
ORDER BY blocked DESC, country NULLS LAST, city NULLS LAST
LIMIT %(limit)s
"""

_RAW_LOCATIONS = """
SELECT country, country_code, region, city, count(*), count(*) FILTER (WHERE access_result = 'allowed'),
       count(*) FILTER (WHERE access_result = 'blocked'), count(*) FILTER (WHERE is_traveler)
FROM geo_access_events
WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s
GROUP BY country, country_code, region, city
"""

_RAW_TRENDS = """
SELECT date_trunc('day', time, 'UTC'), count(*), count(*) FILTER (WHERE access_result = 'allowed'),
       count(*) FILTER (WHERE access_result = 'blocked'), count(*) FILTER (WHERE is_traveler),
       count(*) FILTER (WHERE restriction_bypass)
FROM geo_access_events
WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1
"""


@dataclass
class Raw:
    """What the raw computations run on: a connection to the database and the Redis of the app."""

    conn: psycopg.Connection[Any]
    redis: redis.Redis

    def one(self, query: str, params: dict[str, Any]) -> tuple[Any, ...]:
        """The single row of `query`."""
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return tuple(row)

    def all(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of `query`."""
        return [tuple(row) for row in self.conn.execute(query, params).fetchall()]


def _window_params(community: int | None, window: Window) -> dict[str, Any]:
    return {"community": community, "start": window.start, "end": window.end, "previous_start": window.previous_start}


def raw_report(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """The community report's figures from activity_events (the peak from the persisted daily presence and,
    for today, Redis: no raw table holds it)."""
    params = {**_window_params(community, window), "start_day": window.start.date(), "end_day": window.end.date()}
    views, visitors, previous, returning, stored_peak = raw.one(_RAW_REPORT, params)
    (seconds,) = raw.one(_RAW_SESSIONS, {**params, "gap": SESSION_GAP})
    metrics = {
        "total_views": int(views),
        "unique_visitors": int(visitors),
        "peak_online_members": max(int(stored_peak or 0), live_peak(raw, community, window)),
        "average_session_duration": minutes(seconds),
        "member_retention": percent(returning, previous),
    }
    return {"metrics": metrics}


def live_peak(raw: Raw, community: int | None, window: Window) -> int:
    """The peak of online members that Redis holds for the window's last day (today), 0 without one."""
    today = (window.end - timedelta(days=1)).strftime("%Y-%m-%d")
    return int(raw.redis.hget(SINGLE.all[0].peak_key(today), str(community)) or 0)


def raw_patterns(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Events by hour of day, weekday and week, and the peak hours, from activity_events."""
    rows = raw.all(_RAW_PATTERNS, _window_params(community, window))
    return patterns_answer((h, d, w, int(n)) for h, d, w, n in rows)


def raw_today(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Today's busiest communities with their events, views, joins and visitors, from activity_events."""
    today = window.end - timedelta(days=1)
    rows = raw.all(_RAW_TODAY, {"today": today, "tomorrow": window.end, "limit": TOP_LIMIT})
    return {"rows": [[int(x) for x in row] for row in rows]}


def raw_effectiveness(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Attempts, blocked share, travelers, bypasses and the most blocked places, from geo_access_events."""
    params = _window_params(community, window)
    total, blocked, travelers, bypasses = (int(x) for x in raw.one(_RAW_GEO_TOTALS, params))
    top = raw.all(_RAW_TOP_BLOCKED, {**params, "limit": BLOCKED_LIMIT})
    return effectiveness_answer((total, blocked, travelers, bypasses), [(*row[:3], int(row[3])) for row in top])


def raw_locations(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Attempts by country, region and city from geo_access_events, as the endpoint's tree."""
    rows = [
        (*row[:4], *(int(x) for x in row[4:])) for row in raw.all(_RAW_LOCATIONS, _window_params(community, window))
    ]
    return {"countries": msgspec.to_builtins(nest(rows))}


def raw_trends(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Allowed, blocked, travelers and bypasses per day, from geo_access_events."""
    rows = raw.all(_RAW_TRENDS, _window_params(community, window))
    return {"points": [[bucket.astimezone(UTC), *(int(x) for x in rest)] for bucket, *rest in rows]}


FUNNEL_STEPS, FUNNEL_WITHIN = ("view", "join", "post"), 86_400
_RAW_FUNNEL_EVENTS = """
SELECT user_id, activity_type, extract(epoch FROM time)::float8 FROM activity_events
WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s AND user_id IS NOT NULL
  AND activity_type = ANY(%(types)s)
"""


def raw_funnel(raw: Raw, community: int | None, window: Window) -> dict[str, Any]:
    """Members at each funnel step, from the community's events of the steps' types, computed member by member."""
    params = {**_window_params(community, window), "types": list(FUNNEL_STEPS)}
    return {"members": funnel_members(raw.all(_RAW_FUNNEL_EVENTS, params), FUNNEL_STEPS, FUNNEL_WITHIN)}


def _funnel_members(answer: Any) -> dict[str, Any]:
    return {"members": [step["members"] for step in answer["steps"]]}


def _today_rows(answer: Any) -> dict[str, Any]:
    keys = ("community_id", "events_today", "views_today", "joins_today", "unique_visitors_today")
    return {"rows": [[item[k] for k in keys] for item in answer]}


def _trend_points(answer: Any) -> dict[str, Any]:
    keys = ("attempts", "allowed", "blocked", "travelers", "bypasses")
    points = [[datetime.fromisoformat(p["bucket"]).astimezone(UTC), *(p[k] for k in keys)] for p in answer["points"]]
    return {"points": points}


def _as_is(answer: Any) -> Any:
    return answer


RawFigures = Callable[[Raw, int | None, Window], dict[str, Any]]
# Per kind of endpoint ("activity", "geo", "": no community): the communities asked about, warm-up and timed.
Draws = dict[str, tuple[list[int | None], list[int | None]]]


@dataclass(frozen=True)
class Endpoint:
    """A read endpoint, and how to compute its figures from the raw tables."""

    label: str
    path: str  # `{id}`: the community asked about
    communities: str  # whose communities are asked about: "activity", "geo" or "" (none)
    raw: RawFigures | None = None
    comparable: Callable[[Any], dict[str, Any]] = _as_is  # the endpoint's answer in the form `raw` returns
    # Goals beyond the one of every endpoint with a raw twin (its p95 below the raw figures'): a ceiling of its p95
    # in seconds, and its p95 below the columnar peer's (--peer).
    goal_p95: float | None = None
    peer_goal: bool = False


ENDPOINTS = (
    Endpoint("community report days=30", "/api/community-analytics/{id}/report/?days=30", "activity", raw_report,
             goal_p95=0.010, peer_goal=True),
    Endpoint("community report days=7", "/api/community-analytics/{id}/report/?days=7", "activity", raw_report),
    Endpoint("activity patterns days=30", "/api/community-analytics/{id}/activity-patterns/?days=30", "activity",
             raw_patterns, peer_goal=True),
    Endpoint(f"funnel {','.join(FUNNEL_STEPS)} days=30",
             f"/api/community-analytics/{{id}}/funnel/?steps={','.join(FUNNEL_STEPS)}&days=30&within={FUNNEL_WITHIN}",
             "activity", raw_funnel, _funnel_members),
    Endpoint("realtime (Redis only)", "/api/community-analytics/{id}/realtime/", "activity"),
    Endpoint(f"communities today limit={TOP_LIMIT}", f"/api/community-analytics/?limit={TOP_LIMIT}", "", raw_today,
             _today_rows, goal_p95=0.020),
    Endpoint("geo effectiveness days=30", "/api/geo-analytics/{id}/effectiveness/?days=30", "geo",
             raw_effectiveness),
    Endpoint("geo locations days=30", "/api/geo-analytics/{id}/locations/?days=30", "geo", raw_locations),
    Endpoint("geo trends days=7", "/api/geo-analytics/{id}/trends/?days=7", "geo", raw_trends, _trend_points),
)  # fmt: skip


# --- loading --------------------------------------------------------------------------------------------------


def _weighted(weights: Sequence[tuple[Any, int]]) -> list[Any]:
    """Each value repeated as often as its weight: an array to draw from with one random index."""
    return [value for value, weight in weights for _ in range(weight)]


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal whole parts."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def reset_database(conn: psycopg.Connection[Any], engine: Engine) -> None:
    """Empty the raw tables, sessions, presence and (postgres engine) the activity and geo rollups."""
    tables = [*RAW_TABLES, *DERIVED_TABLES]
    if engine == "postgres":
        tables += [f"{name}_mat" for name in ROLLUPS]
        conn.execute("DELETE FROM rollup_watermarks WHERE name = ANY(%s)", (list(ROLLUPS),))
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))


def hour_groups(start: datetime, rows: int) -> list[tuple[list[int], int]]:
    """The 24 hours after `start` as contiguous groups of about CHUNK rows each, with the rows of each group:
    (weighted hour offsets to draw from, rows). Rows follow the daily rhythm (HOUR_WEIGHTS, by UTC hour)."""
    weights = [HOUR_WEIGHTS[(start.hour + offset) % 24] for offset in range(24)]
    groups = min(24, max(1, math.ceil(rows / CHUNK)))
    total, bounds, running = sum(weights), [0], 0
    for offset, weight in enumerate(weights):  # cut where the running weight passes each group's share
        running += weight
        if len(bounds) < groups and running * groups >= total * len(bounds) and offset < 23:
            bounds.append(offset + 1)
    bounds.append(24)
    result, done = [], 0
    for lo, hi in itertools.pairwise(bounds):
        share = round(rows * sum(weights[:hi]) / total) - done
        done += share
        result.append((_weighted([(offset, weights[offset]) for offset in range(lo, hi)]), share))
    return result


def load(database_url: str, options: Options, progress: Progress, now: datetime) -> None:
    """Generate the data set inside PostgreSQL in time order, day slice by day slice (oldest first), at most about
    CHUNK rows per statement."""
    types = _weighted(list(ACTIVITY_WEIGHTS.items()))
    places = _weighted([(i + 1, place[4]) for i, place in enumerate(PLACES)])
    common = {"communities": options.communities, "users": options.users, "anonymous": ANONYMOUS}
    activity = {
        **common,
        "loyalty": LOYALTY,
        "types": types,
        "type_slots": len(types),
        "sections": list(SECTIONS),
        "section_slots": len(SECTIONS),
    }
    geo = {
        **common,
        "places": places,
        "place_slots": len(places),
        "countries": [p[0] for p in PLACES],
        "codes": [p[1] for p in PLACES],
        "regions": [p[2] for p in PLACES],
        "cities": [p[3] for p in PLACES],
        "block": [p[5] for p in PLACES],
    }
    total = options.events + options.geo_events
    message = f"loading {options.events:,} activity events and {options.geo_events:,} geo events"
    # A connection of its own: the sort memory of the load must not change the timed queries' settings.
    with connect(database_url) as conn, progress.bar(message, total) as advance:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SELECT setseed(%s)", (0.2026,))
        for day, (events, attempts) in enumerate(
            zip(_split(options.events, options.days), _split(options.geo_events, options.days), strict=True)
        ):
            start = now - timedelta(days=options.days - day)
            for hours, count in hour_groups(start, events):
                for part in _split(count, max(1, math.ceil(count / CHUNK))):
                    if part:
                        params = {**activity, "slice": start, "hours": hours, "hour_slots": len(hours)}
                        params |= {"count": part, "visits": part // 4 + 16}
                        _insert(conn, _LOAD_ACTIVITY, params, part, "activity_events")
                        advance(part)
            for hours, count in hour_groups(start, attempts):
                for part in _split(count, max(1, math.ceil(count / CHUNK))):
                    if part:
                        params = {**geo, "slice": start, "hours": hours, "hour_slots": len(hours), "count": part}
                        _insert(conn, _LOAD_GEO, params, part, "geo_access_events")
                        advance(part)


def _insert(conn: psycopg.Connection[Any], query: str, params: dict[str, Any], count: int, table: str) -> None:
    cur = conn.execute(query, params)
    if cur.rowcount != count:
        raise BenchError(f"the load put {cur.rowcount:,} rows into {table} instead of {count:,}")


def refresh_all(conn: psycopg.Connection[Any], engine: Engine) -> None:
    """Note the whole loaded range as changed, as the ingest worker would, and refresh once: sessions and (postgres
    engine) the rollup tables; on timescaledb, the continuous aggregates too."""
    conn.execute(
        "INSERT INTO rollup_invalidations (source, lo, hi) "
        "SELECT 'activity', min(time), max(time) FROM activity_events HAVING count(*) > 0 "
        "UNION ALL SELECT 'geo', min(time), max(time) FROM geo_access_events HAVING count(*) > 0"
    )
    done = refresh(conn, engine)
    if done.skipped:
        raise BenchError("another refresh holds the rollup lock; stop the worker that runs refresh_rollups")
    if engine == "timescaledb":  # untested here: the machines of this project have no Timescale-License build
        for name in ROLLUPS:
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (name,))


def rollup_relations(engine: Engine) -> list[str]:
    """The relations holding the materialized rollups."""
    return [f"{name}_mat" for name in ROLLUPS] if engine == "postgres" else list(ROLLUPS)


def row_counts(conn: psycopg.Connection[Any], relations: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Rows and on-disk bytes (with indexes) of each relation."""
    counts = {}
    for name in relations:
        query = sql.SQL("SELECT count(*), pg_total_relation_size(%s::regclass) FROM {}").format(sql.Identifier(name))
        row = conn.execute(query, (name,)).fetchone()
        assert row is not None
        counts[name] = (int(row[0]), int(row[1]))
    return counts


def size(n: int) -> str:
    """Bytes in human units."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def fill_redis(
    conn: psycopg.Connection[Any], client: redis.Redis, now: datetime, data_end: datetime, layout: Shards
) -> None:
    """Give Redis the live state the tracking path would hold: daily counters of the last 8 days, today's peaks,
    and presence and per-minute counters from the data set's last 15 minutes (shifted to end now)."""
    shift = now - data_end
    today = datetime.combine(now.date(), day_start(), UTC)
    pipe = client.pipeline(transaction=False)
    rows = conn.execute(
        "SELECT bucket, community_id, activity_type, events FROM activity_daily "
        "WHERE bucket >= %s AND community_id IS NOT NULL",
        (today - timedelta(days=8),),
    ).fetchall()
    for bucket, community, kind, events in rows:
        day = bucket.astimezone(UTC).strftime("%Y-%m-%d")
        shard = layout.of(community)
        pipe.hincrby(shard.counts_key(day, community), f"{kind}_count", events)
        pipe.hincrby(shard.counts_key(day, community), "events", events)
        pipe.hincrby(shard.counts_key(day), f"{kind}_count", events)
        pipe.expire(shard.counts_key(day), DAY_TTL)
        pipe.expire(shard.counts_key(day, community), DAY_TTL)
    recent = conn.execute(
        "SELECT community_id, user_id, max(time) FROM activity_events "
        "WHERE time > %s AND community_id IS NOT NULL AND user_id IS NOT NULL GROUP BY 1, 2",
        (data_end - timedelta(minutes=5),),
    ).fetchall()
    online: Counter[int] = Counter()
    for community, user, seen in recent:
        pipe.zadd(layout.of(community).presence_key(community), {str(user): (seen + shift).timestamp()})
        online[community] += 1
    for community in online:
        pipe.expire(layout.of(community).presence_key(community), 600)
        pipe.zadd(layout.of(community).online, {str(community): now.timestamp()})
    minutes = conn.execute(
        "SELECT community_id, floor(extract(epoch FROM time + %s) / 60)::bigint, count(*) FROM activity_events "
        "WHERE time > %s AND community_id IS NOT NULL GROUP BY 1, 2",
        (shift, data_end - timedelta(minutes=15)),
    ).fetchall()
    for community, minute, events in minutes:
        pipe.set(layout.of(community).minute_key(community, minute), events, ex=1200)
    members = conn.execute(
        "SELECT community_id, count(*) FROM community_members_daily WHERE bucket = %s AND community_id IS NOT NULL "
        "GROUP BY 1",
        (today,),
    ).fetchall()
    for community, count in members:
        peaks = layout.of(community).peak_key(now.strftime("%Y-%m-%d"))
        pipe.hset(peaks, str(community), max(online[community], math.ceil(count / 8)))
        pipe.expire(peaks, DAY_TTL)
    pipe.execute()


# --- measuring ------------------------------------------------------------------------------------------------


def draw(weights: dict[int, int], count: int, rng: random.Random) -> list[int]:
    """`count` communities: half drawn in proportion to their volume (the busy ones are asked about more), half
    uniformly among those with data (the long tail)."""
    ids = sorted(weights)
    volumes = [weights[i] for i in ids]
    return [rng.choices(ids, volumes)[0] if rng.random() < 0.5 else rng.choice(ids) for _ in range(count)]


def volumes(conn: psycopg.Connection[Any], query: str) -> dict[int, int]:
    """community -> volume, from a query answering such pairs."""
    return {int(community): int(volume) for community, volume in conn.execute(query).fetchall()}


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0-1) of `values`, linearly interpolated."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def window_of(answer: Any) -> Window:
    """The report window an endpoint answered for (its date_range)."""
    start = datetime.combine(date.fromisoformat(answer["date_range"]["start"]), day_start(), UTC)
    end = datetime.combine(date.fromisoformat(answer["date_range"]["end"]), day_start(), UTC) + timedelta(days=1)
    return Window(start=start, end=end, previous_start=start - (end - start))


def differences(expected: dict[str, Any], actual: dict[str, Any], source: str = "raw") -> list[str]:
    """The keys of `expected` (computed by `source`) whose values `actual` does not match, with both values."""
    problems = []
    for key, value in expected.items():
        got = actual.get(key)
        if got != value:
            problems.append(f"{key}: endpoint {_short(got)}, {source} {_short(value)}")
    return problems


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Result:
    """The timings of one endpoint and of its raw twin, and what the comparison found."""

    endpoint: Endpoint
    latencies: list[float] = field(default_factory=list)  # seconds
    raw_latencies: list[float] = field(default_factory=list)
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    peer_latencies: list[float] = field(default_factory=list)  # the columnar peer's (--peer), like raw_latencies
    peer_compared: int = 0
    peer_mismatches: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        """Median endpoint latency."""
        return percentile(self.latencies, 0.5)

    @property
    def p95(self) -> float:
        """95th percentile of the endpoint latency."""
        return percentile(self.latencies, 0.95)

    @property
    def ratio(self) -> float | None:
        """How many times the raw p95 exceeds the endpoint's p95 (None without a raw twin)."""
        if not self.raw_latencies:
            return None
        return percentile(self.raw_latencies, 0.95) / self.p95

    @property
    def peer_ratio(self) -> float | None:
        """How many times the peer's p95 exceeds the endpoint's p95 (None where the peer did not run)."""
        if not self.peer_latencies:
            return None
        return percentile(self.peer_latencies, 0.95) / self.p95

    @property
    def goal_met(self) -> bool | None:
        """Whether the endpoint's goals hold: its p95 below the raw figures' (where it has a raw twin) and below
        its ceiling (where it has one); None: no goal."""
        checks = [(self.ratio or 0.0) > 1] if self.raw_latencies else []
        if self.endpoint.goal_p95 is not None:
            checks.append(self.p95 < self.endpoint.goal_p95)
        return all(checks) if checks else None


def _path(endpoint: Endpoint, community: int | None) -> str:
    return endpoint.path.format(id=community)


def _get(client: KeepAlive, path: str) -> bytes:
    status, body = client.get(path)
    if status != 200:
        raise BenchError(f"GET {path} answered {status}: {body[:500]!r}")
    return body


def time_endpoint(client: KeepAlive, endpoint: Endpoint, warmup: Sequence[int | None], picks: Sequence[int | None],
                  result: Result) -> None:  # fmt: skip
    """Warm up, then time each request of `picks` in turn."""
    for community in warmup:
        _get(client, _path(endpoint, community))
    for community in picks:
        path = _path(endpoint, community)
        start = time.perf_counter()
        status, body = client.get(path)
        result.latencies.append(time.perf_counter() - start)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {body[:500]!r}")


def time_raw(client: KeepAlive, raw: Raw, endpoint: Endpoint, communities: Sequence[int | None],
             warmup: int, result: Result) -> None:  # fmt: skip
    """For each community: ask the endpoint (untimed), compute the same figures from the raw tables over the
    window it answered for (timed, except the first `warmup`), and compare."""
    assert endpoint.raw is not None
    twin = partial(endpoint.raw, raw)
    result.compared += time_twin(client, endpoint, twin, communities, warmup, result.raw_latencies, result.mismatches)


def time_twin(client: KeepAlive, endpoint: Endpoint, twin: Twin, communities: Sequence[int | None], warmup: int,
              latencies: list[float], mismatches: list[str], source: str = "raw") -> int:  # fmt: skip
    """For each community: ask the endpoint (untimed), compute its figures with `twin` (`source`) over the window
    it answered for (timed into `latencies`, except the first `warmup`), and note into `mismatches` where they
    differ; the number of answers compared."""
    for i, community in enumerate(communities):
        for _attempt in range(3):  # the overview's day is today's: redo if the UTC day changes in between
            before = datetime.now(UTC).date()
            answer = msgspec.json.decode(_get(client, _path(endpoint, community)))
            window = window_of(answer) if isinstance(answer, dict) else Window.last(0)
            start = time.perf_counter()
            expected = twin(community, window)
            elapsed = time.perf_counter() - start
            if datetime.now(UTC).date() == before:
                break
        if i >= warmup:
            latencies.append(elapsed)
        for problem in differences(expected, endpoint.comparable(answer), source):
            where = "" if community is None else f" community {community}"
            mismatches.append(f"{endpoint.label}{where} ({window.date_range.start} to "
                              f"{window.date_range.end}): {problem}")  # fmt: skip
    return len(communities)


def ms(seconds: float) -> str:
    """A latency in readable units."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.1f} ms"


def times(ratio: float) -> str:
    """A ratio as `240x`."""
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


# --- the columnar peer (--peer clickhouse) and two sizes (--growth) ----------------------------------------------

PEER_WARMUP = 5  # untimed peer computations per endpoint before the timed ones
GROWTH_SMALL = 1_000_000  # activity events of --growth's first size (--events // 10 when --events is not larger)
GROWTH_GOAL = 1.5  # the most an endpoint's p95 may grow from --growth's first size to the --events size

Twin = Callable[[int | None, Window], dict[str, Any]]  # an endpoint's figures for a community over a window
PeerFigures = Callable[[clickhouse.ClickHouse, int | None, Window], dict[str, Any]]
PEER_TWINS: dict[RawFigures, PeerFigures] = {  # the peer's computation of what each raw one computes
    raw_report: clickhouse.report,
    raw_patterns: clickhouse.patterns,
    raw_today: clickhouse.today,
    raw_effectiveness: clickhouse.effectiveness,
    raw_locations: clickhouse.locations,
    raw_trends: clickhouse.trends,
}

_PEAK = """
SELECT max(peak_online) FROM community_presence_daily
WHERE community_id = %(community)s AND day >= %(start_day)s AND day < %(end_day)s
"""


def peak_online(raw: Raw, community: int | None, window: Window) -> int:
    """The report's peak_online_members from where raw_report takes it: the persisted daily presence and Redis."""
    params = {"community": community, "start_day": window.start.date(), "end_day": window.end.date()}
    (stored,) = raw.one(_PEAK, params)
    return max(int(stored or 0), live_peak(raw, community, window))


def time_peer(client: KeepAlive, peer: clickhouse.ClickHouse, endpoint: Endpoint, communities: Sequence[int | None],
              warmup: int, result: Result) -> None:  # fmt: skip
    """time_raw with the peer computing the figures from its copy of the raw tables."""
    assert endpoint.raw is not None
    twin = partial(PEER_TWINS[endpoint.raw], peer)
    result.peer_compared += time_twin(
        client, endpoint, twin, communities, warmup, result.peer_latencies, result.peer_mismatches, clickhouse.NAME
    )


def growth_options(options: Options) -> Options:
    """The first size of --growth: GROWTH_SMALL activity events (--events // 10 when --events is not larger), the
    geo events scaled alike."""
    events = GROWTH_SMALL if options.events > GROWTH_SMALL else max(1, options.events // 10)
    return replace(options, events=events, geo_events=max(1, round(options.geo_events * events / options.events)))


def growth_table(small: Options, large: Options, before: Sequence[Result], after: Sequence[Result]) -> str:
    """Each endpoint's p95 at both sizes of --growth, how much it grew, and the verdict."""
    header = (
        f"growth: the same benchmark at {small.events:,} and at {large.events:,} activity events (geo events "
        f"{small.geo_events:,} and {large.geo_events:,}), on the same servers, emptied in between"
    )
    lines = [["endpoint", f"p95 at {small.events:,}", f"p95 at {large.events:,}", "large/small", "goal", ""]]
    for b, a in zip(before, after, strict=True):
        ratio = a.p95 / b.p95
        verdict = "met" if ratio <= GROWTH_GOAL else "MISSED"
        lines.append([a.endpoint.label, ms(b.p95), ms(a.p95), f"{ratio:.2f}x", f"<= {GROWTH_GOAL}x", verdict])
    return render_table(header, lines, right={1, 2, 3})


# --- the run --------------------------------------------------------------------------------------------------


def run(settings: Settings, options: Options) -> int:
    """Run the query benchmark, print the table; 0 when every figure matched its raw twin, else 1 (130: stopped)."""

    def body(bench: Bench) -> int:
        if options.peer:
            clickhouse.require()  # before the long load
        idle = bench.check_idle()
        tables = ", ".join([*RAW_TABLES, *DERIVED_TABLES, "the activity and geo rollups"])
        urls = bench.start_servers(
            f"using DATABASE_URL: the bench TRUNCATEs {tables} there (before and after the run)!",
            "using REDIS_URL: the bench FLUSHes that Redis database (before and after the run)!",
            POSTGRES_OPTIONS,
        )
        return _benchmark(bench, options, urls, idle)

    return run_bench(settings, body, clean_external)


def clean_external(bench: Bench) -> None:
    """Leave a database or Redis the user gave us without the bench's data."""
    assert bench.urls is not None
    try:
        if bench.external_database:
            with connect(bench.urls[0]) as conn:
                reset_database(conn, detect_engine(conn))
        if bench.external_redis:
            flush_redis(bench.urls[1])
    except (psycopg.Error, redis.RedisError) as exc:
        print(f"analytics bench: could not clean up after the run: {exc}", file=sys.stderr)


def _benchmark(bench: Bench, options: Options, urls: tuple[str, str], idle: float | None) -> int:
    """Benchmark at the --events size (with --growth, at a smaller size first, then compare), on servers that are
    up; the exit code."""
    if not options.growth:
        return _one_size(bench, options, urls, idle)[0]
    small = growth_options(options)
    bench.progress.note(
        f"growth: first {small.events:,} activity and {small.geo_events:,} geo events, then {options.events:,} and "
        f"{options.geo_events:,}"
    )
    small_code, before = _one_size(bench, small, urls, idle)
    print(flush=True)
    code, after = _one_size(bench, options, urls, idle)
    print("\n" + growth_table(small, options, before, after), flush=True)
    return max(small_code, code)


def _one_size(bench: Bench, options: Options, urls: tuple[str, str], idle: float | None) -> tuple[int, list[Result]]:
    """Load, refresh, serve, measure and report, on servers that are up; the exit code and the results."""
    progress = bench.progress
    database_url, redis_url = urls
    with connect(database_url, wait=bench.settings.db_wait) as conn:
        with progress.step("migrating"):
            engine = detect_engine(conn)
            migrate(conn, engine)
        if engine != "postgres":
            progress.warn(f"engine {engine}: this path of the bench is untested")
        reset_database(conn, engine)
        flush_redis(redis_url)
        now = datetime.now(UTC)
        start = time.perf_counter()
        load(database_url, options, progress, now)
        load_seconds = time.perf_counter() - start
        with progress.step("refreshing: rollups and sessions from one invalidation of the whole range"):
            start = time.perf_counter()
            refresh_all(conn, engine)
            refresh_seconds = time.perf_counter() - start
        conn.execute(_PRESENCE, {"today": datetime.combine(now.date(), day_start(), UTC)})
        relations = [*RAW_TABLES, *rollup_relations(engine), "sessions", "sessions_daily", "community_presence_daily"]
        with progress.step("VACUUM (ANALYZE) of the tables, CHECKPOINT"):
            start = time.perf_counter()
            vacuumed = [*RAW_TABLES, "sessions", "sessions_daily", "community_presence_daily"]
            if engine == "postgres":
                vacuumed += rollup_relations(engine)
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, vacuumed))))
            # No checkpoint of the load's writes may land in a timed span (skipped where the role may not).
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")
            vacuum_seconds = time.perf_counter() - start
        counts = row_counts(conn, relations)
        progress.note("rows: " + ", ".join(f"{name} {n:,} ({size(b)})" for name, (n, b) in counts.items()))
        client = redis.Redis.from_url(redis_url)
        try:
            with progress.step("live state in Redis"):
                fill_redis(conn, client, datetime.now(UTC), now, SINGLE)
            activity = volumes(
                conn, "SELECT community_id, sum(events) FROM activity_daily WHERE community_id IS NOT NULL GROUP BY 1"
            )
            geo = volumes(conn, "SELECT community_id, sum(attempts) FROM geo_daily GROUP BY 1")
            if not activity or not geo:
                raise BenchError("the data set has no community with activity or geo events")
            draws = draw_communities({"activity": activity, "geo": geo}, options.samples)
            measured = _measure(bench, options, urls, Raw(conn, client), draws)
        finally:
            client.close()
        with progress.step("distinct members: the member-days and monthly bitmaps"):
            warmup, picks = draws["activity"]
            timed = [c for c in [*warmup[:RAW_WARMUP], *picks] if c is not None]
            structures = members.measure(conn, timed, RAW_WARMUP, datetime.now(UTC))
        settings_row = conn.execute(
            "SELECT current_setting('shared_buffers'), current_setting('work_mem'), "
            "current_setting('max_parallel_workers_per_gather')"
        ).fetchone()
    assert settings_row is not None
    code = _report(
        bench, options, engine, urls, idle, measured, counts, (load_seconds, refresh_seconds, vacuum_seconds),
        settings_row,
    )  # fmt: skip
    print("\n" + members_table(structures), flush=True)
    if structures.mismatches:
        print(f"analytics bench: the bitmaps' counts differ: {structures.mismatches[0]}", file=sys.stderr)
        code = 1
    return code, measured[0]


def draw_communities(volumes: dict[str, dict[int, int]], samples: int) -> Draws:
    """The communities each kind of endpoint is asked about (warm-up ones, timed ones), drawn from `volumes`'
    communities of that kind (`draw`); none for the endpoints of no community ("")."""
    rng = random.Random(SEED)  # noqa: S311 - which communities to ask about, nothing secret
    draws: Draws = {"": ([None] * WARMUP_REQUESTS, [None] * samples)}
    for source, weights in volumes.items():
        draws[source] = (list(draw(weights, WARMUP_REQUESTS, rng)), list(draw(weights, samples, rng)))
    return draws


def _measure(
    bench: Bench, options: Options, urls: tuple[str, str], raw: Raw, draws: Draws
) -> tuple[list[Result], OtherLoad, clickhouse.ClickHouse | None]:
    """Serve the app, time every endpoint, then every raw twin, then (--peer) the peer's (comparing the figures);
    the results and the peer."""
    progress = bench.progress
    auth = credentials(bench.settings)  # every endpoint authenticates; the reports need staff
    app = start_service(bench, urls, auth)
    port = app.port
    client = KeepAlive(port, headers=auth.header)
    load = OtherLoad()
    results = [Result(endpoint) for endpoint in ENDPOINTS]
    try:
        for result in results:
            endpoint = result.endpoint
            warmup, picks = draws[endpoint.communities]
            with progress.step(f"{endpoint.label}: {options.samples} requests"), load.watch(endpoint.label, progress):
                time_endpoint(client, endpoint, warmup, picks, result)
            progress.note(f"  p50 {ms(result.p50)}, p95 {ms(result.p95)}")
        for result in results:
            endpoint = result.endpoint
            if endpoint.raw is None:
                continue
            warmup, picks = draws[endpoint.communities]
            communities = [*warmup[:RAW_WARMUP], *picks[: options.raw_count]]
            label = f"raw {endpoint.label}"
            with progress.step(f"{label}: {options.raw_count} computations"), load.watch(label, progress):
                time_raw(client, raw, endpoint, communities, RAW_WARMUP, result)
            raw_p50, raw_p95 = percentile(result.raw_latencies, 0.5), percentile(result.raw_latencies, 0.95)
            progress.note(f"  p50 {ms(raw_p50)}, p95 {ms(raw_p95)}; {len(result.mismatches)} mismatches")
        peer = _measure_peer(bench, options, client, raw, results, draws, load) if options.peer else None
    finally:
        client.close()
    app.stop()
    bench.apps.remove(app)
    return results, load, peer


def _measure_peer(
    bench: Bench,
    options: Options,
    client: KeepAlive,
    raw: Raw,
    results: list[Result],
    draws: Draws,
    load: OtherLoad,
) -> clickhouse.ClickHouse:
    """Copy the raw tables into the peer, then time its figures of each endpoint it has a twin for, on the same
    communities (comparing them with the endpoint's); the peer (closed by then)."""
    progress = bench.progress
    limits = clickhouse.Limits(SESSION_GAP, TOP_LIMIT, BLOCKED_LIMIT)
    with clickhouse.embedded(raw.conn, bench.directory, partial(peak_online, raw), limits, progress) as peer:
        for result in results:
            endpoint = result.endpoint
            if endpoint.raw is None or endpoint.raw not in PEER_TWINS:
                continue
            warmup, picks = draws[endpoint.communities]
            label = f"{clickhouse.NAME} {endpoint.label}"
            with progress.step(f"{label}: {len(picks)} computations"), load.watch(label, progress):
                time_peer(client, peer, endpoint, [*warmup[:PEER_WARMUP], *picks], PEER_WARMUP, result)
            p50, p95 = percentile(result.peer_latencies, 0.5), percentile(result.peer_latencies, 0.95)
            progress.note(f"  p50 {ms(p50)}, p95 {ms(p95)}; {len(result.peer_mismatches)} mismatches")
    return peer


def _cells(r: Result, load: OtherLoad, peer: bool = False) -> list[str]:
    """One endpoint's row of the table: its latencies, the raw computation's, the ratio, (`peer`: a peer ran) the
    peer's latencies and ratio, and the verdict."""
    raw_cells = ["-", "-", "-"]
    if r.raw_latencies:
        raw_p50, raw_p95 = percentile(r.raw_latencies, 0.5), percentile(r.raw_latencies, 0.95)
        raw_cells = [ms(raw_p50), ms(raw_p95), times(r.ratio or 0.0)]
    peer_cells = ["-", "-", "-"] if peer else []
    if peer and r.peer_latencies:
        peer_p50, peer_p95 = percentile(r.peer_latencies, 0.5), percentile(r.peer_latencies, 0.95)
        peer_cells = [ms(peer_p50), ms(peer_p95), times(r.peer_ratio or 0.0)]
    verdict = "" if r.goal_met is None else "met" if r.goal_met else "MISSED"
    if r.mismatches or r.peer_mismatches:
        verdict = f"{verdict} MISMATCH".lstrip()
    if load.disturbed(r.endpoint.label, f"raw {r.endpoint.label}", f"{clickhouse.NAME} {r.endpoint.label}"):
        verdict = f"{verdict} (disturbed)".lstrip()
    return [r.endpoint.label, ms(r.p50), ms(r.p95), *raw_cells, *peer_cells, goal_text(r), verdict]


def goal_text(r: Result) -> str:
    """An endpoint's goals as the table states them."""
    goals = ["< raw"] if r.raw_latencies else []
    if r.endpoint.goal_p95 is not None:
        goals.append(f"< {ms(r.endpoint.goal_p95)}")
    return "p95 " + ", ".join(goals) if goals else ""


def _correctness(mismatches: list[str], compared: int, against: str = "the raw figures") -> list[str]:
    """The notes on the endpoints' answers against the raw figures, or others (the first 20 differences)."""
    if not mismatches:
        return [f"correctness: {compared} endpoint answers compared with {against}: all equal"]
    notes = [f"!!! correctness: {len(mismatches)} of {compared} answers differ from {against}:"]
    notes += [f"!!!   {m}" for m in mismatches[:20]]
    if len(mismatches) > 20:
        notes.append(f"!!!   ... and {len(mismatches) - 20} more")
    return notes


def _report(
    bench: Bench,
    options: Options,
    engine: Engine,
    urls: tuple[str, str],
    idle: float | None,
    measured: tuple[list[Result], OtherLoad, clickhouse.ClickHouse | None],
    counts: dict[str, tuple[int, int]],
    seconds: tuple[float, float, float],
    server: tuple[Any, ...],
) -> int:
    """Print the table and the notes; the exit code."""
    results, load, peer = measured
    peer_titles = [f"{clickhouse.NAME} p50", f"{clickhouse.NAME} p95", f"vs {clickhouse.NAME} (p95)"] if peer else []
    lines = [["endpoint", "p50", "p95", "raw p50", "raw p95", "raw/endpoint (p95)", *peer_titles, "goal", ""]]
    lines += [_cells(r, load, peer is not None) for r in results]
    load_s, refresh_s, vacuum_s = seconds
    rows = ", ".join(f"{name} {n:,} ({size(b)})" for name, (n, b) in counts.items())
    header = "\n".join(
        [
            f"query benchmark: {options.events:,} activity events, {options.geo_events:,} geo events, "
            f"{options.days} days, {options.communities:,} communities, {options.users:,} users (engine {engine})",
            f"load {load_s:.0f} s, refresh (rollups + sessions) {refresh_s:.0f} s, VACUUM (ANALYZE) + CHECKPOINT "
            f"{vacuum_s:.0f} s; rows: {rows}",
        ]
    )
    print(render_table(header, lines, right=set(range(1, 6 + len(peer_titles)))))
    mismatches = [m for r in results for m in r.mismatches]
    compared = sum(r.compared for r in results)
    missed = [r.endpoint.label for r in results if r.goal_met is False]
    notes = [
        "",
        "goals: every endpoint's p95 below the same figures' from the raw tables, "
        + ", ".join(f"{r.endpoint.label} p95 < {ms(r.endpoint.goal_p95)}" for r in results if r.endpoint.goal_p95)
        + ": "
        + (f"MISSED by {', '.join(missed)}" if missed else "met"),
        f"endpoint: {options.samples} sequential GETs each over one keep-alive connection after {WARMUP_REQUESTS} "
        "warm-up ones; `analytics serve`, 1 uvicorn worker, on the same machine; each GET carries a staff service "
        "JWT (HS256) that the authentication middleware verifies (cached per process after the first request)",
        f"raw: the same figures by plain SQL on activity_events / geo_access_events (community + time btree index, "
        f"BRIN on time), SQL time only (no HTTP), {options.raw_count} each after {RAW_WARMUP} warm-up ones, for "
        "the communities the endpoint was timed on (the first of them when fewer); visits sessionized with window "
        "functions (30-minute gap); the report's peak comes from the persisted daily presence and Redis, as no raw "
        "table holds it",
        "communities asked about: half drawn in proportion to their events, half uniformly among those with data "
        f"(seed {SEED})",
    ]
    notes += _correctness(mismatches, compared)
    peer_mismatches = [m for r in results for m in r.peer_mismatches]
    if peer is not None:
        notes += _peer_notes(options, peer, results)
        notes += _correctness(peer_mismatches, sum(r.peer_compared for r in results), "ClickHouse's figures")
    notes.append(machine(*urls) + f"; shared_buffers {server[0]}, work_mem {server[1]}, "
                 f"max_parallel_workers_per_gather {server[2]}")  # fmt: skip
    notes.append(load.summary())
    idle_text = "unknown" if idle is None else f"{idle:.0%}"
    notes.append(
        f"wall time: {time.monotonic() - bench.wall:.0f} s; {cores()} cores; "
        f"CPU idle in the second before the run: {idle_text}"
    )
    print("\n".join(notes), flush=True)
    if mismatches:
        print(f"analytics bench: {len(mismatches)} endpoint answers differ from the raw figures", file=sys.stderr)
    if peer_mismatches:
        print(f"analytics bench: {len(peer_mismatches)} endpoint answers differ from ClickHouse's", file=sys.stderr)
    return 1 if mismatches or peer_mismatches else 0


def members_table(m: members.MemberStructures) -> str:
    """The two structures for distinct members, side by side, with the bitmaps' cost at ingest."""
    header = (
        f"distinct members of the 30-day report and the 30 days before it (its unique visitors and retention), "
        f"exact on both structures, SQL time only, the same {len(m.bitmaps)} communities as the report"
    )
    lines = [
        ["structure", "p50", "p95", "rows read (busiest)", "rows", "size"],
        ["member-days (community_members_daily, what the report reads)", ms(percentile(m.member_days, 0.5)),
         ms(percentile(m.member_days, 0.95)), f"{m.rows_read[0]:,}", "", ""],
        ["monthly bitmaps (member, community, month: active days as bits)", ms(percentile(m.bitmaps, 0.5)),
         ms(percentile(m.bitmaps, 0.95)), f"{m.rows_read[1]:,}", f"{m.bitmap_rows:,}", size(m.bitmap_bytes)],
    ]  # fmt: skip
    equal = "yes" if not m.mismatches else f"NO ({len(m.mismatches)} differ)"
    notes = [
        f"counts equal on both: {equal}; cost at ingest of the bitmaps: built from every member-day in "
        f"{m.build_seconds:.1f} s, one day's member-days added (as a refresh would) in {m.day_seconds * 1000:.0f} ms"
    ]
    return render_table(header, lines, right={1, 2, 3, 4, 5}) + "\n" + "\n".join(notes)


def _peer_notes(options: Options, peer: clickhouse.ClickHouse, results: list[Result]) -> list[str]:
    """The notes on the peer: what it is, how it was loaded and timed, whether its answers equal ours, the goal."""
    rows = ", ".join(f"{table} {n:,}" for table, n in peer.rows.items())
    differ = sum(len(r.peer_mismatches) for r in results)
    equal = "yes" if not differ else f"NO ({differ} differ)"
    against = [r for r in results if r.peer_latencies and r.endpoint.peer_goal]
    met = bool(against) and all(r.p95 < percentile(r.peer_latencies, 0.95) for r in against)
    compared = ", ".join(f"{r.endpoint.label} {ms(r.p95)} vs {ms(percentile(r.peer_latencies, 0.95))}" for r in against)
    return [
        f"{clickhouse.NAME}: {peer.version}, embedded in the bench's process: it reads its own MergeTree tables "
        "(ORDER BY community_id, time; minmax index on time) in-process, no HTTP, no network; loaded from "
        f"PostgreSQL in {peer.load_seconds:.1f} s (rows: {rows}; not part of any ratio); the same figures by "
        "ClickHouse SQL (uniqExact for distinct members, visits sessionized with arrays, 30-minute gap; the report's "
        f"peak from PostgreSQL's persisted presence and Redis, as for raw), SQL time only, {options.samples} each "
        f"after {PEER_WARMUP} warm-up ones, on the same communities as the endpoint; its answers equal ours: {equal}",
        f"goal: our 30-day report and activity patterns p95 below ClickHouse's: {'met' if met else 'MISSED'} "
        f"({compared})",
    ]

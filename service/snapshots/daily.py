"""The DailyAnalytics snapshot: one row of platform-wide figures per UTC day, computed from the rollups.

The periodic task `update_daily_analytics` rewrites today's row and yesterday's (whose figures kept changing
until its last minute, and whose late events and sessions arrive after midnight). Every figure is recomputed
from scratch each run, so a rerun yields the same row: only `updated_at` moves.

Where each figure comes from (all days are UTC):

- total_users: distinct members with any activity on or before the day (community_members_daily, every
  community and the platform level); active_users: the same, on the day alone.
- new_registrations, community_views / community_joins (events with a community), content_views, new_posts,
  new_comments, total_likes, total_shares: activity_daily events of that type;
  content_interactions = like + comment + share; total_interactions = post + comment + like + share + message.
- average_online_members: the sum over communities of their average online count of the day, so the platform's
  average online members; peak_community_activity: the highest peak of any one community
  (community_presence_daily, written by update_community_analytics).
- geo_*: geo_daily attempts of the day; traveler_access_count: those flagged as travelers.
- avg_session_duration (minutes, 2 decimals) and bounce_rate (% of sessions with exactly one event, half up to 1
  decimal): the sessions started that day, in any community or at platform level.
- api_requests and avg_response_time (ms, 2 decimals): the day's Redis hash of the request-tracking middleware
  (`requests_key`), 0 while it has none.
- error_count: error logs created that day.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from service.core.task_context import TaskContext
from service.core.windows import midnight, percent
from service.live.client import SyncRedis
from service.live.keys import requests_key

# Every figure of one day in one round trip. Each CTE aggregates without GROUP BY, so each yields exactly one row
# and the cross join at the end is one row too, zeros included.
_FIGURES = """
WITH activity AS (
    SELECT
        coalesce(sum(events) FILTER (WHERE activity_type = 'register'), 0)::bigint AS new_registrations,
        coalesce(sum(events) FILTER (WHERE activity_type = 'view' AND community_id IS NOT NULL), 0)::bigint
            AS community_views,
        coalesce(sum(events) FILTER (WHERE activity_type = 'join' AND community_id IS NOT NULL), 0)::bigint
            AS community_joins,
        coalesce(sum(events) FILTER (WHERE activity_type = 'content_view'), 0)::bigint AS content_views,
        coalesce(sum(events) FILTER (WHERE activity_type = 'post'), 0)::bigint AS new_posts,
        coalesce(sum(events) FILTER (WHERE activity_type = 'comment'), 0)::bigint AS new_comments,
        coalesce(sum(events) FILTER (WHERE activity_type = 'like'), 0)::bigint AS total_likes,
        coalesce(sum(events) FILTER (WHERE activity_type = 'share'), 0)::bigint AS total_shares,
        coalesce(sum(events) FILTER (WHERE activity_type IN ('like', 'comment', 'share')), 0)::bigint
            AS content_interactions,
        coalesce(sum(events) FILTER (WHERE activity_type IN ('post', 'comment', 'like', 'share', 'message')), 0)::bigint
            AS total_interactions
    FROM activity_daily
    WHERE bucket >= %(start)s AND bucket < %(end)s
), members AS (
    SELECT count(DISTINCT user_id) AS total_users,
           count(DISTINCT user_id) FILTER (WHERE bucket >= %(start)s) AS active_users
    FROM community_members_daily
    WHERE bucket < %(end)s
), presence AS (
    SELECT coalesce(sum(average_online), 0)::double precision AS average_online_members,
           coalesce(max(peak_online), 0)::bigint AS peak_community_activity
    FROM community_presence_daily
    WHERE day = %(day)s
), geo AS (
    SELECT coalesce(sum(attempts), 0)::bigint AS geo_access_attempts,
           coalesce(sum(attempts) FILTER (WHERE access_result = 'blocked'), 0)::bigint AS geo_blocked_attempts,
           coalesce(sum(attempts) FILTER (WHERE access_result = 'allowed'), 0)::bigint AS geo_allowed_access,
           coalesce(sum(attempts) FILTER (WHERE is_traveler), 0)::bigint AS traveler_access_count
    FROM geo_daily
    WHERE bucket >= %(start)s AND bucket < %(end)s
), visits AS (
    SELECT count(*) AS sessions,
           count(*) FILTER (WHERE events = 1) AS bounces,
           coalesce(round(avg(extract(epoch FROM ended_at - started_at)) / 60, 2), 0)::double precision
               AS avg_session_duration
    FROM sessions
    WHERE started_at >= %(start)s AND started_at < %(end)s
), errors AS (
    SELECT count(*) AS error_count
    FROM error_logs
    WHERE created_at >= %(start)s AND created_at < %(end)s
)
SELECT * FROM activity, members, presence, geo, visits, errors
"""

_UPSERT = """
INSERT INTO daily_analytics (
    date, total_users, active_users, new_registrations, community_views, community_joins, average_online_members,
    peak_community_activity, geo_access_attempts, geo_blocked_attempts, geo_allowed_access, traveler_access_count,
    content_views, content_interactions, new_posts, new_comments, total_likes, total_shares, total_interactions,
    avg_session_duration, bounce_rate, api_requests, avg_response_time, error_count
) VALUES (
    %(date)s, %(total_users)s, %(active_users)s, %(new_registrations)s, %(community_views)s, %(community_joins)s,
    %(average_online_members)s, %(peak_community_activity)s, %(geo_access_attempts)s, %(geo_blocked_attempts)s,
    %(geo_allowed_access)s, %(traveler_access_count)s, %(content_views)s, %(content_interactions)s, %(new_posts)s,
    %(new_comments)s, %(total_likes)s, %(total_shares)s, %(total_interactions)s, %(avg_session_duration)s,
    %(bounce_rate)s, %(api_requests)s, %(avg_response_time)s, %(error_count)s
)
ON CONFLICT (date) DO UPDATE SET
    total_users = excluded.total_users,
    active_users = excluded.active_users,
    new_registrations = excluded.new_registrations,
    community_views = excluded.community_views,
    community_joins = excluded.community_joins,
    average_online_members = excluded.average_online_members,
    peak_community_activity = excluded.peak_community_activity,
    geo_access_attempts = excluded.geo_access_attempts,
    geo_blocked_attempts = excluded.geo_blocked_attempts,
    geo_allowed_access = excluded.geo_allowed_access,
    traveler_access_count = excluded.traveler_access_count,
    content_views = excluded.content_views,
    content_interactions = excluded.content_interactions,
    new_posts = excluded.new_posts,
    new_comments = excluded.new_comments,
    total_likes = excluded.total_likes,
    total_shares = excluded.total_shares,
    total_interactions = excluded.total_interactions,
    avg_session_duration = excluded.avg_session_duration,
    bounce_rate = excluded.bounce_rate,
    api_requests = excluded.api_requests,
    avg_response_time = excluded.avg_response_time,
    error_count = excluded.error_count,
    updated_at = now()
"""


def request_figures(client: SyncRedis, day: date) -> tuple[int, float]:
    """(API requests, mean response time in ms rounded to 2 decimals) of one day; zeros while nothing counted them."""
    count, duration_sum = client.hmget(requests_key(day), ["count", "duration_ms_sum"])
    requests = int(count) if count is not None else 0
    if not requests or duration_sum is None:
        return requests, 0.0
    return requests, round(float(duration_sum) / requests, 2)


def daily_figures(conn: psycopg.Connection[Any], client: SyncRedis, day: date) -> dict[str, Any]:
    """Every field of the DailyAnalytics row of `day`, by column name."""
    start = midnight(day)
    params = {"day": day, "start": start, "end": start + timedelta(days=1)}
    with conn.cursor(row_factory=dict_row) as cur:
        figures = cur.execute(_FIGURES, params).fetchone()
    assert figures is not None  # aggregates without GROUP BY always yield a row
    sessions, bounces = figures.pop("sessions"), figures.pop("bounces")
    api_requests, avg_response_time = request_figures(client, day)
    bounce_rate = percent(bounces, sessions)
    return {
        **figures,
        "date": day,
        "bounce_rate": 0.0 if bounce_rate is None else bounce_rate,  # the row's columns are numbers, never null
        "api_requests": api_requests,
        "avg_response_time": avg_response_time,
    }


def update_daily_analytics(context: TaskContext) -> dict[str, Any]:
    """The periodic task `update_daily_analytics`: upsert yesterday's and today's rows."""
    today = context.now.astimezone(UTC).date()
    written: dict[str, dict[str, Any]] = {}
    # One transaction: a run that fails half-way leaves both rows as the previous run wrote them.
    with context.conn.transaction():
        for day in (today - timedelta(days=1), today):
            figures = daily_figures(context.conn, context.redis, day)
            context.conn.execute(_UPSERT, figures)
            written[day.isoformat()] = {
                key: figures[key] for key in ("active_users", "total_interactions", "api_requests", "error_count")
            }
    return {"days": written}

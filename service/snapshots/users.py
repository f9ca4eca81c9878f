"""The UserAnalytics snapshot: one row per user and UTC day, computed set-based for all of the day's users at once.

The periodic task `update_user_analytics` rewrites the rows of today and of yesterday (whose late events and
sessions arrive after midnight), one INSERT ... SELECT ... ON CONFLICT per day. Every figure is recomputed from
scratch, so a rerun yields the same rows: only `last_calculated` moves.

A day's users are those who acted that day (any activity event, or a geo access decision) and those whom
someone else's like, follow or unfollow named that day, so that likes received and followers gained are not
lost on the days their receiver stayed away.

Events that target another user (the convention of the platform's clients): a `like`, `follow` or `unfollow`
event names the user it is about in `metadata.target_user_id` (a JSON number or a string of digits). The actor
is `user_id` as always; the target's row counts it as `total_likes_received`, `followers_gained` or
`followers_lost`. Events without a usable target count only for their actor.

The other figures of a day:

- page_views: `page_view` events; actions_performed: every event but view, page_view, content_view,
  session_start, session_end and recommendation_shown (what the user did rather than looked at);
  communities_viewed: distinct communities with a `view`; communities_joined: `join` events with a community;
  community_interactions: post, comment, like, share and message events with a community.
- total_posts, total_comments, total_likes_given, recommendations_shown, recommendations_clicked: event counts.
- geo_restricted_attempts: the user's blocked geo access decisions; travel_detected: any of them flagged as a
  traveler; locations_accessed_from: the distinct {"country_code", "city"} of them where a place is known,
  ordered by country code then city (nulls last), so reruns write the same JSON.
- total_sessions, total_time_spent and avg_session_duration (minutes, 2 decimals): the `sessions` started that
  day, in any community or at platform level; community_online_time: the summed length of those in a community.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import psycopg

from service.core.task_context import TaskContext
from service.core.windows import midnight

# Raw events are read for one day only, by time range (the time index, or the hypertable's chunks, bound it).
# A target id that is not a plain positive integer is ignored rather than failing the whole day on a bad cast.
_UPSERT = """
WITH day_events AS (
    SELECT user_id, community_id, activity_type,
           CASE WHEN metadata ->> 'target_user_id' ~ '^[0-9]{1,18}$'
                THEN (metadata ->> 'target_user_id')::bigint END AS target_user_id
    FROM activity_events
    WHERE time >= %(start)s AND time < %(end)s
), acted AS (
    SELECT user_id,
           count(*) FILTER (WHERE activity_type = 'page_view') AS page_views,
           count(*) FILTER (WHERE activity_type NOT IN ('view', 'page_view', 'content_view', 'session_start',
                                                        'session_end', 'recommendation_shown')) AS actions_performed,
           count(DISTINCT community_id) FILTER (WHERE activity_type = 'view') AS communities_viewed,
           count(*) FILTER (WHERE activity_type = 'join' AND community_id IS NOT NULL) AS communities_joined,
           count(*) FILTER (WHERE community_id IS NOT NULL
                              AND activity_type IN ('post', 'comment', 'like', 'share', 'message'))
               AS community_interactions,
           count(*) FILTER (WHERE activity_type = 'post') AS total_posts,
           count(*) FILTER (WHERE activity_type = 'comment') AS total_comments,
           count(*) FILTER (WHERE activity_type = 'like') AS total_likes_given,
           count(*) FILTER (WHERE activity_type = 'recommendation_shown') AS recommendations_shown,
           count(*) FILTER (WHERE activity_type = 'recommendation_clicked') AS recommendations_clicked
    FROM day_events
    WHERE user_id IS NOT NULL
    GROUP BY user_id
), targeted AS (
    SELECT target_user_id AS user_id,
           count(*) FILTER (WHERE activity_type = 'like') AS total_likes_received,
           count(*) FILTER (WHERE activity_type = 'follow') AS followers_gained,
           count(*) FILTER (WHERE activity_type = 'unfollow') AS followers_lost
    FROM day_events
    WHERE target_user_id IS NOT NULL AND activity_type IN ('like', 'follow', 'unfollow')
    GROUP BY target_user_id
), day_geo AS (
    SELECT user_id, country_code, city, access_result, is_traveler
    FROM geo_access_events
    WHERE time >= %(start)s AND time < %(end)s AND user_id IS NOT NULL
), located AS (
    SELECT user_id,
           count(*) FILTER (WHERE access_result = 'blocked') AS geo_restricted_attempts,
           bool_or(is_traveler) AS travel_detected
    FROM day_geo
    GROUP BY user_id
), places AS (
    SELECT user_id,
           jsonb_agg(jsonb_build_object('country_code', country_code, 'city', city) ORDER BY country_code, city)
               AS locations_accessed_from
    FROM (SELECT DISTINCT user_id, country_code, city
          FROM day_geo
          WHERE country_code IS NOT NULL OR city IS NOT NULL) AS distinct_places
    GROUP BY user_id
), visits AS (
    SELECT user_id,
           count(*) AS total_sessions,
           sum(extract(epoch FROM ended_at - started_at)) / 60 AS total_time_spent,
           avg(extract(epoch FROM ended_at - started_at)) / 60 AS avg_session_duration,
           coalesce(sum(extract(epoch FROM ended_at - started_at)) FILTER (WHERE community_id IS NOT NULL), 0) / 60
               AS community_online_time
    FROM sessions
    WHERE started_at >= %(start)s AND started_at < %(end)s
    GROUP BY user_id
), day_users AS (
    SELECT user_id FROM acted
    UNION
    SELECT user_id FROM located
    UNION
    SELECT user_id FROM targeted
)
INSERT INTO user_analytics (
    user_id, date, page_views, actions_performed, communities_viewed, communities_joined, community_online_time,
    community_interactions, geo_restricted_attempts, locations_accessed_from, travel_detected, total_posts,
    total_comments, total_likes_given, total_likes_received, followers_gained, followers_lost, total_sessions,
    total_time_spent, avg_session_duration, recommendations_shown, recommendations_clicked, last_calculated
)
SELECT u.user_id, %(day)s,
       coalesce(a.page_views, 0), coalesce(a.actions_performed, 0), coalesce(a.communities_viewed, 0),
       coalesce(a.communities_joined, 0), round(coalesce(v.community_online_time, 0), 2)::double precision,
       coalesce(a.community_interactions, 0), coalesce(l.geo_restricted_attempts, 0),
       coalesce(p.locations_accessed_from, '[]'::jsonb), coalesce(l.travel_detected, false),
       coalesce(a.total_posts, 0), coalesce(a.total_comments, 0), coalesce(a.total_likes_given, 0),
       coalesce(t.total_likes_received, 0), coalesce(t.followers_gained, 0), coalesce(t.followers_lost, 0),
       coalesce(v.total_sessions, 0), round(coalesce(v.total_time_spent, 0), 2)::double precision,
       round(coalesce(v.avg_session_duration, 0), 2)::double precision,
       coalesce(a.recommendations_shown, 0), coalesce(a.recommendations_clicked, 0), now()
FROM day_users u
LEFT JOIN acted a ON a.user_id = u.user_id
LEFT JOIN targeted t ON t.user_id = u.user_id
LEFT JOIN located l ON l.user_id = u.user_id
LEFT JOIN places p ON p.user_id = u.user_id
LEFT JOIN visits v ON v.user_id = u.user_id
ON CONFLICT (user_id, date) DO UPDATE SET
    page_views = excluded.page_views,
    actions_performed = excluded.actions_performed,
    communities_viewed = excluded.communities_viewed,
    communities_joined = excluded.communities_joined,
    community_online_time = excluded.community_online_time,
    community_interactions = excluded.community_interactions,
    geo_restricted_attempts = excluded.geo_restricted_attempts,
    locations_accessed_from = excluded.locations_accessed_from,
    travel_detected = excluded.travel_detected,
    total_posts = excluded.total_posts,
    total_comments = excluded.total_comments,
    total_likes_given = excluded.total_likes_given,
    total_likes_received = excluded.total_likes_received,
    followers_gained = excluded.followers_gained,
    followers_lost = excluded.followers_lost,
    total_sessions = excluded.total_sessions,
    total_time_spent = excluded.total_time_spent,
    avg_session_duration = excluded.avg_session_duration,
    recommendations_shown = excluded.recommendations_shown,
    recommendations_clicked = excluded.recommendations_clicked,
    last_calculated = excluded.last_calculated
"""


def upsert_user_day(conn: psycopg.Connection[Any], day: date) -> int:
    """Write the UserAnalytics rows of every user of `day`; how many rows were written."""
    start = midnight(day)
    cur = conn.execute(_UPSERT, {"day": day, "start": start, "end": start + timedelta(days=1)})
    return cur.rowcount


def update_user_analytics(context: TaskContext) -> dict[str, Any]:
    """The periodic task `update_user_analytics`: upsert the rows of yesterday's and today's users."""
    today = context.now.astimezone(UTC).date()
    written: dict[str, int] = {}
    # One transaction: a run that fails half-way leaves the rows as the previous run wrote them.
    with context.conn.transaction():
        for day in (today - timedelta(days=1), today):
            written[day.isoformat()] = upsert_user_day(context.conn, day)
    return {"users": written}

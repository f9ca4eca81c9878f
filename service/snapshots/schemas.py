"""Bodies of `/api/daily/` and `/api/user-analytics/`: the stored rows, and what a client may write to them.

Each resource has a row Struct (what the API answers), a write Struct with every writable field required (a PUT
body) and two variants derived from it (`service.core.listing.variant`): the POST body, whose figures default to 0 in
the database when not sent, and the PATCH body, where nothing is required. The constraints mirror the table's
CHECKs (db/migrations/0001_core.sql), so bad values are named here and the database check is the last line only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from service.core.listing import BIGINT_MAX, FLOAT_MAX, Aliased, variant

Count = Annotated[int, Meta(ge=0, le=BIGINT_MAX)]
Amount = Annotated[float, Meta(ge=0, le=FLOAT_MAX)]
Minutes = Annotated[float, Meta(ge=0, le=FLOAT_MAX, description="minutes")]
Percent = Annotated[float, Meta(ge=0, le=100, description="percent, 0 to 100")]
UserId = Annotated[int, Meta(ge=1, le=BIGINT_MAX)]


class DailyAnalytics(Aliased, kw_only=True):
    """One day's platform-wide figures (a row of `daily_analytics`, written by `update_daily_analytics`)."""

    ALIASES: ClassVar[dict[str, str]] = {"new_users": "new_registrations"}

    id: int
    date: date
    total_users: int
    active_users: int
    new_registrations: int
    new_users: Annotated[int, Meta(description="The documented name of `new_registrations` (the same figure)")]
    community_views: int
    community_joins: int
    average_online_members: float
    peak_community_activity: int
    geo_access_attempts: int
    geo_blocked_attempts: int
    geo_allowed_access: int
    traveler_access_count: int
    content_views: int
    content_interactions: int
    new_posts: int
    new_comments: int
    total_likes: int
    total_shares: int
    total_interactions: int
    avg_session_duration: float  # minutes
    bounce_rate: float  # percent
    api_requests: int
    avg_response_time: float  # milliseconds
    error_count: int
    created_at: datetime
    updated_at: datetime


class DailyAnalyticsWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT body of `/api/daily/{id}/`: every writable field of a day's row."""

    date: date
    total_users: Count
    active_users: Count
    new_registrations: Count
    community_views: Count
    community_joins: Count
    average_online_members: Amount
    peak_community_activity: Count
    geo_access_attempts: Count
    geo_blocked_attempts: Count
    geo_allowed_access: Count
    traveler_access_count: Count
    content_views: Count
    content_interactions: Count
    new_posts: Count
    new_comments: Count
    total_likes: Count
    total_shares: Count
    total_interactions: Count
    avg_session_duration: Minutes
    bounce_rate: Percent
    api_requests: Count
    avg_response_time: Annotated[float, Meta(ge=0, le=FLOAT_MAX, description="milliseconds")]
    error_count: Count


DAILY_READ_ONLY = frozenset({"id", "created_at", "updated_at"})
# POST: `date` is required, every figure not sent is 0.
DailyAnalyticsCreate = variant(DailyAnalyticsWrite, "DailyAnalyticsCreate", required={"date"})
DailyAnalyticsPatch = variant(DailyAnalyticsWrite, "DailyAnalyticsPatch")


class Place(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A place a user accessed geo-restricted communities from (what `update_user_analytics` writes)."""

    country_code: Annotated[str, Meta(pattern="^[A-Z]{2}$", max_length=2)] | None = None
    city: Annotated[str, Meta(max_length=200)] | None = None


class UserAnalytics(Aliased, kw_only=True):
    """One user's figures of one day (a row of `user_analytics`, written by `update_user_analytics`)."""

    ALIASES: ClassVar[dict[str, str]] = {"user": "user_id"}

    id: int
    user_id: int
    user: Annotated[int, Meta(description="The documented name of `user_id` (the same id)")]
    date: date
    page_views: int
    actions_performed: int
    communities_viewed: int
    communities_joined: int
    community_online_time: float  # minutes
    community_interactions: int
    geo_restricted_attempts: int
    # Stored as JSON: an array of {"country_code", "city"} objects (`Place`), as the database holds it.
    locations_accessed_from: list[dict[str, Any]]
    travel_detected: bool
    total_posts: int
    total_comments: int
    total_likes_given: int
    total_likes_received: int
    followers_gained: int
    followers_lost: int
    total_sessions: int
    total_time_spent: float  # minutes
    avg_session_duration: float  # minutes
    recommendations_shown: int
    recommendations_clicked: int
    last_calculated: datetime


class UserAnalyticsWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT body of `/api/user-analytics/{id}/`: every writable field of a user's day."""

    user_id: UserId
    date: date
    page_views: Count
    actions_performed: Count
    communities_viewed: Count
    communities_joined: Count
    community_online_time: Minutes
    community_interactions: Count
    geo_restricted_attempts: Count
    locations_accessed_from: Annotated[list[Place], Meta(max_length=1000)]
    travel_detected: bool
    total_posts: Count
    total_comments: Count
    total_likes_given: Count
    total_likes_received: Count
    followers_gained: Count
    followers_lost: Count
    total_sessions: Count
    total_time_spent: Minutes
    avg_session_duration: Minutes
    recommendations_shown: Count
    recommendations_clicked: Count


USER_READ_ONLY = frozenset({"id", "last_calculated"})
# POST: `user_id` and `date` are required; figures not sent are 0, `locations_accessed_from` [], no travel.
UserAnalyticsCreate = variant(UserAnalyticsWrite, "UserAnalyticsCreate", required={"user_id", "date"})
UserAnalyticsPatch = variant(UserAnalyticsWrite, "UserAnalyticsPatch")

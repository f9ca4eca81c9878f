"""Response bodies of the community read endpoints."""

from __future__ import annotations

from datetime import date

import msgspec

from service.reporting import DateRange


class CommunityReport(msgspec.Struct):
    """`GET /api/community-analytics/{id}/report/`."""

    community_id: int
    date_range: DateRange
    total_views: int
    unique_visitors: int
    peak_online_members: int
    average_session_duration: float  # minutes
    member_retention: float  # percent


class HourVolume(msgspec.Struct):
    hour: int  # 0-23, UTC
    events: int


class WeekdayVolume(msgspec.Struct):
    weekday: int  # 0 = Monday
    name: str
    events: int


class WeekVolume(msgspec.Struct):
    week_start: date  # a Monday
    events: int


class ActivityPatterns(msgspec.Struct):
    """`GET /api/community-analytics/{id}/activity-patterns/`."""

    community_id: int
    date_range: DateRange
    hourly: list[HourVolume]
    daily: list[WeekdayVolume]
    weekly: list[WeekVolume]
    peak_hours: list[int]


class CommunityToday(msgspec.Struct):
    """One line of `GET /api/community-analytics/`."""

    community_id: int
    online_members: int
    peak_members_today: int
    events_today: int
    views_today: int
    joins_today: int
    unique_visitors_today: int

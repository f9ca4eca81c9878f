"""Response bodies of the community read endpoints."""

from __future__ import annotations

from datetime import date

import msgspec

from service.core.windows import DateRange


class ReportMetrics(msgspec.Struct):
    """The figures of a community report (the documented `metrics` object)."""

    total_views: int
    unique_visitors: int
    peak_online_members: int
    average_session_duration: float | None  # minutes; null when no visit started in the window
    member_retention: float | None  # percent; null when nobody was active in the window before


class CommunityReport(msgspec.Struct):
    """`GET /api/community-analytics/{id}/report/`."""

    community_id: int
    date_range: DateRange
    metrics: ReportMetrics


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


class Patterns(msgspec.Struct):
    """Events by hour of day, weekday and week, and the peak hours (a stored community report's
    `metrics.activity_patterns`)."""

    hourly: list[HourVolume]
    daily: list[WeekdayVolume]
    weekly: list[WeekVolume]
    peak_hours: list[int]


class ActivityPatterns(Patterns):
    """`GET /api/community-analytics/{id}/activity-patterns/`: the patterns of the window, and its community."""

    community_id: int
    date_range: DateRange


class CommunityToday(msgspec.Struct):
    """One line of `GET /api/community-analytics/`."""

    community_id: int
    online_members: int
    peak_members_today: int
    events_today: int
    views_today: int
    joins_today: int
    unique_visitors_today: int

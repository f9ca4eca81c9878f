"""Response bodies of the community read endpoints."""

from __future__ import annotations

from datetime import date
from typing import Literal

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


Period = Literal["week", "month"]  # cohorts: weeks from Monday, calendar months (UTC)


class RetentionCell(msgspec.Struct):
    """One cell of a cohort's row: its members active `offset` periods after the cohort's own."""

    offset: int  # 0: the cohort's own period (every member is active in it)
    active: int
    share: float | None  # percent of the cohort's members, 1 decimal half up; null for a cohort of nobody
    complete: bool  # false for the current period: more members may still show up in it


class Cohort(msgspec.Struct):
    """The members whose first activity in the community fell in the period starting `start`."""

    start: date  # a Monday (period=week) or the 1st of a month (period=month), UTC
    members: int
    complete: bool  # false for the current period's cohort: it can still grow
    retention: list[RetentionCell]  # offsets 0 .. up to the current period


class CohortReport(msgspec.Struct):
    """`GET /api/community-analytics/{id}/cohorts/`: the retention triangle, oldest cohort first."""

    community_id: int
    period: Period
    date_range: DateRange  # the first cohort's first day to today
    cohorts: list[Cohort]


class FunnelStep(msgspec.Struct):
    """The members who reached one step of a funnel."""

    activity_type: str
    members: int
    conversion: float | None  # percent of the first step's members, 1 decimal half up; null when it has none
    step_conversion: float | None  # percent of the previous step's members (the first step: of itself)


class Funnel(msgspec.Struct):
    """`GET /api/community-analytics/{id}/funnel/`: members through the steps in order, each within `within`."""

    community_id: int
    date_range: DateRange
    within: int  # seconds allowed between one step and the next
    steps: list[FunnelStep]

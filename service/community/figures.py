"""The community report and activity patterns assembled from their query rows; one place for their arithmetic
(endpoints and stored reports)."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from service.community.queries import PatternRow
from service.community.schemas import (
    CommunityReport,
    Funnel,
    FunnelStep,
    HourVolume,
    Patterns,
    ReportMetrics,
    WeekdayVolume,
    WeekVolume,
)
from service.core.windows import Window, minutes, percent

PEAK_HOURS = 3


def community_report(
    community_id: int, window: Window, figures: tuple[Any, ...], live_peak: int = 0
) -> CommunityReport:
    """The community report from `report_figures`' row; `live_peak` is today's peak from Redis (0 for past days)."""
    views, visitors, previous, returning, session_seconds, stored_peak = figures
    return CommunityReport(
        community_id=community_id,
        date_range=window.date_range,
        metrics=ReportMetrics(
            total_views=int(views),
            unique_visitors=int(visitors),
            peak_online_members=max(int(stored_peak or 0), live_peak),
            average_session_duration=minutes(session_seconds),
            member_retention=percent(returning, previous),
        ),
    )


def patterns(volumes: list[PatternRow]) -> Patterns:
    """Events by hour of day, by weekday and by week (UTC) from `pattern_volumes`' rows; peak hours are the busiest
    hours of day, at most three, the earlier hour first on ties."""
    by_hour: dict[int, int] = {}
    by_weekday: dict[int, int] = {}
    by_week: dict[date, int] = {}
    for hour, weekday, week, events in volumes:
        if hour is not None:
            by_hour[hour] = events
        elif weekday is not None:
            by_weekday[weekday] = events
        elif week is not None:
            by_week[week] = events
    peak = sorted((h for h in by_hour if by_hour[h] > 0), key=lambda h: (-by_hour[h], h))[:PEAK_HOURS]
    return Patterns(
        hourly=[HourVolume(hour=h, events=by_hour.get(h, 0)) for h in range(24)],
        daily=[WeekdayVolume(weekday=d, name=calendar.day_name[d], events=by_weekday.get(d, 0)) for d in range(7)],
        weekly=[WeekVolume(week_start=w, events=by_week[w]) for w in sorted(by_week)],
        peak_hours=peak,
    )


def funnel(community_id: int, window: Window, within: int, steps: list[str], members: list[int]) -> Funnel:
    """The funnel answer from the members at each step: conversion of the first step and of the previous one."""
    return Funnel(
        community_id=community_id,
        date_range=window.date_range,
        within=within,
        steps=[
            FunnelStep(
                activity_type=step,
                members=count,
                conversion=percent(count, members[0]),
                step_conversion=percent(count, members[k - 1] if k else count),
            )
            for k, (step, count) in enumerate(zip(steps, members, strict=True))
        ],
    )

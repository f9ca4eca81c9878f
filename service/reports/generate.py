"""The report generators (periodic tasks): the previous day's (UTC) platform, community and geo reports.

Each stores one row per scope in `reports` for the day before `context.now`; running again for the same day
replaces those rows (same ids). The figures come from the rollups and sessions only, never from raw events, so
`refresh_rollups` must have built the sessions of that day (it runs every minute; the reports run after 03:00).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

import msgspec
import psycopg

from service.community.figures import community_report, patterns
from service.core.task_context import TaskContext
from service.core.windows import Window, midnight, minutes
from service.geo.figures import effectiveness, effectiveness_report, nest
from service.geo.schemas import GeoDayReport, TrendPoint
from service.ingest.schemas import ActivityType
from service.reports import queries
from service.reports.schemas import (
    CommunityDayMetrics,
    CommunityDayReport,
    ErrorFigures,
    EventFigures,
    GeoFigures,
    PlatformReport,
    SessionFigures,
)

ACTIVITY_TYPES: tuple[str, ...] = get_args(ActivityType)
ERROR_LEVELS = ("debug", "info", "warning", "error", "critical")  # error_logs.level
TOP_BLOCKED = 10  # places listed, as the effectiveness endpoint does by default


def previous_day(now: datetime) -> Window:
    """The day before `now` (UTC) as a one-day window; its `previous_start` is the day before that."""
    today = now.astimezone(UTC).date()
    return Window.last(0, midnight(today - timedelta(days=1)))


def _zero_filled(known: Iterable[str], counts: dict[str, int]) -> dict[str, int]:
    """Every known key (zeros included) in their order, then any other key counted."""
    return {**dict.fromkeys(known, 0), **counts}


def _period(window: Window) -> tuple[date, date]:
    return window.date_range.start, window.date_range.end


def _summary(window: Window, stored: int) -> dict[str, Any]:
    return {"period": window.date_range.start.isoformat(), "reports": stored}


def _snapshot(conn: psycopg.Connection[Any]) -> None:
    # Every figure of a run from one snapshot, so events, visits and members agree even while ingest writes.
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def platform_report(conn: psycopg.Connection[Any], window: Window) -> PlatformReport:
    """The platform's figures of the window's day."""
    by_type: dict[str, int] = {}
    communities: set[int] = set()
    for community_id, activity_type, events in queries.day_events(conn, window):
        by_type[activity_type] = by_type.get(activity_type, 0) + events
        if community_id is not None:
            communities.add(community_id)
    visits, session_seconds = queries.sessions(conn, window)
    geo = queries.geo_by_community(conn, window)
    errors = queries.errors_by_level(conn, window)
    return PlatformReport(
        date_range=window.date_range,
        events=EventFigures(total=sum(by_type.values()), by_type=_zero_filled(ACTIVITY_TYPES, by_type)),
        active_users=queries.active_users(conn, window),
        active_communities=len(communities),
        new_registrations=by_type.get("register", 0),
        sessions=SessionFigures(count=visits, average_duration=minutes(session_seconds)),
        geo=GeoFigures(
            restriction_effectiveness=effectiveness(sum(g[1] for g in geo), sum(g[2] for g in geo)),
            traveler_attempts=sum(g[3] for g in geo),
            bypass_attempts=sum(g[4] for g in geo),
        ),
        errors=ErrorFigures(total=sum(errors.values()), by_level=_zero_filled(ERROR_LEVELS, errors)),
    )


def generate_analytics_reports(context: TaskContext) -> dict[str, Any]:
    """The periodic task `generate_analytics_reports`: the platform report (scope `platform`) of the previous day."""
    window = previous_day(context.now)
    with context.conn.transaction():
        _snapshot(context.conn)
        report = platform_report(context.conn, window)
        stored = queries.store(context.conn, "analytics", _period(window), context.now, [("platform", report)])
    return _summary(window, stored)


def generate_community_reports(context: TaskContext) -> dict[str, Any]:
    """The periodic task `generate_community_reports`: a report (scope `community:<id>`) per community with
    events on the previous day."""
    window = previous_day(context.now)
    with context.conn.transaction():
        _snapshot(context.conn)
        by_community: dict[int, dict[str, int]] = {}
        for community_id, activity_type, events in queries.day_events(context.conn, window):
            if community_id is not None:
                by_community.setdefault(community_id, {})[activity_type] = events
        payloads: list[tuple[str, msgspec.Struct]] = []
        for community_id, by_type in by_community.items():
            base = community_report(community_id, window, queries.community_figures(context.conn, community_id, window))
            volumes = queries.community_volumes(context.conn, community_id, window)
            report = CommunityDayReport(
                community_id=community_id,
                date_range=base.date_range,
                metrics=CommunityDayMetrics(
                    **msgspec.structs.asdict(base.metrics), activity_patterns=patterns(volumes)
                ),
                events_by_type=_zero_filled(ACTIVITY_TYPES, by_type),
            )
            payloads.append((f"community:{community_id}", report))
        stored = queries.store(context.conn, "community", _period(window), context.now, payloads)
    return _summary(window, stored)


def generate_geo_effectiveness_reports(context: TaskContext) -> dict[str, Any]:
    """The periodic task `generate_geo_effectiveness_reports`: the effectiveness report (scope `community:<id>`)
    of the previous day per community with geo access attempts that day, with its attempts by place and hour."""
    window = previous_day(context.now)
    with context.conn.transaction():
        _snapshot(context.conn)
        payloads: list[tuple[str, msgspec.Struct]] = []
        for community_id, *_ in queries.geo_by_community(context.conn, window):
            day = queries.geo_figures(context.conn, community_id, window, TOP_BLOCKED)
            base = effectiveness_report(community_id, window, day.totals, day.top_blocked)
            report = GeoDayReport(
                **msgspec.structs.asdict(base),
                location_breakdown=nest(day.locations),
                trends=[TrendPoint(*row) for row in day.hourly_trends],
            )
            payloads.append((f"community:{community_id}", report))
        stored = queries.store(context.conn, "geo_effectiveness", _period(window), context.now, payloads)
    return _summary(window, stored)

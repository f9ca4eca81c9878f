"""Report payloads (what the generators store) and the bodies of the reports endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import msgspec

from service.community.schemas import Patterns, ReportMetrics
from service.core.windows import DateRange
from service.geo.schemas import Effectiveness

ReportKind = Literal["analytics", "community", "geo_effectiveness"]


class EventFigures(msgspec.Struct):
    total: int
    by_type: dict[str, int]  # every activity type, zeros included


class SessionFigures(msgspec.Struct):
    count: int  # visits starting that day (a member in one community or on the platform, 30-minute gaps)
    average_duration: float | None  # minutes; null without visits


class GeoFigures(msgspec.Struct):
    restriction_effectiveness: Effectiveness
    traveler_attempts: int
    bypass_attempts: int


class ErrorFigures(msgspec.Struct):
    total: int
    by_level: dict[str, int]  # every level, zeros included


class PlatformReport(msgspec.Struct):
    """Payload of an `analytics` report: the platform's figures of one day."""

    date_range: DateRange
    events: EventFigures
    active_users: int  # distinct members with any event, in a community or on the platform
    active_communities: int
    new_registrations: int  # `register` events
    sessions: SessionFigures
    geo: GeoFigures
    errors: ErrorFigures


class CommunityDayMetrics(ReportMetrics):
    """The community report endpoint's figures for one day, and that day's activity patterns."""

    activity_patterns: Patterns


class CommunityDayReport(msgspec.Struct):
    """Payload of a `community` report (the documented generator's shape: the figures under `metrics`)."""

    community_id: int
    date_range: DateRange
    metrics: CommunityDayMetrics
    events_by_type: dict[str, int]  # every activity type, zeros included


class Report(msgspec.Struct):
    """A stored report: `GET /api/reports/{id}/` and the items of the list."""

    id: int
    kind: ReportKind
    scope: str  # `platform` or `community:<id>`
    period_start: date
    period_end: date
    generated_at: datetime
    payload: dict[str, Any]

"""The community report assembled from its query row; one place for its arithmetic (endpoint and stored reports)."""

from __future__ import annotations

from typing import Any

from service.community.schemas import CommunityReport
from service.reporting import Window, minutes, percent


def community_report(
    community_id: int, window: Window, figures: tuple[Any, ...], live_peak: int = 0
) -> CommunityReport:
    """The community report from `report_figures`' row; `live_peak` is today's peak from Redis (0 for past days)."""
    views, visitors, previous, returning, session_seconds, stored_peak = figures
    return CommunityReport(
        community_id=community_id,
        date_range=window.date_range,
        total_views=int(views),
        unique_visitors=int(visitors),
        peak_online_members=max(int(stored_peak or 0), live_peak),
        average_session_duration=minutes(session_seconds),
        member_retention=percent(returning, previous),
    )

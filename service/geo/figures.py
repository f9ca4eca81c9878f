"""The effectiveness report assembled from its query rows; one place for its arithmetic (endpoint and stored
reports)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.geo.schemas import BlockedLocation, Effectiveness, EffectivenessReport
from service.reporting import Window, percent


def effectiveness(total: int, blocked: int) -> Effectiveness:
    """Attempts split into blocked and allowed, and the blocked share in percent (one decimal, half up)."""
    return Effectiveness(
        total_attempts=total,
        blocked_attempts=blocked,
        allowed_attempts=total - blocked,
        effectiveness_percentage=percent(blocked, total),
    )


def effectiveness_report(
    community_id: int, window: Window, totals: tuple[int, int, int, int], top: Iterable[Any]
) -> EffectivenessReport:
    """The effectiveness report from the `totals` and `top_blocked` rows of `service.geo.queries`."""
    total, blocked, travelers, bypasses = totals
    return EffectivenessReport(
        community_id=community_id,
        date_range=window.date_range,
        restriction_effectiveness=effectiveness(total, blocked),
        top_blocked_locations=[
            BlockedLocation(country=country, country_code=code, city=city, blocked_attempts=int(n))
            for country, code, city, n in top
        ],
        traveler_attempts=travelers,
        bypass_attempts=bypasses,
    )

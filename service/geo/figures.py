"""The geo reports assembled from their query rows; one place for their arithmetic (endpoints and stored
reports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.core.windows import Window, percent
from service.geo.schemas import (
    BlockedLocation,
    Categories,
    City,
    Country,
    Counts,
    Effectiveness,
    EffectivenessReport,
    Region,
)


def effectiveness(total: int, blocked: int) -> Effectiveness:
    """Attempts split into blocked and allowed, and the blocked share in percent (one decimal, half up)."""
    return Effectiveness(
        total_attempts=total,
        blocked_attempts=blocked,
        allowed_attempts=total - blocked,
        effectiveness_percentage=percent(blocked, total),
    )


def effectiveness_report(
    community_id: int, window: Window, totals: Sequence[int], top: Iterable[Any]
) -> EffectivenessReport:
    """The effectiveness report from the `totals` and `top_blocked` rows of `service.geo.queries`."""
    total, blocked, travelers, bypasses, *by_scope = totals
    country_blocked, country_allowed, city_blocked, city_allowed, region_blocked, region_allowed = by_scope
    return EffectivenessReport(
        community_id=community_id,
        date_range=window.date_range,
        restriction_effectiveness=effectiveness(total, blocked),
        top_blocked_locations=[
            BlockedLocation(country=country, country_code=code, city=city, attempts=int(n))
            for country, code, city, n in top
        ],
        categories=Categories(
            country_blocked=country_blocked,
            country_allowed=country_allowed,
            city_blocked=city_blocked,
            city_allowed=city_allowed,
            region_blocked=region_blocked,
            region_allowed=region_allowed,
            traveler_access=travelers,
            restriction_bypass=bypasses,
        ),
        traveler_attempts=travelers,
        bypass_attempts=bypasses,
    )


def nest(rows: Iterable[Any]) -> list[Country]:
    """Rows of (country, code, region, city, attempts, allowed, blocked, travelers) as a country -> region ->
    city tree, each level ordered by attempts (most first), then by name."""
    countries: dict[tuple[str | None, str | None], dict[str | None, dict[str | None, Counts]]] = {}
    for country, code, region, city, attempts, allowed, blocked, travelers in rows:
        cities = countries.setdefault((country, code), {}).setdefault(region, {})
        counts = cities.setdefault(city, Counts())
        counts.attempts += attempts
        counts.allowed += allowed
        counts.blocked += blocked
        counts.travelers += travelers

    def total(parts: list[Counts]) -> Counts:
        return Counts(*(sum(getattr(p, f) for p in parts) for f in ("attempts", "allowed", "blocked", "travelers")))

    def order(name: str | None, counts: Counts) -> tuple[int, bool, str]:
        return -counts.attempts, name is None, name or ""

    result = []
    for (country, code), regions in countries.items():
        region_list = []
        for region, cities in regions.items():
            city_list = sorted(
                (City(city=c, counts=n) for c, n in cities.items()), key=lambda x: order(x.city, x.counts)
            )
            region_list.append(Region(region=region, counts=total([c.counts for c in city_list]), cities=city_list))
        region_list.sort(key=lambda r: order(r.region, r.counts))
        result.append(
            Country(
                country=country, country_code=code, counts=total([r.counts for r in region_list]), regions=region_list
            )
        )
    result.sort(key=lambda c: order(c.country, c.counts))
    return result

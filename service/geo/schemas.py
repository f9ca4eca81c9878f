"""Response bodies of the geo read endpoints."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.core.windows import DateRange


class Effectiveness(msgspec.Struct):
    total_attempts: int
    blocked_attempts: int
    allowed_attempts: int
    effectiveness_percentage: float | None  # blocked / total x 100, one decimal; null without attempts


class BlockedLocation(msgspec.Struct):
    country: str | None
    country_code: str | None
    city: str | None
    attempts: int  # blocked attempts from this place


class Categories(msgspec.Struct):
    """The documentation's geo analytics categories, each counting access attempts of the window: blocked or
    allowed by a country, city or region rule (`restriction_scope`), travelers' attempts, and allowed accesses
    flagged as a restriction bypass. Attempts without a scope count in none of the first six."""

    country_blocked: int
    country_allowed: int
    city_blocked: int
    city_allowed: int
    region_blocked: int
    region_allowed: int
    traveler_access: int
    restriction_bypass: int


class EffectivenessReport(msgspec.Struct):
    """`GET /api/geo-analytics/{id}/effectiveness/`."""

    community_id: int
    date_range: DateRange
    restriction_effectiveness: Effectiveness
    top_blocked_locations: list[BlockedLocation]
    categories: Categories
    traveler_attempts: int
    bypass_attempts: int


class Counts(msgspec.Struct):
    attempts: int = 0
    allowed: int = 0
    blocked: int = 0
    travelers: int = 0


class City(msgspec.Struct):
    city: str | None
    counts: Counts


class Region(msgspec.Struct):
    region: str | None
    counts: Counts
    cities: list[City]


class Country(msgspec.Struct):
    country: str | None
    country_code: str | None
    counts: Counts
    regions: list[Region]


class Locations(msgspec.Struct):
    """`GET /api/geo-analytics/{id}/locations/`: country -> region -> city, busiest first."""

    community_id: int
    date_range: DateRange
    countries: list[Country]


class TrendPoint(msgspec.Struct):
    bucket: datetime
    attempts: int
    allowed: int
    blocked: int
    travelers: int
    bypasses: int


class Trends(msgspec.Struct):
    """`GET /api/geo-analytics/{id}/trends/`."""

    community_id: int
    date_range: DateRange
    interval: str
    points: list[TrendPoint]


class GeoDayReport(EffectivenessReport):
    """Payload of a `geo_effectiveness` report: the effectiveness endpoint's answer for one day, its attempts by
    place (as `/locations/`) and by hour (as `/trends/?interval=hour`)."""

    location_breakdown: list[Country]
    trends: list[TrendPoint]

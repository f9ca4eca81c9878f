"""Geo-restriction read endpoints. Unknown communities answer with zero figures, not 404."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from service.auth.guards import community_reader
from service.geo import queries
from service.geo.figures import effectiveness_report
from service.geo.schemas import (
    City,
    Country,
    Counts,
    EffectivenessReport,
    Locations,
    Region,
    TrendPoint,
    Trends,
)
from service.reporting import Days, Window
from service.resources import Resources


def nest(rows: list[Any]) -> list[Country]:
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


class GeoAnalyticsController(Controller):
    """How geo restrictions of a community perform."""

    path = "/api/geo-analytics"
    tags = ["geo analytics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [community_reader]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/{community_id:int}/effectiveness/", summary="Blocked share of access attempts; most blocked places")
    async def effectiveness(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        days: Days = 30,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Most blocked places listed")] = 10,
    ) -> EffectivenessReport:
        window = Window.last(days)
        async with resources.pool.connection() as conn:
            total, blocked, travelers, bypasses = await queries.totals(conn, community_id, window)
            top = await queries.top_blocked(conn, community_id, window, limit)
        return effectiveness_report(community_id, window, (total, blocked, travelers, bypasses), top)

    @get("/{community_id:int}/locations/", summary="Access attempts by country, region and city")
    async def locations(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 30
    ) -> Locations:
        window = Window.last(days)
        async with resources.pool.connection() as conn:
            rows = await queries.locations(conn, community_id, window)
        return Locations(community_id=community_id, date_range=window.date_range, countries=nest(rows))

    @get("/{community_id:int}/trends/", summary="Allowed and blocked attempts, travelers and bypasses over time")
    async def trends(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        days: Days = 7,
        interval: FromQuery[Literal["day", "hour"]] = "day",
    ) -> Trends:
        window = Window.last(days)
        async with resources.pool.connection() as conn:
            rows = await queries.trends(conn, community_id, window, interval)
        return Trends(
            community_id=community_id,
            date_range=window.date_range,
            interval=interval,
            points=[TrendPoint(*row) for row in rows],
        )

"""Geo-restriction read endpoints. Unknown communities answer with zero figures, not 404."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from psycopg import AsyncConnection

from service.auth.guards import community_reader
from service.auth.keys import for_keys
from service.core.windows import Days, Window
from service.geo import queries
from service.geo.figures import effectiveness_report, nest
from service.geo.schemas import EffectivenessReport, Locations, TrendPoint, Trends
from service.web.resources import Resources

READ_KEYS = for_keys("read")  # read API keys of that community may call these routes


class GeoAnalyticsController(Controller):
    """How geo restrictions of a community perform."""

    path = "/api/geo-analytics"
    tags = ["geo analytics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [community_reader]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get(
        "/{community_id:int}/effectiveness/",
        summary="Blocked share of access attempts; most blocked places",
        opt=READ_KEYS,
    )
    async def effectiveness(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        days: Days = 30,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Most blocked places listed")] = 10,
    ) -> EffectivenessReport:
        window = Window.last(days)

        async def read(conn: AsyncConnection[Any]) -> tuple[tuple[int, ...], list[Any]]:
            totals = await queries.totals(conn, community_id, window)
            top = await queries.top_blocked(conn, community_id, window, limit)
            return totals, top

        totals, top = await resources.reads.run(read)
        return effectiveness_report(community_id, window, totals, top)

    @get("/{community_id:int}/locations/", summary="Access attempts by country, region and city", opt=READ_KEYS)
    async def locations(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 30
    ) -> Locations:
        window = Window.last(days)
        rows = await resources.reads.run(lambda conn: queries.locations(conn, community_id, window), autocommit=True)
        return Locations(community_id=community_id, date_range=window.date_range, countries=nest(rows))

    @get(
        "/{community_id:int}/trends/",
        summary="Allowed and blocked attempts, travelers and bypasses over time",
        opt=READ_KEYS,
    )
    async def trends(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        days: Days = 7,
        interval: FromQuery[Literal["day", "hour"]] = "day",
    ) -> Trends:
        window = Window.last(days)
        rows = await resources.reads.run(
            lambda conn: queries.trends(conn, community_id, window, interval), autocommit=True
        )
        return Trends(
            community_id=community_id,
            date_range=window.date_range,
            interval=interval,
            points=[TrendPoint(*row) for row in rows],
        )

"""Community read endpoints. Unknown communities are not an error: they answer with zero figures."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from service.auth.guards import community_reader, staff_only
from service.community.figures import community_report, patterns
from service.community.queries import hourly_volumes, report_figures, today_by_community
from service.community.schemas import ActivityPatterns, CommunityReport, CommunityToday
from service.core.windows import Days, Window
from service.live.realtime import Realtime, realtime, realtime_many
from service.web.resources import Resources


class CommunityAnalyticsController(Controller):
    """Presence, reports and activity patterns of communities."""

    path = "/api/community-analytics"
    tags = ["community analytics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Communities active today with their key figures, busiest first (staff)", guards=[staff_only])
    async def overview(
        self,
        resources: NamedDependency[Resources],
        limit: Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many communities")] = 100,
    ) -> list[CommunityToday]:
        async with resources.pool.connection() as conn:
            rows = await today_by_community(conn, limit)
        lives = await realtime_many(resources.redis, [row[0] for row in rows])
        return [
            CommunityToday(
                community_id=community_id,
                online_members=live.online_members,
                peak_members_today=live.peak_members_today,
                events_today=events,
                views_today=views,
                joins_today=joins,
                unique_visitors_today=visitors,
            )
            for (community_id, events, views, joins, visitors), live in zip(rows, lives, strict=True)
        ]

    @get(
        "/{community_id:int}/realtime/",
        summary="Online members, today's peak and the activity score (Redis)",
        guards=[community_reader],
    )
    async def realtime(self, community_id: FromPath[int], resources: NamedDependency[Resources]) -> Realtime:
        return await realtime(resources.redis, community_id)

    @get(
        "/{community_id:int}/report/",
        summary="Views, visitors, peak online, session length and retention",
        guards=[community_reader],
    )
    async def report(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 7
    ) -> CommunityReport:
        window = Window.last(days)
        async with resources.pool.connection() as conn:
            figures = await report_figures(conn, community_id, window)
        live = await realtime(resources.redis, community_id)
        return community_report(community_id, window, figures, live.peak_members_today)

    @get(
        "/{community_id:int}/activity-patterns/",
        summary="Events by hour of day, weekday and week; peak hours",
        guards=[community_reader],
    )
    async def activity_patterns(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 30
    ) -> ActivityPatterns:
        window = Window.last(days)
        async with resources.pool.connection() as conn:
            volumes = await hourly_volumes(conn, community_id, window)
        return ActivityPatterns(
            community_id=community_id, date_range=window.date_range, **msgspec.structs.asdict(patterns(volumes))
        )

"""Community read endpoints. Unknown communities are not an error: they answer with zero figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from service.auth.guards import community_reader, principal_of, staff_only
from service.auth.keys import for_keys
from service.auth.tokens import Principal
from service.community.cohorts import MAX_PERIODS, cohort_activity, cohort_report, period_starts
from service.community.figures import community_report, funnel, patterns
from service.community.funnel import MAX_WITHIN, funnel_members, parse_steps
from service.community.queries import pattern_volumes, report_figures, today_by_community
from service.community.schemas import (
    ActivityPatterns,
    CohortReport,
    CommunityReport,
    CommunityToday,
    Funnel,
    Period,
)
from service.core.errors import REDIS_ERRORS, FieldError, InvalidInput, TooManyRequests, Unavailable
from service.core.windows import Days, Window
from service.live.push import StreamSlot
from service.live.realtime import Realtime, realtime, realtime_many
from service.web.resources import Resources

READ_KEYS = for_keys("read")  # the per-community routes: read API keys of that community may call them
LIVE_RETRY_MS = 3000  # what a disconnected EventSource waits before it reconnects

# `weeks` is the name for it (#20); with period=month it counts months.
_PERIODS = "Cohorts shown: the current period and the N - 1 before it (weeks, or months with period=month)"
Periods = Annotated[int, QueryParameter(ge=1, le=MAX_PERIODS, description=_PERIODS)]
CohortPeriod = Annotated[Period, QueryParameter(description="`week` (from Monday, UTC) or `month` (calendar, UTC)")]
Steps = Annotated[
    str, QueryParameter(max_length=200, description="2 to 6 activity types, comma-separated: `view,join,post`")
]
Within = Annotated[
    int, QueryParameter(ge=1, le=MAX_WITHIN, description="The most seconds from one step to the next (default a day)")
]


async def live_events(
    resources: Resources, community_id: int, slot: StreamSlot, principal: Principal
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """The live stream's events: the figures at once, then each change, a heartbeat comment when quiet; its slot
    is given back however the stream ends (the client gone, the API stopping, an API key revoked: asked every
    LIVE_HEARTBEAT seconds)."""
    heartbeat = resources.settings.live_heartbeat
    try:
        async with resources.hub.watch(community_id, slot) as changes:
            current = await realtime(resources.redis, resources.shards, community_id)
            yield _event(current, retry=LIVE_RETRY_MS)
            checked = time.monotonic()
            while True:
                try:
                    figures = await asyncio.wait_for(changes.get(), heartbeat)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="heartbeat", data=None)  # a comment alone: no event
                else:
                    if figures is None:  # the API is stopping
                        return
                    if figures != current:
                        current = figures
                        yield _event(figures)
                if principal.kind == "key" and time.monotonic() - checked >= heartbeat:
                    if await resources.keys.revoked(principal):
                        return
                    checked = time.monotonic()
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await slot.release()


def _event(figures: Realtime, retry: int | None = None) -> ServerSentEventMessage:
    """One `realtime` event: the body of `/realtime/`, its id the time in milliseconds."""
    return ServerSentEventMessage(
        data=msgspec.json.encode(figures).decode(), event="realtime", id=str(time.time_ns() // 1_000_000), retry=retry
    )


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
        rows = await resources.reads.run(lambda conn: today_by_community(conn, limit))
        lives = await realtime_many(resources.redis, resources.shards, [row[0] for row in rows])
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
        opt=READ_KEYS,
    )
    async def realtime(self, community_id: FromPath[int], resources: NamedDependency[Resources]) -> Realtime:
        return await realtime(resources.redis, resources.shards, community_id)

    @get(
        "/{community_id:int}/live/",
        summary="The realtime figures as Server-Sent Events: at once, then whenever they change (at most once a "
        "second), a heartbeat comment every LIVE_HEARTBEAT seconds",
        guards=[community_reader],
        opt=READ_KEYS,
        media_type="text/event-stream",
    )
    async def live(
        self, request: Request[Any, Any, Any], community_id: FromPath[int], resources: NamedDependency[Resources]
    ) -> ServerSentEvent:
        principal = principal_of(request)
        slot = StreamSlot(resources.redis, principal.key)
        limit = resources.settings.live_max_streams_per_principal
        try:
            claimed = await slot.claim(limit)
        except REDIS_ERRORS as exc:
            raise Unavailable(f"The live store (Redis) is unavailable ({type(exc).__name__})", retry_after=5) from None
        if not claimed:
            raise TooManyRequests(f"at most {limit} live streams of one principal may be open at once", 15, limit)
        events = live_events(resources, community_id, slot, principal)

        async def ended() -> None:
            """Once the answer is over (the client left, or a HEAD request that never streamed): close the events
            now, which gives the slot back, instead of whenever the garbage collector finalizes them."""
            await events.aclose()
            with contextlib.suppress(*REDIS_ERRORS):
                await slot.release()

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return ServerSentEvent(events, headers=headers, background=BackgroundTask(ended))

    @get(
        "/{community_id:int}/report/",
        summary="Views, visitors, peak online, session length and retention",
        guards=[community_reader],
        opt=READ_KEYS,
    )
    async def report(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 7
    ) -> CommunityReport:
        window = Window.last(days)
        figures = await resources.reads.run(lambda conn: report_figures(conn, community_id, window), autocommit=True)
        live = await realtime(resources.redis, resources.shards, community_id)
        return community_report(community_id, window, figures, live.peak_members_today)

    @get(
        "/{community_id:int}/activity-patterns/",
        summary="Events by hour of day, weekday and week; peak hours",
        guards=[community_reader],
        opt=READ_KEYS,
    )
    async def activity_patterns(
        self, community_id: FromPath[int], resources: NamedDependency[Resources], days: Days = 30
    ) -> ActivityPatterns:
        window = Window.last(days)
        volumes = await resources.reads.run(lambda conn: pattern_volumes(conn, community_id, window), autocommit=True)
        return ActivityPatterns(
            community_id=community_id, date_range=window.date_range, **msgspec.structs.asdict(patterns(volumes))
        )

    @get(
        "/{community_id:int}/cohorts/",
        summary="Retention by cohort: members by the week or month of their first activity, and the share of each "
        "cohort active in every later one",
        guards=[community_reader],
        opt=READ_KEYS,
    )
    async def cohorts(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        weeks: Periods = 8,
        period: CohortPeriod = "week",
    ) -> CohortReport:
        today = datetime.now(UTC).date()
        starts = period_starts(period, weeks, today)
        kept = today - timedelta(days=resources.settings.retention_rollup_days)
        if starts[0] < kept:  # the member rollup holds nothing before: empty cohorts would look like facts
            raise InvalidInput([FieldError("weeks", f"reaches back to {starts[0]}, before the oldest day the member "
                                                    f"rollup keeps ({kept}, RETENTION_ROLLUP_DAYS)")])  # fmt: skip
        activity = await resources.reads.run(
            lambda conn: cohort_activity(conn, community_id, period, starts), autocommit=True
        )
        return cohort_report(community_id, period, starts, today, activity)

    @get(
        "/{community_id:int}/funnel/",
        summary="Members who did each step after the one before, within `within` seconds of it: counts and conversion",
        guards=[community_reader],
        opt=READ_KEYS,
    )
    async def funnel(
        self,
        community_id: FromPath[int],
        resources: NamedDependency[Resources],
        steps: Steps,
        days: Days = 30,
        within: Within = 86_400,
    ) -> Funnel:
        kinds = parse_steps(steps)
        if days > resources.settings.retention_raw_days:
            raise InvalidInput([FieldError("days", f"at most {resources.settings.retention_raw_days}: raw events "
                                                   "are kept that long (RETENTION_RAW_DAYS)")])  # fmt: skip
        window = Window.last(days)
        members = await resources.reads.run(
            lambda conn: funnel_members(conn, community_id, kinds, window, within), autocommit=True
        )
        return funnel(community_id, window, within, kinds, members)

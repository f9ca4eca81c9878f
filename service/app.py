"""The ASGI application: `create_app(settings)` wires routes, resources and the error mapping."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import FrameType

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from psycopg_pool import AsyncConnectionPool

from service import __version__
from service.annotations.api import AnnotationsController
from service.auth.api import AuthController, KeysController
from service.auth.keys import KEY_USE_FLUSH_SECONDS
from service.auth.middleware import authentication_middleware
from service.auth.ratelimit import FLUSH_SECONDS as LIMITS_FLUSH_SECONDS
from service.auth.ratelimit import RateLimiter
from service.community.api import CommunityAnalyticsController
from service.core.db import DatabaseUnavailable, async_pool, detect_engine_async
from service.core.docs_ui import assets_router, render_plugins
from service.core.errors import EXCEPTION_HANDLERS, REDIS_ERRORS, first_line
from service.core.geoip import GeoResolver
from service.core.head_requests import HeadAsGet
from service.core.openapi import declare_error_answers
from service.core.periodic import every
from service.core.query_params import QueryRules, check_query
from service.core.settings import ConfigError, Settings, from_env
from service.errorlog.api import ErrorGroupsController, ErrorLogsController
from service.errorlog.recorder import ErrorRecorder
from service.export.api import ExportController
from service.geo.api import GeoAnalyticsController
from service.ingest import countries
from service.ingest.api import CommunityTrackController, EventsController, GeoTrackController
from service.live.client import AsyncRedis, async_client, layout, prepare
from service.live.push import LiveHub
from service.live.writer import LiveWriter
from service.observability.request_metrics import instrument
from service.reports.api import ReportsController
from service.snapshots.api import DailyAnalyticsController, UserAnalyticsController
from service.storage.migrations import plan
from service.storage.replicas import ReadRouter
from service.system_metrics.api import SystemMetricsController
from service.tasks.api import TasksController
from service.tasks.worker import create_queue
from service.web.health import HealthController
from service.web.metrics_api import MetricsController
from service.web.request_tracking import FLUSH_SECONDS as REQUESTS_FLUSH_SECONDS
from service.web.request_tracking import RequestCounter, api_request_finished, unhandled_error
from service.web.resources import Resources, provide_resources

log = logging.getLogger(__name__)


async def _warn_without_persistence(client: AsyncRedis) -> None:
    """The stream is the durable buffer: say so when the Redis we were given keeps nothing on disk."""
    try:
        config = await client.config_get("appendonly")
    except Exception as exc:  # noqa: BLE001 - CONFIG may be disabled on managed Redis; not fatal
        log.info("could not read the Redis persistence settings (%s)", exc)
        return
    if config.get("appendonly") != "yes":
        log.warning(
            "Redis runs with appendonly=no: accepted events waiting in the ingest stream are lost if Redis "
            "restarts; set `appendonly yes` and `appendfsync everysec` (or `always`) on that server"
        )


def cors(settings: Settings) -> CORSConfig | None:
    """Cross-origin access for the browsers of CORS_ALLOW_ORIGINS (none by default): preflights are answered by
    Litestar's CORS middleware before routing; credentials (the session cookie) only for listed origins."""
    origins = settings.cors_origins()
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        allow_credentials="*" not in origins,
        expose_headers=["Retry-After", "RateLimit-Limit", "WWW-Authenticate"],
        max_age=600,
    )


# Every route of the API, in the order the OpenAPI document lists them.
ROUTES = (
    HealthController,
    MetricsController,
    AuthController,
    CommunityTrackController,
    GeoTrackController,
    EventsController,
    CommunityAnalyticsController,
    GeoAnalyticsController,
    TasksController,
    AnnotationsController,
    KeysController,
    ReportsController,
    DailyAnalyticsController,
    UserAnalyticsController,
    SystemMetricsController,
    ErrorLogsController,
    ErrorGroupsController,
    ExportController,
)


def _first_on_stop(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` first when SIGINT or SIGTERM arrives, then whatever handled it before (uvicorn's shutdown);
    returns the undo. Only where signals can be handled (the main thread of a server process), else nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        callback()
        before = previous[signal.Signals(signum)]
        if callable(before):
            before(signum, frame)

    for sig in previous:
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, before in previous.items():
            signal.signal(sig, before)

    return undo


async def _open_pool(settings: Settings, database_url: str) -> AsyncConnectionPool:
    pool = async_pool(settings, database_url)
    try:
        await pool.open(wait=True, timeout=max(settings.db_wait, settings.db_timeout))
    except Exception as exc:
        await pool.close()
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


def _lifespan(
    settings: Settings, database_url: str, redis_url: str, counter: RequestCounter
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """What the API opens when it starts (pools, Redis, GeoIP, the country names) and hands to the handlers as
    `Resources`; the background flushes while it runs; everything closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await _open_pool(settings, database_url)
        reads = ReadRouter.from_settings(settings, pool)  # the read replicas' pools, opened below
        client, shards = async_client(settings, redis_url), layout(settings)
        geoip = GeoResolver(settings.geoip_database) if settings.geoip_database else None
        countries.warm()  # once per process (about half a second), before the first geo decision asks for a name
        try:
            await reads.open()  # never fails for a replica that is down: it gets no reads until it is up
            async with pool.connection() as conn:
                engine = await detect_engine_async(conn)
            log.info("storage engine: %s", engine)
            await _warn_without_persistence(client)
            try:
                await prepare(client)
            except REDIS_ERRORS as exc:  # as with a single Redis down: the API starts, live requests answer 503
                log.warning("cannot read the Redis Cluster's slot map yet (%s)", first_line(exc))
            errors, limiter, hub = ErrorRecorder(pool), RateLimiter(client), LiveHub(client, shards)
            app.state.resources = Resources(
                settings=settings,
                pool=pool,
                reads=reads,
                redis=client,
                engine=engine,
                schema=plan(engine),
                shards=shards,
                live=LiveWriter(client, shards, settings.ingest_max_backlog),
                geoip=geoip,
                proxies=settings.proxy_networks(),
                queue=create_queue(settings),
                errors=errors,
                limiter=limiter,
                hub=hub,
            )
            # Live streams never end by themselves: at a stop signal they end at once, so that the server's
            # graceful shutdown (which waits for open answers) is not held up by them.
            loop = asyncio.get_running_loop()

            def end_streams() -> None:
                loop.call_soon_threadsafe(hub.end)

            undo = _first_on_stop(end_streams)
            # What start-up built (the app, its schema, the country names) lives as long as the process: out of
            # the collector's sight (start-up's garbage collected first), so that the collections that allocation
            # triggers per request scan only what requests make.
            gc.collect()
            gc.freeze()
            async with (
                every(REQUESTS_FLUSH_SECONDS, lambda: counter.flush(client)),
                every(LIMITS_FLUSH_SECONDS, limiter.flush),
                every(KEY_USE_FLUSH_SECONDS, app.state.resources.keys.flush),
            ):
                try:
                    yield
                finally:
                    undo()
                    gc.unfreeze()  # an app started again in this process (tests) freezes what it builds
                    await hub.close()
            await errors.drain()
        finally:
            if geoip:
                geoip.close()
            await client.aclose()
            await reads.close()
            await pool.close()

    return lifespan


def create_app(settings: Settings) -> Litestar:
    """Build the application for these settings; nothing connects until the lifespan starts."""
    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError("DATABASE_URL and REDIS_URL: both must be set to serve the API (or use `analytics dev`)")
    counter = RequestCounter()
    app = Litestar(
        route_handlers=[*ROUTES, assets_router()],
        request_max_body_size=settings.track_max_body_bytes,
        cors_config=cors(settings),
        middleware=[authentication_middleware()],
        before_request=check_query,
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        lifespan=[_lifespan(settings, settings.database_url, settings.redis_url, counter)],
        exception_handlers={**EXCEPTION_HANDLERS, Exception: unhandled_error},
        logging_config=None,  # the process's logging is configured once, by the `analytics` command
        openapi_config=OpenAPIConfig(
            title="Community analytics",
            version=__version__,
            description="Tracking, reports and CRUD for community, geo-restriction and system analytics.",
            path="/docs",
            render_plugins=render_plugins(),
        ),
    )
    declare_error_answers(app.openapi_schema)
    app.state.query_rules = QueryRules.from_schema(app.openapi_schema)
    app.asgi_handler = HeadAsGet(app.asgi_handler)
    # Request counts and timings around everything (unmatched routes and refused requests included), also
    # counted per day and user for the daily snapshot.
    return instrument(app, finished=[api_request_finished(counter)])


def app_from_env() -> Litestar:
    """Factory for ASGI servers (`uvicorn --factory service.app:app_from_env`): settings from the environment."""
    return create_app(from_env())

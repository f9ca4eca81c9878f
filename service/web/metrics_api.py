"""`GET /metrics`: the API's Prometheus metrics, plus the storage figures read once per scrape.

The counters and histograms come from every API worker process (multiprocess mode); the ingest backlog and
lag, the members online, the connection pool, the read replicas' lag and the up checks are read by the process
answering the scrape, so each appears once however many processes there are.

The community surge figures (service/storage/surges.py) are computed here too, rather than in PromQL: Prometheus
could only compare a community with its own past if every community had its own series, which is unbounded
(online members have series for the top communities only). So one query over the hourly rollups ranks every
community and only the few surging most are exported. Each process keeps the answer a minute (`SurgeCache`), so a
scrape every 15 s costs one query a minute per process; the figures are hourly, a minute old is fresh enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from service.core.errors import AuthenticationFailed, first_line
from service.live.realtime import online_members
from service.live.stream import stream_state
from service.observability.exposition import CONTENT_TYPE, authorized, render
from service.observability.metrics import (
    COMMUNITY_ONLINE,
    COMMUNITY_SURGE_BASELINE,
    COMMUNITY_SURGE_LAST_HOUR,
    COMMUNITY_SURGE_RATIO,
    DB_POOL,
    DB_REPLICA_LAG,
    DB_UP,
    INGEST_LAG,
    ONLINE_MEMBERS,
    REDIS_UP,
    STREAM_BACKLOG,
    ScrapeGauge,
)
from service.web.resources import Resources

log = logging.getLogger(__name__)
T = TypeVar("T")


def metrics_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set, else open."""
    resources: Resources = connection.app.state.resources
    if not authorized(connection.headers.get("authorization"), resources.settings.metrics_token):
        raise AuthenticationFailed("metrics need `Authorization: Bearer <METRICS_TOKEN>`", invalid_token=False)


def _gauge(spec: ScrapeGauge, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(spec.name, spec.documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


async def _within(seconds: float, read: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await read


async def _database(resources: Resources) -> list[Metric]:
    settings = resources.settings
    try:
        async with resources.pool.connection(timeout=settings.db_timeout) as conn:
            await _within(settings.db_timeout, conn.execute("SELECT 1"))
        up = 1
    except Exception as exc:  # noqa: BLE001 - the gauge is the answer
        log.warning("metrics: PostgreSQL did not answer (%s)", first_line(exc))
        up = 0
    stats = resources.pool.get_stats()
    pool = GaugeMetricFamily(DB_POOL.name, DB_POOL.documentation, labels=["state"])
    for state, key in (("size", "pool_size"), ("available", "pool_available"), ("waiting", "requests_waiting")):
        pool.add_metric([state], stats.get(key, 0))
    figures: list[Metric] = [_gauge(DB_UP, up), pool]
    if replicas := resources.reads.status():  # as the replica monitor last measured them: no query here
        lag = GaugeMetricFamily(DB_REPLICA_LAG.name, DB_REPLICA_LAG.documentation, labels=["replica"])
        for replica in replicas:
            if replica.lag_seconds is not None:
                lag.add_metric([replica.name], replica.lag_seconds)
        figures.append(lag)
    return figures


async def _redis(resources: Resources) -> list[Metric]:
    settings, client = resources.settings, resources.redis
    try:
        await _within(settings.redis_timeout, client.ping())
    except Exception as exc:  # noqa: BLE001 - the gauge is the answer
        log.warning("metrics: Redis did not answer (%s)", first_line(exc))
        return [_gauge(REDIS_UP, 0)]
    figures: list[Metric] = [_gauge(REDIS_UP, 1)]
    try:
        stream = await _within(settings.redis_timeout * 2, stream_state(client, resources.shards))
        online = await _within(
            settings.redis_timeout * 2, online_members(client, resources.shards, settings.metrics_top_communities)
        )
    except Exception as exc:  # noqa: BLE001 - left out of this scrape (absent, not a false 0)
        log.warning("metrics: could not read the live figures from Redis (%s)", first_line(exc))
        return figures
    per_community = GaugeMetricFamily(COMMUNITY_ONLINE.name, COMMUNITY_ONLINE.documentation, labels=["community_id"])
    for community, members in online.busiest:
        per_community.add_metric([str(community)], members)
    return [
        *figures,
        _gauge(STREAM_BACKLOG, stream.backlog),
        _gauge(INGEST_LAG, stream.oldest_age),
        _gauge(ONLINE_MEMBERS, online.total),
        per_community,
    ]


def now() -> datetime:
    """The moment the surge figures are computed for (tests replace it)."""
    return datetime.now(UTC)


async def _surges(resources: Resources) -> list[Metric]:
    if resources.settings.metrics_surge_communities == 0:
        return []
    try:
        rows = await resources.surges.read(now())
    except Exception as exc:  # noqa: BLE001 - left out of this scrape (absent, not a false 0)
        log.warning("metrics: could not read the community surges (%s)", first_line(exc))
        return []
    labels = ["community_id", "signal"]
    families = {
        spec: GaugeMetricFamily(spec.name, spec.documentation, labels=labels)
        for spec in (COMMUNITY_SURGE_RATIO, COMMUNITY_SURGE_LAST_HOUR, COMMUNITY_SURGE_BASELINE)
    }
    for row in rows:
        key = [str(row.community_id), row.signal]
        families[COMMUNITY_SURGE_RATIO].add_metric(key, row.ratio)
        families[COMMUNITY_SURGE_LAST_HOUR].add_metric(key, row.last_hour)
        families[COMMUNITY_SURGE_BASELINE].add_metric(key, row.baseline)
    return list(families.values())


async def scrape_time_figures(resources: Resources) -> list[Metric]:
    """The figures read from PostgreSQL and Redis for one scrape (all asked at once)."""
    database, live, surging = await asyncio.gather(_database(resources), _redis(resources), _surges(resources))
    return [*database, *live, *surging]


class MetricsController(Controller):
    """Prometheus scrape endpoint; outside the authentication middleware, with its own optional token."""

    path = "/metrics"
    include_in_schema = False

    @get("/", guards=[metrics_token], media_type=CONTENT_TYPE)
    async def metrics(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        resources: Resources = request.app.state.resources
        figures = await scrape_time_figures(resources)
        # Reading the other processes' files is disk work: off the event loop.
        body = await asyncio.to_thread(render, figures)
        return Response(body, media_type=CONTENT_TYPE)

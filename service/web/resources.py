"""What one API process holds open (pool, Redis client, engine), and the dependency that hands it out."""

from __future__ import annotations

from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from service.auth.keys import ApiKeys
from service.auth.ratelimit import RateLimiter
from service.auth.tokens import TokenCache
from service.core.db import Engine
from service.core.geoip import GeoResolver, Network
from service.core.settings import Settings
from service.errorlog.recorder import ErrorRecorder
from service.live.client import AsyncRedis
from service.live.keys import Shards
from service.live.push import LiveHub
from service.live.writer import LiveWriter
from service.storage.migrations import SqlFile
from service.storage.replicas import ReadRouter
from service.storage.surges import SurgeCache
from service.tasks.worker import TaskQueue


class Resources:
    """What one API process holds open: opened in the lifespan, handed to handlers by `provide_resources`.

    A plain class on purpose: Litestar validates dependency values against their annotation, and a plain
    class costs an isinstance check where a dataclass would be converted field by field on every request.
    """

    __slots__ = (
        "engine",
        "errors",
        "geoip",
        "hub",
        "keys",
        "limiter",
        "live",
        "pool",
        "proxies",
        "queue",
        "reads",
        "redis",
        "schema",
        "settings",
        "shards",
        "surges",
        "tokens",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        pool: AsyncConnectionPool,
        reads: ReadRouter,
        redis: AsyncRedis,
        shards: Shards,
        engine: Engine,
        schema: list[SqlFile],
        live: LiveWriter,
        geoip: GeoResolver | None,
        proxies: list[Network],
        queue: TaskQueue,
        errors: ErrorRecorder,
        limiter: RateLimiter,
        hub: LiveHub,
    ) -> None:
        self.settings = settings
        self.pool = pool  # the primary: writes, and reads of what the same request wrote
        self.reads = reads  # report and listing reads: `await reads.run(lambda conn: ...)`, on a replica if fit
        self.redis = redis
        self.shards = shards  # which shard holds a community's live state
        self.engine = engine
        self.schema = schema  # the migrations and rollups this engine should have applied
        self.live = live
        self.geoip = geoip
        self.proxies = proxies  # TRUSTED_PROXIES, parsed once
        self.queue = queue  # enqueues runs asked for through the API
        self.errors = errors  # records unhandled exceptions as error logs
        self.limiter = limiter  # the tracking rate limit, flushed to Redis in the background
        self.hub = hub  # the live streams' subscriptions and their ticker
        self.tokens = TokenCache(settings)  # verified bearer tokens, valid for these settings only
        self.surges = SurgeCache(pool, settings)  # the community surge figures /metrics exports, a minute old at most
        self.keys = ApiKeys(pool, redis)  # API keys: checked through Redis, their last use flushed in the background


def provide_resources(state: State) -> Resources:
    """Dependency: the process's open resources."""
    resources: Resources = state.resources
    return resources

"""Liveness (`/health`) and readiness (`/ready`: database, Redis and schema checked) endpoints."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from service.core.errors import first_line
from service.live.client import Master, cluster_masters
from service.storage.migrations import pending
from service.storage.replicas import ReplicaStatus
from service.web.resources import Resources


class Check(msgspec.Struct, omit_defaults=True):
    """The outcome of one readiness check."""

    ok: bool
    error: str | None = None
    pending: list[str] | None = None


class Readiness(msgspec.Struct, omit_defaults=True):
    """Whether this process can serve: each check by name, and the storage engine in use; the read replicas
    (DATABASE_REPLICA_URLS, left out when there are none) as the monitor last saw them, which never fail
    readiness: without them the reads go to the primary."""

    status: str  # "ready" or "not ready"
    engine: str
    checks: dict[str, Check]
    failing: list[str]
    replicas: list[ReplicaStatus] = []
    redis_cluster: list[Master] = []  # the masters of the live Redis Cluster (REDIS_CLUSTER), left out otherwise


class Liveness(msgspec.Struct):
    status: str


async def _database_and_schema(resources: Resources) -> tuple[Check, Check]:
    """One connection answers both: is PostgreSQL up, and is every migration for this engine applied?"""
    try:
        async with resources.pool.connection(timeout=resources.settings.db_timeout) as conn:
            cur = await conn.execute("SELECT name, checksum FROM schema_migrations")
            applied = {name: checksum for name, checksum in await cur.fetchall()}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        error = first_line(exc)
        if "schema_migrations" in error and "does not exist" in error:
            return Check(ok=True), Check(ok=False, error="no migrations applied; run `analytics migrate`")
        return Check(ok=False, error=error), Check(ok=False, error="database unreachable")
    missing = pending(resources.schema, applied)
    if missing:
        return Check(ok=True), Check(ok=False, error="migrations pending; run `analytics migrate`", pending=missing)
    return Check(ok=True), Check(ok=True)


async def _redis(resources: Resources) -> tuple[Check, list[Master]]:
    """A single Redis answers PING; a cluster is ready while any master answers (a master that is down fails
    the communities of its slots only), and every master is listed."""
    client = resources.redis
    if not isinstance(client, AsyncRedisCluster):
        await client.ping()
        return Check(ok=True), []
    masters = await cluster_masters(client, resources.settings.redis_timeout)
    down = [m.address for m in masters if not m.up]
    if len(down) == len(masters):
        return Check(ok=False, error="no master of the Redis Cluster answers"), masters
    return Check(ok=True, error=f"masters down: {', '.join(down)}" if down else None), masters


class HealthController(Controller):
    """Probes for orchestrators and load balancers; no authentication."""

    tags = ["health"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> Liveness:
        return Liveness(status="ok")

    @get("/ready", summary="Readiness: PostgreSQL and Redis reachable, schema current", status_code=HTTP_200_OK)
    async def ready(self, resources: NamedDependency[Resources]) -> Response[Readiness]:
        timeout = resources.settings.db_timeout + 1

        async def database() -> tuple[Check, Check]:
            try:
                return await asyncio.wait_for(_database_and_schema(resources), timeout)
            except TimeoutError:
                return Check(ok=False, error=f"no answer within {timeout:g}s"), Check(ok=False, error="unknown")

        async def live() -> tuple[Check, list[Master]]:
            seconds = resources.settings.redis_timeout + 1
            try:
                return await asyncio.wait_for(_redis(resources), seconds)
            except TimeoutError:
                return Check(ok=False, error=f"no answer within {seconds:g}s"), []
            except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
                return Check(ok=False, error=first_line(exc)), []

        (db, schema), (cache, masters) = await asyncio.gather(database(), live())
        checks = {"database": db, "redis": cache, "migrations": schema}
        failing = [name for name, check in checks.items() if not check.ok]
        body = Readiness(
            status="not ready" if failing else "ready",
            engine=resources.engine,
            checks=checks,
            failing=failing,
            replicas=resources.reads.status(),
            redis_cluster=masters,
        )
        return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE if failing else HTTP_200_OK)

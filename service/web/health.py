"""Liveness (`/health`) and readiness (`/ready`: database, Redis and schema checked) endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from service.core.errors import first_line
from service.storage.migrations import pending
from service.web.resources import Resources


class Check(msgspec.Struct, omit_defaults=True):
    """The outcome of one readiness check."""

    ok: bool
    error: str | None = None
    pending: list[str] | None = None


class Readiness(msgspec.Struct):
    """Whether this process can serve: each check by name, and the storage engine in use."""

    status: str  # "ready" or "not ready"
    engine: str
    checks: dict[str, Check]
    failing: list[str]


class Liveness(msgspec.Struct):
    status: str


async def _within(seconds: float, check: Awaitable[Check]) -> Check:
    try:
        return await asyncio.wait_for(check, seconds)
    except TimeoutError:
        return Check(ok=False, error=f"no answer within {seconds:g}s")
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return Check(ok=False, error=first_line(exc))


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


async def _redis(resources: Resources) -> Check:
    await resources.redis.ping()
    return Check(ok=True)


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

        (db, schema), cache = await asyncio.gather(
            database(), _within(resources.settings.redis_timeout + 1, _redis(resources))
        )
        checks = {"database": db, "redis": cache, "migrations": schema}
        failing = [name for name, check in checks.items() if not check.ok]
        body = Readiness(
            status="not ready" if failing else "ready", engine=resources.engine, checks=checks, failing=failing
        )
        return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE if failing else HTTP_200_OK)

"""Rate limits shared by every API process: a fixed one-minute window per principal, counted in Redis.

One pipelined INCR + EXPIRE per request. A fixed window lets a client send up to twice the limit across a
window edge; that is the accepted price of one round trip (a sliding log would need a sorted set per client).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.auth.guards import principal_of
from service.errors import TooManyRequests, Unavailable
from service.ingest.geoip import client_address
from service.live import rate_key
from service.resources import Resources

WINDOW = 60


async def hit(client: aioredis.Redis, bucket: str, who: str, limit: int, now: float | None = None) -> int:
    """Count one request of `who` in `bucket`; TooManyRequests past `limit` in the current minute."""
    now = time.time() if now is None else now
    key = rate_key(bucket, who, int(now // WINDOW))
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW)
            count, _ = await pipe.execute()
    except redis.exceptions.RedisError as exc:
        raise Unavailable(
            f"The live store (Redis) is unavailable ({type(exc).__name__}); the request was not processed, retry later",
            retry_after=5,
        ) from None
    if count > limit:
        retry_after = max(1, int(WINDOW - now % WINDOW))
        raise TooManyRequests(f"rate limit of {limit} {bucket} requests per minute reached", retry_after, limit)
    return int(count)


def address_of(connection: ASGIConnection[Any, Any, Any, Any], resources: Resources) -> str:
    """The client's address (X-Forwarded-For believed only from TRUSTED_PROXIES)."""
    peer = connection.client.host if connection.client else None
    address = client_address(peer, connection.headers.get("x-forwarded-for"), resources.proxies)
    return str(address) if address is not None else "unknown"


async def track_rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the tracking routes: RATE_LIMIT_TRACK requests per minute per principal."""
    resources: Resources = connection.app.state.resources
    principal = principal_of(connection)
    await hit(resources.redis, "track", f"{principal.kind}:{principal.subject}", resources.settings.rate_limit_track)


async def auth_rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the sign-in route: RATE_LIMIT_AUTH attempts per minute per client address."""
    resources: Resources = connection.app.state.resources
    await hit(resources.redis, "auth", address_of(connection, resources), resources.settings.rate_limit_auth)

"""The rate limits as the routes apply them, with what one API process holds (`Resources`)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.auth.guards import principal_of
from service.auth.ratelimit import hit
from service.core.geoip import connection_address
from service.web.resources import Resources


def address_of(connection: ASGIConnection[Any, Any, Any, Any], resources: Resources) -> str:
    """The client's address (X-Forwarded-For believed only from TRUSTED_PROXIES)."""
    address = connection_address(connection, resources.proxies)
    return str(address) if address is not None else "unknown"


def admit_tracking(connection: ASGIConnection[Any, Any, Any, Any], resources: Resources) -> None:
    """The tracking routes' limit: RATE_LIMIT_TRACK requests per minute per principal (decided locally, shared
    through Redis by the limiter's flushes). Called first thing by the tracking handlers rather than as a guard:
    Litestar copies the route handler for every guard call, which costs more than the check itself."""
    principal = principal_of(connection)
    resources.limiter.admit("track", principal.key, resources.settings.rate_limit_track)


async def auth_rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the sign-in route: RATE_LIMIT_AUTH attempts per minute per client address (one round trip)."""
    resources: Resources = connection.app.state.resources
    await hit(resources.redis, "auth", address_of(connection, resources), resources.settings.rate_limit_auth)

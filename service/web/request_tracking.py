"""Request tracking: API requests per day and per user with their response times (the daily snapshot's
`api_requests` and `avg_response_time`), and unhandled exceptions recorded as grouped error logs.

Counting costs no Redis round trip per request: each process adds to in-memory counters that a background
task flushes in one pipeline every `FLUSH_SECONDS` (and once more at shutdown). A process that dies loses at
most that many seconds of counts, which these figures can afford.
"""

from __future__ import annotations

import logging
import traceback
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

from litestar import Litestar, Request, Response
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Scope

from service.auth.tokens import Principal
from service.core.errors import first_line
from service.core.geoip import connection_address
from service.errorlog.records import NewErrorLog
from service.live.client import AsyncRedis
from service.live.counters import add_requests
from service.observability.request_metrics import route_of
from service.web.resources import Resources

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0


class RequestCounter:
    """One process's request counts not yet in Redis."""

    def __init__(self) -> None:
        self._days: dict[date, list[Any]] = {}

    def add(self, day: date, duration_ms: float, user_id: int | None) -> None:
        counts = self._days.get(day)
        if counts is None:
            counts = self._days[day] = [0, 0.0, defaultdict(int)]
        counts[0] += 1
        counts[1] += duration_ms
        if user_id is not None:
            counts[2][user_id] += 1

    async def flush(self, client: AsyncRedis) -> None:
        """Move the counts to Redis; kept for the next flush when Redis cannot take them."""
        if not self._days:
            return
        days, self._days = self._days, {}
        try:
            await add_requests(client, {day: (c[0], c[1], dict(c[2])) for day, c in days.items()})
        except Exception as exc:  # noqa: BLE001 - Redis down: keep the counts and try again later
            log.warning("request counts not flushed to Redis (%s); retrying", first_line(exc))
            for day, (requests, duration, users) in days.items():
                mine = self._days.setdefault(day, [0, 0.0, defaultdict(int)])
                mine[0] += requests
                mine[1] += duration
                for user_id, n in users.items():
                    mine[2][user_id] += n


def api_request_finished(counter: RequestCounter) -> Callable[[Scope, float], None]:
    """What the request timing (service/observability/request_metrics.py) calls for each finished request: /api/
    requests (answered, refused or failed) go into the counter with their user, when authentication found one."""

    def finished(scope: Scope, duration: float) -> None:
        if scope["path"].startswith("/api/"):
            user = scope.get("user")  # set by the authentication middleware, deeper in the same scope
            user_id = user.user_id if isinstance(user, Principal) else None
            counter.add(datetime.now(UTC).date(), duration * 1000, user_id)

    return finished


def kept_address(address: IPv4Address | IPv6Address | None, mode: str) -> str | None:
    """What ERROR_LOG_IP keeps of a client address: its network (IPv4 /24, IPv6 /48: enough to see a pattern,
    not who it was), the whole address, or nothing."""
    if address is None or mode == "none":
        return None
    if mode == "full":
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ip_network(f"{address}/{prefix}", strict=False).network_address)


def unhandled_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """The answer to an exception nothing else handled: a generic 500 (no stack trace), the exception logged
    and recorded as an error log with the request's context, grouped like every other error."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    app: Litestar = request.app
    resources: Resources | None = getattr(app.state, "resources", None)
    if resources is not None:
        user = request.scope.get("user")
        address = connection_address(request, resources.proxies)
        resources.errors.submit(
            NewErrorLog(
                level="error",
                message=f"{type(exc).__name__}: {exc}"[:2000],
                stack_trace="".join(traceback.format_exception(exc))[-20_000:],
                url=str(request.url)[:2000],
                method=request.method,
                ip_address=kept_address(address, resources.settings.error_log_ip),
                user_agent=request.headers.get("user-agent"),
                user_id=user.user_id if isinstance(user, Principal) else None,
                extra_data={"route": route_of(request.scope)},
            )
        )
    body: dict[str, object] = {"status_code": HTTP_500_INTERNAL_SERVER_ERROR, "detail": "Internal server error"}
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR)

"""Request tracking: API requests per day and per user with response times, read by the daily snapshot; an
unhandled exception answers a generic 500 and becomes a grouped error log with the request's context."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address

import redis
from litestar import get
from litestar.params import FromPath
from litestar.testing import TestClient
from litestar.types import Receive, Scope, Send

from service.app import create_app
from service.core.settings import Settings
from service.live.keys import requests_key
from service.tasks.worker import execute
from service.web.request_tracking import kept_address
from tests.support import bearer, rows


def test_requests_are_counted_per_day_and_user_and_reach_the_daily_snapshot(
    settings: Settings, database_url: str, redis_url: str
) -> None:
    user, staff = bearer(settings, "7"), bearer(settings, "1", staff=True)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.get("/api/auth/me/", headers=user).status_code == 200
        assert client.get("/api/tasks/", headers=user).status_code == 403  # refused requests count too
        assert client.get("/api/tasks/", headers=staff).status_code == 200
        assert client.get("/api/auth/me/").status_code == 401  # anonymous: counted, attributed to nobody
        assert client.get("/health").status_code == 200  # not an API request
    # Leaving the client ran the lifespan's end, which flushes the process's counts.
    day = datetime.now(UTC).date()
    stored = redis.Redis.from_url(redis_url).hgetall(requests_key(day))
    assert int(stored[b"count"]) == 6
    assert int(stored[b"user:7"]) == 4
    assert int(stored[b"user:1"]) == 1
    duration_ms = float(stored[b"duration_ms_sum"])
    assert duration_ms > 0

    outcome = execute(settings, "update_daily_analytics")
    assert outcome.status == "success", outcome.error
    assert rows(database_url, "SELECT api_requests, avg_response_time FROM daily_analytics WHERE date = %s", day) == [
        (6, round(duration_ms / 6, 2))
    ]


@get("/api/test-failure/{n:int}/", sync_to_thread=False)
def failing(n: FromPath[int]) -> None:
    """A route that fails the way a bug would."""
    raise RuntimeError(f"order {n} has no customer")


def test_unhandled_exception_is_a_generic_500_and_a_grouped_error_log(settings: Settings, database_url: str) -> None:
    app = create_app(settings)
    app.register(failing)
    handler = app.asgi_handler

    async def from_an_address(scope: Scope, receive: Receive, send: Send) -> None:
        # The test client's peer is the name "testclient"; a served request's is an address.
        await handler({**scope, "client": ("203.0.113.9", 50000)} if scope["type"] == "http" else scope, receive, send)

    app.asgi_handler = from_an_address
    with TestClient(app, raise_server_exceptions=False) as client:
        for n in (41, 42):
            response = client.get(
                f"/api/test-failure/{n}/", headers={**bearer(settings, "7"), "User-Agent": "probe/1.0"}
            )
            assert response.status_code == 500
            assert response.json() == {"status_code": 500, "detail": "Internal server error"}
            assert "Traceback" not in response.text and "customer" not in response.text
    logs = rows(
        database_url,
        "SELECT level, message, method, url, user_id, user_agent, host(ip_address), extra_data, group_id, "
        "stack_trace LIKE '%%RuntimeError: order%%' FROM error_logs ORDER BY id",
    )
    assert [log[:8] for log in logs] == [
        ("error", f"RuntimeError: order {n} has no customer", "GET", f"http://testserver.local/api/test-failure/{n}",
         7, "probe/1.0", "203.0.113.0", {"route": "/api/test-failure/{n}/"})  # ERROR_LOG_IP: /24 by default
        for n in (41, 42)
    ]  # fmt: skip
    assert all(log[9] for log in logs), "the stack trace is kept in the log"
    assert logs[0][8] is not None and logs[0][8] == logs[1][8], "both failures share one group"
    assert rows(database_url, "SELECT occurrences, users_affected, status FROM error_groups") == [(2, 1, "unresolved")]


def test_error_log_ip_keeps_the_network_the_address_or_nothing() -> None:
    v4, v6 = ip_address("203.0.113.9"), ip_address("2001:db8:1234:5678::9")
    assert (kept_address(v4, "truncated"), kept_address(v6, "truncated")) == ("203.0.113.0", "2001:db8:1234::")
    assert (kept_address(v4, "full"), kept_address(v6, "full")) == ("203.0.113.9", "2001:db8:1234:5678::9")
    assert kept_address(v4, "none") is None and kept_address(None, "full") is None

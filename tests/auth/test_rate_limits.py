"""Rate limits are per principal and shared by every API process through Redis (flushed in the background)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import TestClient

from service.app import create_app
from service.auth.ratelimit import WINDOW, RateLimiter
from service.core.errors import TooManyRequests
from service.core.settings import Settings
from service.live.keys import rate_key
from service.tools.localstack import RedisServer
from tests.support import bearer

TRACK = {"community_id": 5, "user_id": 7, "activity_type": "view"}
TRACK_PATH = "/api/community-analytics/track/"
Client = TestClient[Any]


def clear_of_window_edge(margin: float = 5.0) -> None:
    """Wait for the next minute when fewer than `margin` seconds are left of this one, so that the requests of
    a test are counted in one window."""
    left = WINDOW - time.time() % WINDOW
    if left < margin:
        time.sleep(left + 0.05)


def flush(client: Client) -> None:
    """Flush the app's rate-limit counts to Redis now, in the app's event loop (where its Redis client lives)."""
    client.blocking_portal.call(client.app.state.resources.limiter.flush)


def shared_count(redis_url: str, who: str) -> int:
    """The count of `who`'s tracking requests in the current minute, as Redis holds it for every process."""
    client = redis.Redis.from_url(redis_url)
    try:
        value = client.get(rate_key("track", who, int(time.time() // WINDOW)))
    finally:
        client.close()
    return int(value) if value is not None else 0


def test_tracking_limit_is_shared_across_processes_and_per_principal(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, RATE_LIMIT_TRACK="4")
    user, other = bearer(settings, "7"), bearer(settings, "8")
    # Two application instances stand for two API processes: they share nothing but Redis.
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        clear_of_window_edge(margin=15.0)  # once both have started (seconds on a loaded machine): one window
        statuses = [
            (first if i % 2 else second).post(TRACK_PATH, json=TRACK, headers=user).status_code for i in range(4)
        ]
        assert statuses == [202] * 4
        flush(second)
        flush(first)  # reads back the total after the second's counts were added
        assert shared_count(redis_url, "user:7") == 4
        # The first admitted only 2 requests itself: it refuses because the count is shared.
        limited = first.post("/api/community-analytics/track/batch/", json=[TRACK], headers=user)
        assert limited.status_code == 429
        assert limited.json()["detail"] == "rate limit of 4 track requests per minute reached"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["ratelimit-limit"] == "4"
        # The second last read a total of 2: it admits on its own count until its next flush tells it more
        # (the overshoot the limiter accepts, one flush interval of one process's requests), then refuses.
        assert second.post(TRACK_PATH, json=TRACK, headers=user).status_code == 202
        flush(second)
        assert shared_count(redis_url, "user:7") == 5
        assert second.post(TRACK_PATH, json=TRACK, headers=user).status_code == 429
        # Another principal has its own budget.
        mine = {**TRACK, "user_id": 8}
        assert second.post(TRACK_PATH, json=mine, headers=other).status_code == 202
        assert first.post(TRACK_PATH, json=mine, headers=other).status_code == 202


def test_one_process_never_admits_more_than_the_limit(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, RATE_LIMIT_TRACK="3")
    clear_of_window_edge()
    with TestClient(create_app(settings)) as client:
        service = bearer(settings, "backend", service=True)
        statuses = [client.post(TRACK_PATH, json=TRACK, headers=service).status_code for _ in range(5)]
        assert statuses == [202, 202, 202, 429, 429]  # decided on its own counts, flushed or not
        flush(client)
        assert shared_count(redis_url, "service:backend") == 3  # refused requests are not counted


def test_counts_reach_redis_in_the_background(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url)
    clear_of_window_edge()
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.post(TRACK_PATH, json=TRACK, headers=bearer(settings, "7")).status_code == 202
        deadline = time.monotonic() + 5  # the lifespan's task flushes every FLUSH_SECONDS (0.1 s)
        while shared_count(redis_url, "user:7") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert shared_count(redis_url, "user:7") == 3


def test_redis_down_the_limiter_decides_alone_and_catches_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        with asyncio.Runner() as runner:
            client = aioredis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
            limiter = RateLimiter(client)
            now = time.time()
            server.stop()
            for _ in range(3):
                limiter.admit("track", "user:7", 3, now)
            with caplog.at_level(logging.WARNING, "service.auth.ratelimit"):
                runner.run(limiter.flush())  # does not raise
                runner.run(limiter.flush())
            warnings = [r.getMessage() for r in caplog.records]
            assert len(warnings) == 1  # once, not at every flush
            assert warnings[0].startswith("rate-limit counts not flushed to Redis (")
            assert warnings[0].endswith("): limits are enforced per process until it is back")
            with pytest.raises(TooManyRequests):
                limiter.admit("track", "user:7", 3, now)  # still limited, by this process's own count
            assert limiter.unflushed() == 3
            server.start()
            runner.run(limiter.flush())
            assert limiter.unflushed() == 0
            assert runner.run(client.get(rate_key("track", "user:7", int(now // WINDOW)))) == b"3"
            runner.run(client.aclose())
    finally:
        server.stop()


def test_without_redis_tracking_is_still_limited_per_process(
    settings_for: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        settings = settings_for(database_url, server.url, RATE_LIMIT_TRACK="2")
        clear_of_window_edge()
        with TestClient(create_app(settings)) as client:
            user = bearer(settings, "7")
            assert client.post(TRACK_PATH, json=TRACK, headers=user).status_code == 202
            server.stop()
            flush(client)  # fails (logged); the limiter goes on counting in the process
            # Admitted by the limiter, then refused by the tracking itself: it cannot reach the stream.
            assert client.post(TRACK_PATH, json=TRACK, headers=user).status_code == 503
            # The limit holds without Redis: decided on this process's own count, not a 500.
            assert client.post(TRACK_PATH, json=TRACK, headers=user).status_code == 429
    finally:
        server.stop()


def test_sign_in_attempts_are_limited_per_address(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, RATE_LIMIT_AUTH="3")
    clear_of_window_edge()
    with TestClient(create_app(settings)) as client, TestClient(create_app(settings)) as other_process:
        statuses = [
            client.post("/api/auth/session/", headers={"Authorization": "Bearer wrong"}).status_code for _ in range(2)
        ]
        assert statuses == [401, 401]
        # Counted straight in Redis: the third attempt, through another process, spends the address's budget.
        third = other_process.post("/api/auth/session/", headers={"Authorization": "Bearer wrong"})
        assert third.status_code == 401
        blocked = client.post("/api/auth/session/", headers=bearer(settings, "7"))
        assert blocked.status_code == 429  # even with a good token: the address spent its attempts
        assert blocked.headers["ratelimit-limit"] == "3"

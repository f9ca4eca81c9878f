"""Rate limits are per principal and shared by every API process through Redis."""

from __future__ import annotations

from collections.abc import Callable

from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support import bearer

TRACK = {"community_id": 5, "user_id": 7, "activity_type": "view"}


def test_tracking_limit_is_shared_across_processes_and_per_principal(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, RATE_LIMIT_TRACK="4")
    user, other = bearer(settings, "7"), bearer(settings, "8")
    # Two application instances stand for two API processes: they share nothing but Redis.
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        statuses = [
            (first if i % 2 else second).post("/api/community-analytics/track/", json=TRACK, headers=user).status_code
            for i in range(4)
        ]
        assert statuses == [202] * 4
        limited = first.post("/api/community-analytics/track/batch/", json=[TRACK], headers=user)
        assert limited.status_code == 429
        assert limited.json()["detail"] == "rate limit of 4 track requests per minute reached"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["ratelimit-limit"] == "4"
        # Another principal has its own budget.
        mine = {**TRACK, "user_id": 8}
        assert second.post("/api/community-analytics/track/", json=mine, headers=other).status_code == 202


def test_sign_in_attempts_are_limited_per_address(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, RATE_LIMIT_AUTH="3")
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post("/api/auth/session/", headers={"Authorization": "Bearer wrong"}).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        blocked = client.post("/api/auth/session/", headers=bearer(settings, "7"))
        assert blocked.status_code == 429  # even with a good token: the address spent its attempts

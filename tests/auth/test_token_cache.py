"""Verified tokens are cached per application: never past their expiry, never across settings, never failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.auth.tokens import TokenCache, issue_token
from service.core.errors import AuthenticationFailed
from service.core.settings import Settings
from tests.support import TEST_JWT_SECRET

Client = TestClient[Any]
ME = "/api/auth/me/"


def _me(client: Client, token: str) -> tuple[int, str]:
    """The status of GET /api/auth/me/ with `token`, and the reason of a refusal."""
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json().get("detail", "")


def _cache(client: Client) -> TokenCache:
    cache: TokenCache = client.app.state.resources.tokens
    return cache


def test_a_cached_token_is_refused_once_expired(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, JWT_LEEWAY="0")
    token = issue_token(settings, "7", lifetime=2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    with TestClient(create_app(settings)) as client:
        assert _me(client, token) == (200, "")
        assert _me(client, token) == (200, "")  # from the cache
        assert len(_cache(client)) == 1
        while time.time() < expires:  # until the token's own expiry (at most 2 s)
            time.sleep(0.05)
        assert _me(client, token) == (401, "token expired")
        assert len(_cache(client)) == 0  # dropped, and the refusal is not cached


def test_leeway_extends_a_cached_token_as_it_does_a_decoded_one(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, JWT_LEEWAY="30")
    cache = TokenCache(settings)
    now = int(time.time())
    expired = jwt.encode({"sub": "7", "exp": now - 5}, TEST_JWT_SECRET, algorithm="HS256")  # within the leeway
    first = cache.principal(expired)
    assert cache.principal(expired) is first  # a hit
    too_old = jwt.encode({"sub": "7", "exp": now - 60}, TEST_JWT_SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationFailed, match="token expired"):
        cache.principal(too_old)


def test_a_token_of_one_apps_settings_is_not_accepted_by_another(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url)
    other_secret = settings_for(database_url, redis_url, JWT_SECRET="another-secret-of-at-least-32-characters")
    audience = settings_for(database_url, redis_url, JWT_AUDIENCE="analytics")
    token = issue_token(settings, "7")
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(other_secret)) as second,
        TestClient(create_app(audience)) as third,
    ):
        assert _me(first, token) == (200, "")  # now cached by the first app
        assert _me(second, token) == (401, "token signature is not valid")
        assert _me(third, token) == (401, "token lacks the `aud` claim")
        assert _me(first, token) == (200, "")
        assert (len(_cache(first)), len(_cache(second)), len(_cache(third))) == (1, 0, 0)


def test_failures_are_not_cached(settings_for: Callable[..., Settings]) -> None:
    cache = TokenCache(settings_for(None, None))
    forged = jwt.encode({"sub": "7", "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    for _ in range(2):  # verified again, and refused with the same reason, every time
        with pytest.raises(AuthenticationFailed, match="token signature is not valid"):
            cache.principal(forged)
    assert len(cache) == 0


def test_the_cache_is_bounded_and_keeps_the_recently_used(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(None, None)
    cache = TokenCache(settings, size=2)
    one, two, three = (issue_token(settings, str(user)) for user in (1, 2, 3))
    first_one, first_two = cache.principal(one), cache.principal(two)
    assert cache.principal(one) is first_one  # a hit: `one` is now the most recently used
    cache.principal(three)  # evicts `two`, the least recently used
    assert len(cache) == 2
    assert cache.principal(one) is first_one
    again = cache.principal(two)  # decoded again: equal, but a new object
    assert again == first_two
    assert again is not first_two

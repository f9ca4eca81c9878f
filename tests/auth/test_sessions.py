"""Browser sessions: signed in from a token, an HttpOnly cookie, CSRF on cookie writes, logout."""

from __future__ import annotations

import time

import redis
from litestar.testing import TestClient

from service.app import create_app
from service.auth.sessions import CSRF_COOKIE, SESSION_COOKIE
from service.auth.tokens import issue_token
from service.core.settings import Settings
from tests.support import bearer

TRACK = {"community_id": 5, "user_id": 7, "activity_type": "view"}


def test_session_cookie_flow(settings: Settings, redis_url: str) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/auth/session/", headers=bearer(settings, "7", moderated=[5]))
        assert response.status_code == 201
        body = response.json()
        # The token lives an hour, less than SESSION_TTL (a week): the session ends with the token.
        assert body["identity"]["user_id"] == 7 and 3590 <= body["expires_in"] <= 3600 < settings.session_ttl
        set_cookies = response.headers.get_list("set-cookie")
        session_cookie = next(c for c in set_cookies if c.startswith(f"{SESSION_COOKIE}="))
        assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
        assert "Secure" in session_cookie  # SESSION_COOKIE_SECURE defaults to true
        csrf_cookie = next(c for c in set_cookies if c.startswith(f"{CSRF_COOKIE}="))
        assert "HttpOnly" not in csrf_cookie  # the page's JavaScript reads it to echo it

        # The test client runs over plain http, so it keeps the Secure cookie only when told explicitly.
        session_id = client.cookies.get(SESSION_COOKIE) or session_cookie.split(";")[0].split("=", 1)[1]
        client.cookies.set(SESSION_COOKIE, session_id)
        csrf = body["csrf_token"]

        me = client.get("/api/auth/me/")
        assert me.status_code == 200
        assert me.json()["authenticated_by"] == "session" and me.json()["moderated_communities"] == [5]
        assert client.get("/api/community-analytics/5/realtime/").status_code == 200  # a moderator's read

        refused = client.post("/api/community-analytics/track/", json=TRACK)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["detail"]
        wrong = client.post("/api/community-analytics/track/", json=TRACK, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403
        accepted = client.post("/api/community-analytics/track/", json=TRACK, headers={"X-CSRF-Token": csrf})
        assert accepted.status_code == 202

        # Only a hash of the session id is stored in Redis.
        keys = redis.Redis.from_url(redis_url).keys("analytics:session:*")
        assert len(keys) == 1 and session_id.encode() not in keys[0]

        assert client.delete("/api/auth/session/", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert redis.Redis.from_url(redis_url).keys("analytics:session:*") == []
        client.cookies.set(SESSION_COOKIE, session_id)  # a stolen copy of the cookie is dead too
        gone = client.get("/api/auth/me/")
        assert (gone.status_code, gone.json()["detail"]) == (401, "session expired or logged out; sign in again")


def test_sign_in_needs_a_valid_token(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        missing = client.post("/api/auth/session/")
        assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
        bad = client.post("/api/auth/session/", headers={"Authorization": "Bearer nope"})
        assert (bad.status_code, bad.json()["detail"]) == (401, "token is malformed (not a signed JWT)")
        assert SESSION_COOKIE not in client.cookies


def test_bearer_requests_need_no_csrf_token(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/community-analytics/track/", json=TRACK, headers=bearer(settings, "7"))
        assert response.status_code == 202


def test_a_session_never_outlives_its_token(settings: Settings, redis_url: str) -> None:
    token = issue_token(settings, "7", lifetime=2)
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/auth/session/", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201 and response.json()["expires_in"] <= 2
        session_id = response.headers.get_list("set-cookie")[0].split(";")[0].split("=", 1)[1]
        client.cookies.set(SESSION_COOKIE, session_id)
        assert client.get("/api/auth/me/").status_code == 200
        assert (
            0 < redis.Redis.from_url(redis_url).ttl(next(iter(redis.Redis.from_url(redis_url).keys("*session*")))) <= 2
        )
        time.sleep(2.1)
        gone = client.get("/api/auth/me/")
        assert (gone.status_code, gone.json()["detail"]) == (401, "session expired or logged out; sign in again")

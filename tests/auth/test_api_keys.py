"""API keys (`/api/keys/`): created by staff and shown once, stored hashed, listed with their last use, limited to
their scope and communities, revoked at once in every API process, and never written to the logs."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from service.app import create_app
from service.auth.keys import KEY_FORMAT, REVOKED, ApiKeys
from service.core.settings import Settings
from service.live.keys import api_key_key
from tests.support import bearer, rows

Client = TestClient[Any]
C, OTHER = 5, 6
VIEW = {"community_id": C, "user_id": 7, "activity_type": "view"}


def create(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/keys/", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_is_shown_once_and_stored_hashed(client: Client, database_url: str) -> None:
    before = datetime.now(UTC)
    created = create(client, name="moderators' dashboard", scope="read", communities=[C, C, 12])
    key = created.pop("key")
    assert KEY_FORMAT.fullmatch(key)
    assert created == {
        "id": created["id"], "name": "moderators' dashboard", "scope": "read", "communities": [C, 12],
        "prefix": key[:11], "created_by": "1", "created_at": created["created_at"], "last_used_at": None,
        "revoked_at": None,
    }  # fmt: skip
    assert datetime.fromisoformat(created["created_at"]) >= before - timedelta(seconds=1)
    listed = client.get("/api/keys/").json()
    assert listed["count"] == 1 and listed["results"] == [created]  # no `key` in lists
    # The database holds the key's SHA-256 and its first characters, never the key.
    [(stored_hash, prefix)] = rows(database_url, "SELECT secret_hash, prefix FROM api_keys")
    assert (bytes(stored_hash), prefix) == (hashlib.sha256(key.encode()).digest(), key[:11])
    assert key not in str(rows(database_url, "SELECT * FROM api_keys"))
    second = create(client, name="tracker", scope="track")
    assert second["communities"] is None and second["key"] != key
    assert [k["name"] for k in client.get("/api/keys/").json()["results"]] == ["tracker", "moderators' dashboard"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "read"}, "name"),
        ({"name": "", "scope": "read"}, "name"),
        ({"name": "x" * 101, "scope": "read"}, "name"),
        ({"name": "n"}, "scope"),
        ({"name": "n", "scope": "write"}, "scope"),
        ({"name": "n", "scope": "read", "communities": []}, "communities"),
        ({"name": "n", "scope": "read", "communities": [0]}, "communities[0]"),
        ({"name": "n", "scope": "read", "key": "ak_mine"}, "key"),
        ({"name": "n", "scope": "read", "admin": True}, "admin"),
    ],
)
def test_bad_bodies_are_refused(client: Client, database_url: str, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/keys/", json=body)
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert rows(database_url, "SELECT count(*) FROM api_keys") == [(0,)]


def test_a_read_key_reads_its_communities_reports_and_nothing_else(client: Client) -> None:
    key = as_key(create(client, name="dashboard", scope="read", communities=[C])["key"])
    assert client.get(f"/api/community-analytics/{C}/report/", headers=key).status_code == 200
    assert client.get(f"/api/geo-analytics/{C}/trends/", headers=key).status_code == 200
    refused = [
        client.get(f"/api/community-analytics/{OTHER}/report/", headers=key),
        client.get("/api/community-analytics/", headers=key),
        client.post("/api/community-analytics/track/", json=VIEW, headers=key),
        client.get("/api/keys/", headers=key),
        client.post("/api/auth/session/", headers=key),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "an API key of scope `read` may not call GET /api/keys" in refused[3].json()["detail"]
    me = client.get("/api/auth/me/", headers=key).json()
    assert (me["kind"], me["staff"], me["scope"], me["communities"], me["authenticated_by"]) == (
        "key", False, "read", [C], "api_key"
    )  # fmt: skip


def test_a_track_key_tracks_for_anyone_in_its_communities(client: Client, database_url: str) -> None:
    key = as_key(create(client, name="backend", scope="track", communities=[C])["key"])
    assert client.post("/api/community-analytics/track/", json=VIEW, headers=key).status_code == 202
    other = {**VIEW, "community_id": OTHER}
    answer = client.post("/api/community-analytics/track/batch/", json=[VIEW, other], headers=key)
    assert answer.status_code == 403 and "tracks only communities [5]" in answer.json()["detail"]
    platform = [{"user_id": 7, "activity_type": "page_view"}]  # no community: outside the key's list
    assert client.post("/api/events/", json=platform, headers=key).status_code == 403
    assert client.get(f"/api/community-analytics/{C}/report/", headers=key).status_code == 403
    everywhere = as_key(create(client, name="backend 2", scope="track")["key"])
    assert client.post("/api/events/", json=platform, headers=everywhere).status_code == 202
    assert client.post("/api/community-analytics/track/", json=other, headers=everywhere).status_code == 202


def test_unknown_malformed_and_revoked_keys_are_refused(client: Client) -> None:
    for key, reason in (("ak_" + "z" * 43, "API key is not known"), ("ak_short", "API key is malformed")):
        answer = client.get(f"/api/community-analytics/{C}/report/", headers=as_key(key))
        assert answer.status_code == 401 and reason in answer.json()["detail"], answer.text
    created = create(client, name="soon gone", scope="read")
    key = as_key(created["key"])
    assert client.get(f"/api/community-analytics/{C}/report/", headers=key).status_code == 200
    assert client.delete(f"/api/keys/{created['id']}/").status_code == 204
    answer = client.get(f"/api/community-analytics/{C}/report/", headers=key)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    assert client.delete(f"/api/keys/{created['id']}/").status_code == 204  # again: still revoked
    assert client.delete("/api/keys/999999/").status_code == 404
    [listed] = client.get("/api/keys/").json()["results"]
    assert listed["revoked_at"] is not None


def test_revoking_reaches_every_api_process_at_once(settings: Settings) -> None:
    """Two API processes (two apps, each with its own resources) share PostgreSQL and Redis: a key both have used
    is refused by both as soon as one of them revoked it."""
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.headers.update(bearer(settings, "1", staff=True))
        created = create(first, name="shared", scope="read")
        key = as_key(created["key"])
        for app in (first, second):
            assert app.get(f"/api/community-analytics/{C}/realtime/", headers=key).status_code == 200
        assert first.delete(f"/api/keys/{created['id']}/").status_code == 204
        for app in (second, first):
            assert app.get(f"/api/community-analytics/{C}/realtime/", headers=key).status_code == 401


def test_a_lookup_from_before_the_revocation_cannot_bring_the_key_back(
    client: Client, settings: Settings, redis_url: str
) -> None:
    """A request that read the key from PostgreSQL just before the revocation caches it with SET NX: after the
    revocation's marker, that write does nothing."""
    created = create(client, name="raced", scope="read")
    hashed = hashlib.sha256(created["key"].encode()).digest()
    keys: ApiKeys = client.app.state.resources.keys
    entry = client.blocking_portal.call(keys._load, hashed)  # what the slow request read, before the revocation
    assert msgspec.json.decode(entry)["id"] == created["id"]
    assert client.delete(f"/api/keys/{created['id']}/").status_code == 204
    store = redis.Redis.from_url(redis_url)
    assert store.set(api_key_key(hashed), entry, nx=True, ex=300) is None  # its late cache write
    assert store.get(api_key_key(hashed)) == REVOKED
    answer = client.get(f"/api/community-analytics/{C}/report/", headers=as_key(created["key"]))
    assert answer.status_code == 401


def test_last_use_is_listed(client: Client) -> None:
    created = create(client, name="used", scope="read", communities=[C])
    before = datetime.now(UTC)
    assert client.get(f"/api/community-analytics/{C}/report/", headers=as_key(created["key"])).status_code == 200
    client.blocking_portal.call(client.app.state.resources.keys.flush)  # as the process does every 15 s
    [listed] = client.get("/api/keys/").json()["results"]
    assert datetime.fromisoformat(listed["last_used_at"]) >= before - timedelta(seconds=1)


def test_keys_never_reach_the_logs(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = create(client, name="secret", scope="track", communities=[C])
    key = created["key"]
    client.post("/api/community-analytics/track/", json=VIEW, headers=as_key(key))
    client.get(f"/api/community-analytics/{C}/report/", headers=as_key(key))  # refused: not its scope
    client.delete(f"/api/keys/{created['id']}/")
    client.post("/api/community-analytics/track/", json=VIEW, headers=as_key(key))  # refused: revoked
    client.get("/api/auth/me/", headers=as_key(key[:-1] + "A"))  # unknown
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records and key not in logged and key[11:] not in logged


def test_random_keys_cost_neither_queries_nor_memory(settings_for: Any, database_url: str, redis_url: str) -> None:
    """Keys Redis does not hold are looked up RATE_LIMIT_AUTH times a minute per client address at most, and an
    unknown key leaves nothing in Redis."""
    settings = settings_for(database_url, redis_url, RATE_LIMIT_AUTH="2")
    with TestClient(create_app(settings)) as client:
        answers = [client.get("/api/auth/me/", headers=as_key(f"ak_{n:043d}")).status_code for n in range(3)]
    assert answers == [401, 401, 429]
    assert not redis.Redis.from_url(redis_url).keys("analytics:apikey:*")


def test_what_outlives_a_request_asks_again(client: Client) -> None:
    """A live stream asks at each heartbeat whether its key has been revoked since it opened."""
    created = create(client, name="live", scope="read", communities=[C])
    keys: ApiKeys = client.app.state.resources.keys
    principal = client.blocking_portal.call(keys.principal, created["key"], "testclient", 100)
    assert client.blocking_portal.call(keys.revoked, principal) is False
    assert client.delete(f"/api/keys/{created['id']}/").status_code == 204
    assert client.blocking_portal.call(keys.revoked, principal) is True
    redis.Redis.from_url(client.app.state.resources.settings.redis_url).flushdb()  # the marker gone: PostgreSQL says
    assert client.blocking_portal.call(keys.revoked, principal) is True

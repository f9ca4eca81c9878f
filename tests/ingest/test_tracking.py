"""Tracking over HTTP: accepted events reach the tables once, presence counts at once, bad input writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from service.core.settings import Settings
from service.live.counters import day_counts
from service.live.realtime import Realtime, realtime
from service.tools.localstack import RedisServer
from tests.ingest.conftest import MakeWorker
from tests.support import SINGLE, STREAM, drain, rows, staff_client

Client = TestClient[Any]


def live_keys(redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        # The tracking's own keys: not the stream, nor what authentication and request counting keep.
        others = (b"analytics:ratelimit:", b"analytics:requests:", b"analytics:session:")
        return sorted(k for k in client.keys("*") if k != STREAM.encode() and not k.startswith(others))
    finally:
        client.close()


def stream_length(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(STREAM))
    finally:
        client.close()


def test_activity_reaches_the_table_once(
    client: Client, make_worker: MakeWorker, database_url: str, redis_url: str
) -> None:
    event_id = str(uuid.uuid4())
    body = {
        "community_id": 12,
        "user_id": 7,
        "activity_type": "view",
        "metadata": {"section": "feed", "duration": 42.5, "post_id": 99},
        "session_id": "s-1",
        "event_id": event_id,
    }
    first = client.post("/api/community-analytics/track/", json=body)
    assert (first.status_code, first.json()) == (202, {"status": "accepted", "event_id": event_id})
    again = client.post("/api/community-analytics/track/", json=body)  # a client retry: same event_id
    assert again.status_code == 202
    assert drain(make_worker()) == 1  # the retry was recognised at the door
    assert rows(
        database_url,
        "SELECT community_id, user_id, activity_type, section, duration, session_id, metadata::text, "
        "event_id::text FROM activity_events",
    ) == [(12, 7, "view", "feed", 42.5, "s-1", '{"post_id": 99}', event_id)]
    assert stream_length(redis_url) <= 2  # acknowledged entries are trimmed


def test_presence_counts_at_once(client: Client, settings: Settings) -> None:
    for user in (1, 2, 1):
        assert (
            client.post(
                "/api/community-analytics/track/", json={"community_id": 5, "user_id": user, "activity_type": "view"}
            ).status_code
            == 202
        )
    client.post("/api/community-analytics/track/", json={"community_id": 6, "user_id": 3, "activity_type": "join"})
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    client.post(  # seen 10 minutes ago: not online now
        "/api/community-analytics/track/",
        json={"community_id": 5, "user_id": 4, "activity_type": "view", "timestamp": old},
    )

    async def read() -> tuple[Realtime, Realtime, dict[str, int]]:
        conn = redis.asyncio.Redis.from_url(settings.redis_url or "")
        try:
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            return (
                await realtime(conn, SINGLE, 5),
                await realtime(conn, SINGLE, 6),
                await day_counts(conn, SINGLE, today, 5),
            )
        finally:
            await conn.aclose()

    five, six, counts = asyncio.run(read())
    assert (five.online_members, five.peak_members_today, six.online_members) == (2, 2, 1)
    assert five.recent_events == 4  # the event of 10 minutes ago counts for the score (15 min), not presence (5)
    assert counts == {"view_count": 4, "events": 4}


def test_batch_reports_each_item_and_stores_the_good_ones(
    client: Client, make_worker: MakeWorker, database_url: str
) -> None:
    response = client.post(
        "/api/community-analytics/track/batch/",
        json=[
            {"community_id": 1, "user_id": 1, "activity_type": "join"},
            {"community_id": 1, "activity_type": "teleport"},
            {"community_id": 1, "user_id": 2, "activity_type": "post", "metadata": {"duration": -1}},
            {"community_id": 2, "user_id": 3, "activity_type": "like"},
        ],
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected", "accepted"]
    assert body["results"][1]["errors"] == [{"field": "[1].activity_type", "message": "Invalid enum value 'teleport'"}]
    assert body["results"][2]["errors"][0]["field"] == "[2].metadata.duration"
    drain(make_worker())
    stored = rows(database_url, "SELECT event_id::text, activity_type FROM activity_events ORDER BY activity_type")
    assert stored == [(body["results"][0]["event_id"], "join"), (body["results"][3]["event_id"], "like")]


def test_platform_events(client: Client, make_worker: MakeWorker, database_url: str) -> None:
    response = client.post(
        "/api/events/",
        json=[
            {"activity_type": "register", "user_id": 10},
            {"activity_type": "page_view", "metadata": {"section": "home"}},
            {"activity_type": "view", "community_id": 3},  # a community-level type: not for this endpoint
        ],
    )
    assert response.status_code == 202
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted", "rejected"]
    drain(make_worker())
    assert rows(
        database_url, "SELECT activity_type, user_id, community_id, section FROM activity_events ORDER BY activity_type"
    ) == [("page_view", None, None, "home"), ("register", 10, None, None)]


NOW = datetime.now(UTC)
TRACK = "/api/community-analytics/track/"
GEO = "/api/geo-analytics/track/"
GOOD = {"community_id": 1, "user_id": 1, "activity_type": "view"}


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        (TRACK, {**GOOD, "community_id": "one"}, "community_id", "Expected `int`, got `str`"),
        (TRACK, {**GOOD, "community_id": 0}, "community_id", "Expected `int` >= 1"),
        (TRACK, {"user_id": 1, "activity_type": "view"}, "community_id", "required field is missing"),
        (TRACK, {**GOOD, "activity_type": "teleport"}, "activity_type", "Invalid enum value 'teleport'"),
        (TRACK, {**GOOD, "colour": "red"}, "colour", "unknown field"),
        (TRACK, {**GOOD, "event_id": "not-a-uuid"}, "event_id", "Invalid UUID"),
        (TRACK, {**GOOD, "timestamp": "yesterday"}, "timestamp", "Invalid RFC3339 encoded datetime"),
        (TRACK, {**GOOD, "timestamp": "2026-01-01T00:00:00"}, "timestamp",
         "Expected `datetime` with a timezone component"),
        (TRACK, {**GOOD, "timestamp": (NOW - timedelta(days=8)).isoformat()}, "timestamp",
         "more than 604800 seconds in the past"),
        (TRACK, {**GOOD, "timestamp": (NOW + timedelta(hours=1)).isoformat()}, "timestamp",
         "more than 300 seconds in the future"),
        (TRACK, {**GOOD, "metadata": {"duration": "long"}}, "metadata.duration",
         "expected a number of seconds from 0 to 604800"),
        (TRACK, {**GOOD, "metadata": {"section": 5}}, "metadata.section", "expected text of 1 to 200 characters"),
        (TRACK, {**GOOD, "metadata": []}, "metadata", "Expected `object`, got `array`"),
        (TRACK, [GOOD], "body", "Expected `object`, got `array`"),
        (GEO, {"community_id": 1, "access_result": "maybe", "location": {"country": "DE"}}, "access_result",
         "Invalid enum value 'maybe'"),
        (GEO, {"community_id": 1, "access_result": "allowed", "location": {"city": "Paris"}}, "location.country",
         "required field is missing"),
        (GEO, {"community_id": 1, "access_result": "allowed", "location": {"country": "DE", "country_code": "DEU"}},
         "location.country_code", "Expected `str` matching regex '^[A-Za-z]{2}$'"),
        (GEO, {"community_id": 1, "access_result": "allowed", "location": {"country": "DE", "country_code": "fr"}},
         "location.country_code", "does not match `country` 'DE'"),
        (GEO, {"community_id": 1, "access_result": "allowed", "location": {"country": "DE"}, "ip": "1.2.3.4"},
         "ip", "send either `location` or `ip`, not both"),
        (GEO, {"community_id": 1, "access_result": "allowed"}, "location",
         "required: no GeoIP database is configured (GEOIP_DATABASE)"),
        ("/api/community-analytics/track/batch/", [], "body", "expected a list of 1 to 500 events, got 0"),
        ("/api/events/", {"activity_type": "register"}, "body", "Expected `array`, got `object`"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    client: Client, redis_url: str, path: str, body: object, field: str, message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": field, "message": message}]
    assert live_keys(redis_url) == []
    assert stream_length(redis_url) == 0


def test_malformed_json(client: Client, redis_url: str) -> None:
    response = client.post(TRACK, content=b'{"community_id": 1,', headers={"content-type": "application/json"})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "body" and error["message"].startswith("malformed JSON")
    assert stream_length(redis_url) == 0


def test_oversize_body_and_batch(settings_for: Callable[..., Settings], database_url: str, redis_url: str) -> None:
    settings = settings_for(database_url, redis_url, TRACK_MAX_BODY_BYTES="2048", TRACK_MAX_BATCH="3")
    with staff_client(settings) as client:
        huge = {**GOOD, "metadata": {"note": "x" * 4000}}
        response = client.post(TRACK, json=huge)
        assert (response.status_code, response.json()["detail"]) == (413, "Request Entity Too Large")
        response = client.post("/api/community-analytics/track/batch/", json=[GOOD] * 4)
        assert response.status_code == 400
        assert response.json()["errors"] == [{"field": "body", "message": "expected a list of 1 to 3 events, got 4"}]
    assert stream_length(redis_url) == 0


def test_backlog_limit_answers_503_with_retry_after(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    settings = settings_for(database_url, redis_url, INGEST_MAX_BACKLOG="2")
    with staff_client(settings) as client:
        for _ in range(3):
            assert client.post(TRACK, json=GOOD).status_code == 202
        response = client.post(TRACK, json=GOOD)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "30"
        assert "Ingest is behind" in response.json()["detail"]
    assert stream_length(redis_url) == 3


def test_redis_down_answers_503_never_500(
    settings_for: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        with staff_client(settings_for(database_url, server.url)) as client:
            assert client.post(TRACK, json=GOOD).status_code == 202
            server.stop()
            for path, body in ((TRACK, GOOD), ("/api/events/", [{"activity_type": "register"}])):
                response = client.post(path, json=body)
                assert response.status_code == 503
                assert response.headers["retry-after"] == "5"
                assert response.json()["detail"].startswith("The live store (Redis) is unavailable")
            server.start()
            assert client.post(TRACK, json=GOOD).status_code == 202  # back by itself
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        (TRACK, {**GOOD, "session_id": "a\u0000b"}, "session_id", "must not contain NUL characters"),
        (TRACK, {**GOOD, "metadata": {"note": ["x\u0000"]}}, "metadata.note[0]", "must not contain NUL characters"),
        (GEO, {"community_id": 1, "access_result": "allowed", "location": {"country": "D\u0000"}},
         "location.country", "must not contain NUL characters"),
    ],
)  # fmt: skip
def test_what_postgresql_would_refuse_is_refused_at_the_door(
    client: Client, redis_url: str, path: str, body: object, field: str, message: str
) -> None:
    response = client.post(path, json=body)
    assert (response.status_code, response.json()["errors"]) == (400, [{"field": field, "message": message}])
    assert stream_length(redis_url) == 0


def test_deeply_nested_json_is_a_400_not_a_500(client: Client) -> None:
    body = b'{"community_id": 1, "activity_type": "view", "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = client.post(TRACK, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "body", "message": "nested too deeply"}]


def test_a_non_ascii_two_letter_country_is_not_taken_for_a_code(
    client: Client, make_worker: MakeWorker, database_url: str
) -> None:
    body = {"community_id": 1, "access_result": "allowed", "location": {"country": "ÄÖ"}}
    assert client.post(GEO, json=body).status_code == 202
    drain(make_worker())
    assert rows(database_url, "SELECT country, country_code FROM geo_access_events") == [("ÄÖ", None)]


def test_a_country_name_in_any_language_is_stored_with_its_iso_code(
    client: Client, make_worker: MakeWorker, database_url: str
) -> None:
    names = {
        "United States": "US",  # ISO name (pycountry)
        "Russia": "RU",  # CLDR name; ISO says "Russian Federation"
        "turkey": "TR",  # case does not matter; ISO and CLDR English say "Türkiye"
        "UK": "GB",
        "Cote d\u2019Ivoire": "CI",  # accents and apostrophe styles do not matter
        "Deutschland": "DE",
        "Kosovo": "XK",  # CLDR's user-assigned code; not in ISO 3166
        "Berlin": None,  # a city is no country
        "Kongo": None,  # two countries' name in some language: neither is guessed
    }
    for name in names:
        body = {"community_id": 1, "access_result": "allowed", "location": {"country": name}}
        assert client.post(GEO, json=body).status_code == 202
    explicit = {"community_id": 1, "access_result": "allowed", "location": {"country": "Holland", "country_code": "nl"}}
    assert client.post(GEO, json=explicit).status_code == 202
    drain(make_worker())
    stored = dict(rows(database_url, "SELECT country, country_code FROM geo_access_events"))
    assert stored == {**names, "Holland": "NL"}

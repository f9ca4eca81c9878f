"""Hostile input on the tracking path: unreadable bodies and poison values answer 400 naming the problem, and a
poison request never fails the requests that share its Redis write (the group commit)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from litestar.testing import TestClient

from service.core.client_json import MAX_DEPTH, problem
from service.live.stream import stream_events
from service.observability.metrics import EVENTS_REPEATED
from tests.conftest import settings_for
from tests.processes import free_port, running, service_env, until
from tests.support import SINGLE, STREAM, bearer

Client = TestClient[Any]
TRACK = "/api/community-analytics/track/"
TRACKING = [
    (TRACK, b'{"community_id":12,"activity_type":"view","session_id":"\xff\xfe"}'),
    ("/api/community-analytics/track/batch/", b'[{"community_id":12,"activity_type":"view","session_id":"\xff"}]'),
    ("/api/geo-analytics/track/", b'{"community_id":12,"access_result":"allowed","location":{"country":"\xc3"}}'),
    ("/api/geo-analytics/track/batch/", b'[{"community_id":12,"access_result":"allowed","ip":"\xfe"}]'),
    ("/api/events/", b'[{"activity_type":"register","session_id":"\xff\xfe"}]'),
]
TOO_BIG = 18446744073709551616  # 2^64: no 64-bit integer holds it


def stream_length(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.xlen(STREAM))


@pytest.mark.parametrize(("path", "body"), TRACKING, ids=[path for path, _ in TRACKING])
def test_invalid_utf8_is_a_400_naming_the_body(client: Client, redis_url: str, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] in ("body", "[0]") and error["message"].startswith("not valid UTF-8"), error
    assert stream_length(redis_url) == 0


@pytest.mark.parametrize("path", [TRACK, "/api/community-analytics/track/batch/", "/api/events/"])
def test_metadata_nested_past_the_limit_is_a_400(client: Client, redis_url: str, path: str) -> None:
    deep: Any = "leaf"
    for _ in range(500):
        deep = {"a": deep}
    item = {"community_id": 1, "activity_type": "register" if path == "/api/events/" else "view", "metadata": deep}
    body = item if path == TRACK else [item]
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["message"] == f"nested more than {MAX_DEPTH} levels deep"
    assert error["field"].endswith("metadata" + ".a" * MAX_DEPTH)
    assert stream_length(redis_url) == 0


def test_integers_beyond_64_bits_are_refused_alone_in_a_batch(client: Client, redis_url: str) -> None:
    good = {"community_id": 1, "user_id": 1, "activity_type": "view"}
    response = client.post(TRACK, json={**good, "metadata": {"x": TOO_BIG}})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "metadata.x", "message": "integers must fit in 64 bits (-2^63 to 2^63 - 1)"}
    ]
    batch = [good, {**good, "metadata": {"x": [1, -TOO_BIG]}}, good]
    response = client.post("/api/community-analytics/track/batch/", json=batch)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["results"][1]["errors"] == [
        {"field": "[1].metadata.x[1]", "message": "integers must fit in 64 bits (-2^63 to 2^63 - 1)"}
    ]
    with redis.Redis.from_url(redis_url) as live:
        assert stream_events(live, SINGLE) == 2


def test_the_rule_for_client_json() -> None:
    assert problem({"a": [1, 2.5, "x", None, True, {"b": 2**63 - 1}], "c": -(2**63)}) is None
    assert problem({"a": [{"b": 2**63}]}) == (".a[0].b", "integers must fit in 64 bits (-2^63 to 2^63 - 1)")
    assert problem({"a": float("inf")}) == (".a", "numbers must be finite")
    assert problem({"a\x00": 1}) == ("", "keys must not contain NUL characters")
    assert problem(["ok", "x\x00"]) == ("[1]", "must not contain NUL characters")
    nested: Any = []
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    assert problem(nested) is None  # MAX_DEPTH levels of objects and arrays, the value itself the first
    assert problem([nested]) == ("[0]" * MAX_DEPTH, f"nested more than {MAX_DEPTH} levels deep")
    assert problem({"first": "x\x00", "second": 2**64})[0] == ".first"  # reported in document order


@pytest.mark.slow
def test_a_poison_request_does_not_fail_the_requests_sharing_its_write(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The probe's shape: 300 concurrent tracking requests to a real server, 10 of them with an integer outside
    64 bits in `metadata`. The 10 answer 400; the 290 others are accepted and all in the stream."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(database_url, redis_url, ANALYTICS_PORT=str(port), RATE_LIMIT_TRACK="100000")
    headers = bearer(settings_for(database_url, redis_url), "backend", service=True)
    base = f"http://127.0.0.1:{port}"

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:
            bodies = [
                {"community_id": 1 + i % 7, "user_id": 1 + i, "activity_type": "view"}
                | ({"metadata": {"x": TOO_BIG}} if i % 30 == 0 else {})
                for i in range(300)
            ]
            return await asyncio.gather(*(http.post(TRACK, content=json.dumps(b)) for b in bodies))

    with running(["serve"], env, log) as server:
        until(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 200, server, log)
        responses = asyncio.run(send_all())
    statuses = [r.status_code for r in responses]
    assert statuses.count(400) == 10 and statuses.count(202) == 290, sorted(set(statuses))
    with redis.Redis.from_url(redis_url) as live:
        assert stream_events(live, SINGLE) == 290


def test_a_reused_event_id_keeps_the_first_event_and_is_counted(client: Client, redis_url: str) -> None:
    event_id = "6615b74d-e9ef-4154-b134-d983c76b5f87"
    first = {"community_id": 1, "user_id": 1, "activity_type": "view", "event_id": event_id}
    before = EVENTS_REPEATED.labels("activity")._value.get()
    assert client.post(TRACK, json=first).status_code == 202
    assert client.post(TRACK, json={**first, "activity_type": "post", "user_id": 2}).status_code == 202
    assert client.post(TRACK, json=first).status_code == 202
    with redis.Redis.from_url(redis_url) as live:
        assert stream_events(live, SINGLE) == 1
    assert EVENTS_REPEATED.labels("activity")._value.get() - before == 2

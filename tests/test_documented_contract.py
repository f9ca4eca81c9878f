"""The original product's documented requests and responses, literally, against the real stack over HTTP.

Each documented example is kept below as the literal JSON document of the documentation. The live answer of a
running `analytics serve` (fed by a running `analytics ingest` from events tracked over HTTP, its rollups refreshed
and its report tasks run) must hold every documented key at the documented path with a value of the documented
JSON type; extra keys are fine. Where the documentation lists only a shape (the report generators), the document
below uses empty containers: the key and its JSON type are the contract, not the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from service.core.settings import Settings
from service.tasks.worker import execute
from tests.conftest import create_database, drop_database, settings_for
from tests.processes import free_port, running, service_env, until
from tests.support import bearer, refresh_rollups, rows

C = 123  # the community of the documentation's examples

REALTIME = json.loads("""
{"community_id": 123, "online_members": 45, "activity_score": 8.7, "peak_members_today": 67,
 "current_activity": "high"}
""")
REPORT = json.loads("""
{"community_id": 123, "date_range": {"start": "2024-12-01", "end": "2024-12-08"},
 "metrics": {"total_views": 1245, "unique_visitors": 289, "peak_online_members": 67,
             "average_session_duration": 12.5, "member_retention": 85.2}}
""")
EFFECTIVENESS = json.loads("""
{"community_id": 123,
 "restriction_effectiveness": {"total_attempts": 450, "blocked_attempts": 127, "allowed_attempts": 323,
                               "effectiveness_percentage": 28.2},
 "top_blocked_locations": [{"country": "Country A", "city": "City X", "attempts": 45},
                           {"country": "Country B", "city": "City Y", "attempts": 32}]}
""")
# The report generators' documented shapes (stored reports' payloads).
COMMUNITY_REPORT = json.loads("""
{"community_id": 123,
 "metrics": {"total_views": 1245, "unique_visitors": 289, "peak_online_members": 67, "activity_patterns": {}}}
""")
GEO_REPORT = json.loads("""
{"community_id": 123,
 "restriction_effectiveness": {"total_attempts": 450, "blocked_attempts": 127, "effectiveness_percentage": 28.2},
 "location_breakdown": [], "trends": []}
""")
# The geo analytics categories the documentation lists, counted by the effectiveness endpoint and geo reports.
CATEGORIES = {
    name: 0
    for name in (
        "country_blocked", "country_allowed", "city_blocked", "city_allowed", "region_blocked", "region_allowed",
        "traveler_access", "restriction_bypass",
    )
}  # fmt: skip

# The documented request bodies.
TRACK_ACTIVITY = json.loads("""
{"community_id": 123, "user_id": 456, "activity_type": "view",
 "metadata": {"section": "posts", "duration": 120}}
""")
TRACK_GEO = json.loads("""
{"community_id": 123, "user_id": 456,
 "location": {"country": "Country A", "city": "City X", "region": "Region 1"},
 "access_result": "blocked", "is_traveler": false}
""")
METRIC = json.loads("""
{"metric_type": "response_time", "value": 245.5, "additional_data": {"endpoint": "/api/communities/"}}
""")
ERROR_LOG = json.loads("""
{"user": 456, "level": "error", "message": "Database connection timeout",
 "stack_trace": "Traceback (most recent call last): ...", "url": "/api/communities/123/", "method": "GET",
 "ip_address": "192.0.2.10", "user_agent": "Mozilla/5.0", "extra_data": {"timeout": 30}}
""")
# Model fields of the documentation's second field set.
DAILY_ROW = {"date": "2024-12-01", "new_users": 12, "new_registrations": 12}
USER_ROW = {"user": 456, "user_id": 456}
ERROR_ROW = {"user": 456, "user_id": 456}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def mismatches(documented: Any, live: Any, path: str = "$") -> list[str]:
    """Where `live` lacks a documented key or holds a value of another JSON type (an integer is a number too;
    every item of a live list is checked against the documented list's first item)."""
    want, got = _json_type(documented), _json_type(live)
    if want != got and not (want == "number" and got == "integer"):
        return [f"{path}: documented {want}, got {got} ({json.dumps(live)[:80]})"]
    found: list[str] = []
    if want == "object":
        for key, value in documented.items():
            if key not in live:
                found.append(f"{path}.{key}: missing (live keys: {sorted(live)})")
            else:
                found.extend(mismatches(value, live[key], f"{path}.{key}"))
    elif want == "array" and documented:
        if not live:
            found.append(f"{path}: documented items, got an empty list")
        for index, item in enumerate(live):
            found.extend(mismatches(documented[0], item, f"{path}[{index}]"))
    return found


def test_mismatches_names_each_difference() -> None:
    live = {"community_id": 123, "total_views": 3, "top": [{"country": "A", "blocked_attempts": 1}], "x": 1.5}
    documented = {"community_id": 1, "metrics": {"total_views": 1}, "top": [{"country": "A", "attempts": 1}], "x": 1}
    assert mismatches(documented, live) == [
        "$.metrics: missing (live keys: ['community_id', 'top', 'total_views', 'x'])",
        "$.top[0].attempts: missing (live keys: ['blocked_attempts', 'country'])",
        "$.x: documented integer, got number (1.5)",
    ]
    assert mismatches({"a": 8.7, "b": [{"c": "x"}]}, {"a": 9, "b": [{"c": "y", "d": 1}], "e": 0}) == []


@dataclass
class Stack:
    """A running API and ingest worker on a database and Redis of their own."""

    base: str
    settings: Settings
    database_url: str
    http: httpx.Client

    def get(self, path: str) -> Any:
        response = self.http.get(self.base + path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def post(self, path: str, body: Any, status: int) -> Any:
        response = self.http.post(self.base + path, json=body)
        assert response.status_code == status, f"POST {path}: {response.status_code} {response.text[:500]}"
        return response.json()


@pytest.fixture(scope="module")
def stack(
    postgres_admin_url: str, template_database: str, redis_server_url: str, tmp_path_factory: Any
) -> Iterator[Stack]:
    database_url = create_database(postgres_admin_url, template_database)
    redis_url = redis_server_url.rsplit("/", 1)[0] + "/13"  # a database no other test flushes meanwhile
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    directory: Path = tmp_path_factory.mktemp("contract")
    port = free_port()
    # Events up to 30 days old are accepted, so that the report's window before has a member who came back.
    env = service_env(
        database_url, redis_url, ANALYTICS_PORT=str(port), INGEST_METRICS_PORT="0", TRACK_MAX_AGE=str(30 * 86400)
    )
    settings = settings_for(database_url, redis_url)
    api_log, ingest_log = directory / "api.log", directory / "ingest.log"
    try:
        with (
            running(["serve"], env, api_log) as api,
            running(["ingest"], env, ingest_log) as ingest,
            httpx.Client(headers=bearer(settings, "1", staff=True), timeout=30) as http,
        ):
            base = f"http://127.0.0.1:{port}"
            until(lambda: http.get(f"{base}/ready").status_code == 200, api, api_log)
            stack = Stack(base, settings, database_url, http)
            feed(stack)
            until(
                lambda: (
                    rows(database_url, "SELECT count(*) FROM activity_events")[0][0] >= 5
                    and rows(database_url, "SELECT count(*) FROM geo_access_events")[0][0] >= 3
                ),
                ingest,
                ingest_log,
            )
            refresh_rollups(database_url)
            tomorrow = datetime.now(UTC) + timedelta(days=1)  # the report tasks report on the day before `now`
            for task in ("generate_community_reports", "generate_geo_effectiveness_reports"):
                assert execute(settings, task, now=tomorrow).status == "success"
            yield stack
    finally:
        drop_database(postgres_admin_url, database_url)
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()


def feed(stack: Stack) -> None:
    """The documented request bodies, as a client written from the documentation sends them."""
    stack.post("/api/community-analytics/track/", TRACK_ACTIVITY, 202)
    # Member 456 was there ten days ago too: the 7-day report's window before (days 15 to 8 ago) is not empty, so
    # member_retention has a value (with nobody before it is null, as the README says).
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    stack.post("/api/community-analytics/track/", {**TRACK_ACTIVITY, "timestamp": ten_days_ago}, 202)
    for user, kind in ((457, "view"), (458, "post"), (456, "like")):
        stack.post("/api/community-analytics/track/", {**TRACK_ACTIVITY, "user_id": user, "activity_type": kind}, 202)
    stack.post("/api/geo-analytics/track/", TRACK_GEO, 202)
    stack.post("/api/geo-analytics/track/", {**TRACK_GEO, "user_id": 457, "access_result": "allowed"}, 202)
    stack.post(
        "/api/geo-analytics/track/",
        {**TRACK_GEO, "user_id": 458, "location": {"country": "Country B", "city": "City Y"}},
        202,
    )


def stored_payload(stack: Stack, kind: str) -> Any:
    page = stack.get(f"/api/reports/?kind={kind}&scope=community:{C}")
    assert page["results"], f"no stored {kind} report of community {C}"
    return page["results"][0]["payload"]


@pytest.mark.parametrize(
    ("path", "documented"),
    [
        (f"/api/community-analytics/{C}/realtime/", REALTIME),
        (f"/api/community-analytics/{C}/report/?days=7", REPORT),
        (f"/api/geo-analytics/{C}/effectiveness/", {**EFFECTIVENESS, "categories": CATEGORIES}),
    ],
    ids=["realtime", "report", "effectiveness"],
)
def test_documented_read_examples(stack: Stack, path: str, documented: Any) -> None:
    assert mismatches(documented, stack.get(path)) == []


@pytest.mark.parametrize(
    ("kind", "documented"),
    [("community", COMMUNITY_REPORT), ("geo_effectiveness", {**GEO_REPORT, "categories": CATEGORIES})],
    ids=["community", "geo"],
)
def test_stored_reports_carry_the_generators_shapes(stack: Stack, kind: str, documented: Any) -> None:
    assert mismatches(documented, stored_payload(stack, kind)) == []


def test_documented_write_bodies_are_accepted(stack: Stack) -> None:
    metric = stack.post("/api/metrics/", METRIC, 201)
    assert mismatches(METRIC, metric) == []
    log = stack.post("/api/errors/", ERROR_LOG, 201)
    assert mismatches({**ERROR_LOG, **ERROR_ROW}, log) == []
    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT user_id FROM error_logs WHERE id = %s", (log["id"],)).fetchone() == (456,)


def test_second_field_set_names(stack: Stack) -> None:
    day = stack.post("/api/daily/", {"date": "2024-12-01", "new_users": 12}, 201)
    assert mismatches(DAILY_ROW, day) == [] and day["new_users"] == day["new_registrations"] == 12
    user_day = stack.post("/api/user-analytics/", {"user": 456, "date": "2024-12-01"}, 201)
    assert mismatches(USER_ROW, user_day) == [] and user_day["user"] == user_day["user_id"] == 456
    assert [row["user"] for row in stack.get("/api/user-analytics/?user=456")["results"]] == [456]


def test_task_names_of_both_documented_forms(stack: Stack) -> None:
    tasks = {task["name"]: task for task in stack.get("/api/tasks/")}
    assert tasks["update_daily_analytics"]["schedule_name"] == "update-daily-analytics"
    for name in ("update-daily-analytics", "update_daily_analytics"):
        assert stack.get(f"/api/tasks/{name}/")["name"] == "update_daily_analytics"

"""The original product's field names beside ours: `new_users` for a day's `new_registrations`, `user` for the
`user_id` of user analytics and error logs. Served under both names; written under either, never both. And the
days a snapshot row may have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from tests.support import bearer, rows

Client = TestClient[Any]
DAY = {"date": "2026-01-05"}


def errors_of(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.text
    return [(e["field"], e["message"]) for e in response.json()["errors"]]


def test_a_days_new_users_is_new_registrations(client: Client, database_url: str) -> None:
    created = client.post("/api/daily/", json={**DAY, "new_users": 12})
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["new_users"] == row["new_registrations"] == 12
    assert rows(database_url, "SELECT new_registrations FROM daily_analytics") == [(12,)]
    patched = client.patch(f"/api/daily/{row['id']}/", json={"new_registrations": 13}).json()
    assert patched["new_users"] == patched["new_registrations"] == 13
    patched = client.patch(f"/api/daily/{row['id']}/", json={"new_users": 14}).json()
    assert patched["new_users"] == patched["new_registrations"] == 14
    listed = client.get("/api/daily/").json()["results"]
    assert [(r["new_users"], r["new_registrations"]) for r in listed] == [(14, 14)]
    assert client.get(f"/api/daily/{row['id']}/").json()["new_users"] == 14

    # PUT needs every field: either name of this one will do.
    full = {k: v for k, v in patched.items() if k not in ("id", "created_at", "updated_at", "new_registrations")}
    replaced = client.put(f"/api/daily/{row['id']}/", json={**full, "new_users": 15})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["new_registrations"] == 15


@pytest.mark.parametrize("method", ["post", "patch"])
def test_both_names_at_once_are_refused_and_nothing_is_written(client: Client, database_url: str, method: str) -> None:
    row = client.post("/api/daily/", json={**DAY, "new_registrations": 1}).json()
    url = "/api/daily/" if method == "post" else f"/api/daily/{row['id']}/"
    body = (
        {**DAY, "new_users": 2, "new_registrations": 2}
        if method == "post"
        else {"new_users": 2, "new_registrations": 3}
    )
    assert errors_of(getattr(client, method)(url, json=body)) == [
        ("new_users", "the same field as `new_registrations`: send one of them")
    ]
    assert rows(database_url, "SELECT new_registrations FROM daily_analytics") == [(1,)]


def test_a_wrong_value_is_named_as_sent(client: Client) -> None:
    assert errors_of(client.post("/api/daily/", json={**DAY, "new_users": -1})) == [
        ("new_users", "Expected `int` >= 0")
    ]


def test_user_analytics_take_user_for_user_id(client: Client, database_url: str) -> None:
    created = client.post("/api/user-analytics/", json={"user": 7, **DAY, "page_views": 3})
    assert created.status_code == 201, created.text
    assert created.json()["user"] == created.json()["user_id"] == 7
    assert rows(database_url, "SELECT user_id, page_views FROM user_analytics") == [(7, 3)]
    assert [r["user"] for r in client.get("/api/user-analytics/?user=7").json()["results"]] == [7]
    moved = client.patch(f"/api/user-analytics/{created.json()['id']}/", json={"user": 8})
    assert moved.json()["user"] == moved.json()["user_id"] == 8
    assert errors_of(client.post("/api/user-analytics/", json={"user": 9, "user_id": 9, **DAY})) == [
        ("user", "the same field as `user_id`: send one of them")
    ]
    assert errors_of(client.post("/api/user-analytics/", json=DAY)) == [("user_id", "required field is missing")]


def test_error_logs_take_user_for_user_id(client: Client, settings: Settings, database_url: str) -> None:
    body = {"level": "error", "message": "Database connection timeout"}
    created = client.post("/api/errors/", json={**body, "user": 456})
    assert created.status_code == 201, created.text
    assert created.json()["user"] == created.json()["user_id"] == 456
    anonymous = client.post("/api/errors/", json=body).json()
    assert anonymous["user"] is anonymous["user_id"] is None
    group = client.get(f"/api/error-groups/{created.json()['group_id']}/").json()
    assert {log["user"] for log in group["recent_logs"]} == {456, None}

    # A regular user logs only their own errors, whichever name carries the id.
    user_7 = bearer(settings, "7")
    refused = client.post("/api/errors/", json={**body, "user": 8}, headers=user_7)
    assert refused.status_code == 403
    own = client.post("/api/errors/", json={**body, "user": 7}, headers=user_7)
    assert own.status_code == 201 and own.json()["user"] == 7
    assert rows(database_url, "SELECT count(*)::int FROM error_logs WHERE user_id = 8") == [(0,)]


@pytest.mark.parametrize("path", ["/api/daily/", "/api/user-analytics/"])
def test_days_after_tomorrow_are_refused(client: Client, database_url: str, path: str) -> None:
    body = {"date": "9999-12-31"} | ({"user_id": 7} if "user" in path else {})
    assert errors_of(client.post(path, json=body)) == [("date", "must not be after tomorrow (UTC)")]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert client.post(path, json={**body, "date": tomorrow}).status_code == 201

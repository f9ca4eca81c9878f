"""`/api/daily/`: create, list (each filter, each ordering, pages), get, put, patch, delete, 400/403/404/409."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from tests.support import bearer, rows

FIGURES = [
    "total_users", "active_users", "new_registrations", "community_views", "community_joins",
    "average_online_members", "peak_community_activity", "geo_access_attempts", "geo_blocked_attempts",
    "geo_allowed_access", "traveler_access_count", "content_views", "content_interactions", "new_posts",
    "new_comments", "total_likes", "total_shares", "total_interactions", "avg_session_duration", "bounce_rate",
    "api_requests", "avg_response_time", "error_count",
]  # fmt: skip
FLOATS = {"average_online_members", "avg_session_duration", "bounce_rate", "avg_response_time"}

# Five days, created in the order below (so ids do not follow the dates), with figures chosen so that every
# ordering gives another sequence; community_views and error_count have ties, broken by id.
DAYS: dict[str, dict[str, int]] = {
    "2026-01-03": {"active_users": 4, "total_users": 20, "community_views": 1, "api_requests": 1, "error_count": 1},
    "2026-01-01": {"active_users": 5, "total_users": 10, "community_views": 7, "api_requests": 3, "error_count": 0},
    "2026-01-05": {"active_users": 3, "total_users": 40, "community_views": 1, "api_requests": 2, "error_count": 3},
    "2026-01-02": {"active_users": 1, "total_users": 30, "community_views": 7, "api_requests": 5, "error_count": 2},
    "2026-01-04": {"active_users": 2, "total_users": 50, "community_views": 9, "api_requests": 4, "error_count": 0},
}


def full_body(day: str, base: int = 1) -> dict[str, Any]:
    """Every writable field: figure i is base + i (floats with a half), bounce_rate a valid percent."""
    body: dict[str, Any] = {"date": day}
    for i, name in enumerate(FIGURES):
        body[name] = base + i + 0.5 if name in FLOATS else base + i
    body["bounce_rate"] = 42.5
    return body


def create(client: TestClient[Any], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/daily/", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def seed(client: TestClient[Any]) -> dict[str, int]:
    """The DAYS rows; date -> id."""
    return {day: create(client, {"date": day, **figures})["id"] for day, figures in DAYS.items()}


def dates(client: TestClient[Any], query: str) -> list[str]:
    response = client.get(f"/api/daily/{query}")
    assert response.status_code == 200, response.text
    return [row["date"] for row in response.json()["results"]]


def error(response: Any) -> tuple[int, list[tuple[str, str]]]:
    body = response.json()
    assert body["status_code"] == response.status_code
    return response.status_code, [(e["field"], e["message"]) for e in body.get("errors", [])]


def stored(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT date::text, active_users, total_users FROM daily_analytics ORDER BY date")


def test_create_fills_defaults_and_get_answers_the_same_row(client: TestClient[Any], database_url: str) -> None:
    created = create(client, {"date": "2026-01-05", "active_users": 3, "bounce_rate": 12.5})
    assert isinstance(created["id"], int)
    assert created["date"] == "2026-01-05"
    assert created["active_users"] == 3
    assert created["bounce_rate"] == 12.5
    assert {name: created[name] for name in FIGURES if name not in {"active_users", "bounce_rate"}} == {
        name: 0 for name in FIGURES if name not in {"active_users", "bounce_rate"}
    }
    assert created["created_at"] == created["updated_at"]
    assert client.get(f"/api/daily/{created['id']}/").json() == created
    assert stored(database_url) == [("2026-01-05", 3, 0)]


def test_list_filters_by_day(client: TestClient[Any]) -> None:
    seed(client)
    assert dates(client, "") == ["2026-01-05", "2026-01-04", "2026-01-03", "2026-01-02", "2026-01-01"]
    assert dates(client, "?date_from=2026-01-02") == ["2026-01-05", "2026-01-04", "2026-01-03", "2026-01-02"]
    assert dates(client, "?date_to=2026-01-03") == ["2026-01-03", "2026-01-02", "2026-01-01"]
    assert dates(client, "?date_from=2026-01-02&date_to=2026-01-03") == ["2026-01-03", "2026-01-02"]
    assert dates(client, "?date_from=2026-01-04&date_to=2026-01-04") == ["2026-01-04"]
    assert dates(client, "?date_from=2026-02-01") == []


@pytest.mark.parametrize(
    ("field", "ascending"),
    [
        ("date", ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]),
        ("active_users", ["2026-01-02", "2026-01-04", "2026-01-05", "2026-01-03", "2026-01-01"]),
        ("total_users", ["2026-01-01", "2026-01-03", "2026-01-02", "2026-01-05", "2026-01-04"]),
        # ties (1: the 3rd created before the 5th; 7: the 1st before the 2nd) in id order
        ("community_views", ["2026-01-03", "2026-01-05", "2026-01-01", "2026-01-02", "2026-01-04"]),
        ("api_requests", ["2026-01-03", "2026-01-05", "2026-01-01", "2026-01-04", "2026-01-02"]),
        ("error_count", ["2026-01-01", "2026-01-04", "2026-01-03", "2026-01-02", "2026-01-05"]),
        ("id", ["2026-01-03", "2026-01-01", "2026-01-05", "2026-01-02", "2026-01-04"]),
    ],
)
def test_list_orders_by_each_field(client: TestClient[Any], field: str, ascending: list[str]) -> None:
    seed(client)
    assert dates(client, f"?ordering={field}") == ascending
    # The tie breaker follows the direction, so descending is exactly the reverse.
    assert dates(client, f"?ordering=-{field}") == ascending[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?ordering=bounce_rate", "ordering"),  # a column, but not in the whitelist
        ("?ordering=--date", "ordering"),
        ("?ordering=date%3Bdrop", "ordering"),
        ("?date_from=yesterday", "date_from"),
        ("?date_to=2026-02-30", "date_to"),
        ("?date_from=2026-01-03&date_to=2026-01-02", "date_to"),
        ("?page=0", "page"),
        ("?page=x", "page"),
        ("?page_size=0", "page_size"),
        ("?page_size=501", "page_size"),
    ],
)
def test_list_rejects_bad_parameters(client: TestClient[Any], query: str, field: str) -> None:
    response = client.get(f"/api/daily/{query}")
    status, errors = error(response)
    assert status == 400
    assert [f for f, _ in errors] == [field]


def test_unknown_ordering_names_the_whitelist(client: TestClient[Any]) -> None:
    assert error(client.get("/api/daily/?ordering=-bounce_rate")) == (
        400,
        [
            (
                "ordering",
                "unknown field 'bounce_rate'; one of date, active_users, total_users, community_views, api_requests, "
                "error_count, id, `-` for descending",
            )
        ],
    )


def test_pages_link_to_their_neighbours_and_keep_the_filters(client: TestClient[Any]) -> None:
    seed(client)
    first = client.get("/api/daily/?page_size=2").json()
    assert (first["count"], first["next"], first["previous"]) == (5, "/api/daily/?page_size=2&page=2", None)
    assert [r["date"] for r in first["results"]] == ["2026-01-05", "2026-01-04"]
    second = client.get(first["next"]).json()
    assert (second["next"], second["previous"]) == ("/api/daily/?page_size=2&page=3", "/api/daily/?page_size=2&page=1")
    assert [r["date"] for r in second["results"]] == ["2026-01-03", "2026-01-02"]
    third = client.get(second["next"]).json()
    assert (third["count"], third["next"], third["previous"]) == (5, None, "/api/daily/?page_size=2&page=2")
    assert [r["date"] for r in third["results"]] == ["2026-01-01"]
    # Past the end: no rows, the right count, and a way back to the last page.
    past = client.get("/api/daily/?page_size=2&page=9").json()
    assert past == {"count": 5, "next": None, "previous": "/api/daily/?page_size=2&page=3", "results": []}
    filtered = client.get("/api/daily/?date_from=2026-01-02&ordering=date&page_size=3").json()
    assert filtered["count"] == 4
    assert filtered["next"] == "/api/daily/?date_from=2026-01-02&ordering=date&page_size=3&page=2"
    assert [r["date"] for r in client.get(filtered["next"]).json()["results"]] == ["2026-01-05"]


def test_page_size_bounds(client: TestClient[Any], database_url: str) -> None:
    with psycopg.connect(database_url) as conn:  # two years of days: 731 rows
        conn.execute(
            "INSERT INTO daily_analytics (date) "
            "SELECT d::date FROM generate_series('2020-01-01'::date, '2021-12-31', '1 day') AS d"
        )
    default = client.get("/api/daily/").json()
    assert (default["count"], len(default["results"])) == (731, 50)
    largest = client.get("/api/daily/?page_size=500").json()
    assert len(largest["results"]) == 500
    assert largest["results"][0]["date"] == "2021-12-31"
    assert largest["next"] == "/api/daily/?page_size=500&page=2"
    assert len(client.get(largest["next"]).json()["results"]) == 231
    assert len(client.get("/api/daily/?page_size=1").json()["results"]) == 1


def test_put_replaces_every_field(client: TestClient[Any], database_url: str) -> None:
    created = create(client, {"date": "2026-01-05", "active_users": 3})
    response = client.put(f"/api/daily/{created['id']}/", json=full_body("2026-01-06", base=10))
    assert response.status_code == 200, response.text
    replaced = response.json()
    assert replaced["id"] == created["id"]
    assert replaced["date"] == "2026-01-06"
    assert replaced["total_users"] == 10
    assert replaced["active_users"] == 11
    assert replaced["average_online_members"] == 15.5
    assert replaced["bounce_rate"] == 42.5
    assert replaced["error_count"] == 32
    assert replaced["created_at"] == created["created_at"]
    assert datetime.fromisoformat(replaced["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    assert client.get(f"/api/daily/{created['id']}/").json() == replaced
    assert stored(database_url) == [("2026-01-06", 11, 10)]


def test_put_names_every_missing_field_and_changes_nothing(client: TestClient[Any], database_url: str) -> None:
    created = create(client, {"date": "2026-01-05", "active_users": 3})
    body = full_body("2026-01-06")
    del body["active_users"], body["error_count"]
    status, errors = error(client.put(f"/api/daily/{created['id']}/", json=body))
    assert (status, errors) == (
        400,
        [("active_users", "required field is missing"), ("error_count", "required field is missing")],
    )
    assert stored(database_url) == [("2026-01-05", 3, 0)]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": 5}, [("id", "read-only field")]),
        ({"created_at": "2026-01-01T00:00:00Z"}, [("created_at", "read-only field")]),
        ({"updated_at": "2026-01-01T00:00:00Z"}, [("updated_at", "read-only field")]),
        ({"visitors": 5}, [("visitors", "unknown field")]),
        ({"active_users": "many"}, [("active_users", "Expected `int`, got `str`")]),
        ({"active_users": -1}, [("active_users", "Expected `int` >= 0")]),
        ({"active_users": None}, [("active_users", "Expected `int`, got `null`")]),
        ({"bounce_rate": 100.5}, [("bounce_rate", "Expected `float` <= 100.0")]),
        ({"date": "2026-13-01"}, [("date", "Invalid RFC3339 encoded date")]),
    ],
)
def test_bad_bodies_are_refused_and_leave_nothing(
    client: TestClient[Any], database_url: str, method: str, change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    created = create(client, {"date": "2026-01-05", "active_users": 3})
    url = "/api/daily/" if method == "post" else f"/api/daily/{created['id']}/"
    body = {**(full_body("2026-01-06") if method == "put" else {"date": "2026-01-06"}), **change}
    assert error(getattr(client, method)(url, json=body)) == (400, expected)
    assert stored(database_url) == [("2026-01-05", 3, 0)]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[1, 2]", [("body", "Expected `object`, got `array`")]),
        (b"{", [("body", "malformed JSON: Input data was truncated")]),
    ],
)
def test_bodies_must_be_json_objects(
    client: TestClient[Any], database_url: str, method: str, content: bytes, expected: list[tuple[str, str]]
) -> None:
    created = create(client, {"date": "2026-01-05"})
    url = "/api/daily/" if method == "post" else f"/api/daily/{created['id']}/"
    response = getattr(client, method)(url, content=content, headers={"content-type": "application/json"})
    assert error(response) == (400, expected)


def test_numbers_beyond_float_are_refused(client: TestClient[Any], database_url: str) -> None:
    response = client.post(
        "/api/daily/", content=b'{"date": "2026-01-06", "avg_response_time": 1e999}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert error(response) == (400, [("avg_response_time", "Number out of range")])
    assert stored(database_url) == []


def test_post_requires_the_date(client: TestClient[Any], database_url: str) -> None:
    assert error(client.post("/api/daily/", json={"active_users": 3})) == (
        400,
        [("date", "required field is missing")],
    )
    assert stored(database_url) == []


def test_patch_changes_only_what_was_sent(client: TestClient[Any], database_url: str) -> None:
    created = create(client, full_body("2026-01-05"))
    response = client.patch(f"/api/daily/{created['id']}/", json={"active_users": 99, "bounce_rate": 0})
    assert response.status_code == 200, response.text
    patched = response.json()
    changed = {"active_users": 99, "bounce_rate": 0.0}
    unchanged = {k: v for k, v in created.items() if k not in {*changed, "updated_at"}}
    assert {k: v for k, v in patched.items() if k not in {*changed, "updated_at"}} == unchanged
    assert {k: patched[k] for k in changed} == changed
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    # An empty PATCH changes no figure, only the stamp.
    again = client.patch(f"/api/daily/{created['id']}/", json={}).json()
    assert {k: v for k, v in again.items() if k != "updated_at"} == {
        k: v for k, v in patched.items() if k != "updated_at"
    }
    assert stored(database_url) == [("2026-01-05", 99, 1)]


def test_delete_then_404(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    response = client.delete(f"/api/daily/{ids['2026-01-03']}/")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/daily/{ids['2026-01-03']}/").status_code == 404
    assert client.delete(f"/api/daily/{ids['2026-01-03']}/").status_code == 404
    assert [r[0] for r in stored(database_url)] == ["2026-01-01", "2026-01-02", "2026-01-04", "2026-01-05"]


@pytest.mark.parametrize("row_id", ["999", "0", "9223372036854775808"])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_ids_are_404(client: TestClient[Any], database_url: str, method: str, row_id: str) -> None:
    create(client, {"date": "2026-01-05", "active_users": 3})
    kwargs: dict[str, Any] = {"json": full_body("2026-01-06")} if method in {"put", "patch"} else {}
    response = getattr(client, method)(f"/api/daily/{row_id}/", **kwargs)
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": f"No daily analytics {row_id}"}
    assert stored(database_url) == [("2026-01-05", 3, 0)]


def test_a_taken_day_is_409_and_nothing_changes(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    before = stored(database_url)
    conflict = {
        "status_code": 409,
        "detail": "daily analytics for date 2026-01-03 exists already",
        "errors": [{"field": "date", "message": "2026-01-03 is taken"}],
    }
    response = client.post("/api/daily/", json={"date": "2026-01-03", "active_users": 100})
    assert (response.status_code, response.json()) == (409, conflict)
    response = client.put(f"/api/daily/{ids['2026-01-01']}/", json=full_body("2026-01-03"))
    assert (response.status_code, response.json()) == (409, conflict)
    response = client.patch(f"/api/daily/{ids['2026-01-01']}/", json={"date": "2026-01-03", "active_users": 100})
    assert (response.status_code, response.json()) == (409, conflict)
    assert stored(database_url) == before
    # Keeping its own day is no conflict.
    assert client.patch(f"/api/daily/{ids['2026-01-01']}/", json={"date": "2026-01-01"}).status_code == 200


def test_non_staff_may_neither_read_nor_write(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    ids = seed(client)
    user = bearer(settings, "7")
    service = bearer(settings, "backend", service=True)
    for headers in (user, service):
        assert client.get("/api/daily/", headers=headers).status_code == 403
        assert client.get(f"/api/daily/{ids['2026-01-01']}/", headers=headers).status_code == 403
        assert client.post("/api/daily/", json={"date": "2026-02-01"}, headers=headers).status_code == 403
        assert client.patch(f"/api/daily/{ids['2026-01-01']}/", json={}, headers=headers).status_code == 403
        assert client.delete(f"/api/daily/{ids['2026-01-01']}/", headers=headers).status_code == 403
    assert client.get("/api/daily/", headers={"Authorization": ""}).status_code == 401
    assert len(stored(database_url)) == 5


# `new_users` is the original product's documented name for `new_registrations`: served beside it, written
# under either name (never both), stored in the one column.
SAME_FIGURE = ("new_users", "the same field as `new_registrations`: send one of them")


def registrations(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT date::text, new_registrations FROM daily_analytics ORDER BY date")


def test_every_row_answered_carries_new_users(client: TestClient[Any], database_url: str) -> None:
    # A row as the periodic task writes it (straight into the table), and one through the API.
    rows(database_url, "INSERT INTO daily_analytics (date, new_registrations) VALUES ('2026-01-04', 6) RETURNING id")
    created = create(client, {"date": "2026-01-05", "new_registrations": 4})
    assert (created["new_registrations"], created["new_users"]) == (4, 4)
    assert client.get(f"/api/daily/{created['id']}/").json() == created
    listed = client.get("/api/daily/").json()["results"]
    assert [(r["date"], r["new_registrations"], r["new_users"]) for r in listed] == [
        ("2026-01-05", 4, 4),
        ("2026-01-04", 6, 6),
    ]
    assert rows(
        database_url, "SELECT count(*)::int FROM information_schema.columns WHERE column_name = 'new_users'"
    ) == [(0,)]


@pytest.mark.parametrize("name", ["new_users", "new_registrations"])
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_writes_take_either_name(client: TestClient[Any], database_url: str, method: str, name: str) -> None:
    created = create(client, {"date": "2026-01-05"}) if method != "post" else None
    url = "/api/daily/" if created is None else f"/api/daily/{created['id']}/"
    body = {k: v for k, v in full_body("2026-01-05").items() if k != "new_registrations"} if method == "put" else {}
    response = getattr(client, method)(url, json={"date": "2026-01-05", **body, name: 17})
    assert response.status_code == (201 if method == "post" else 200), response.text
    assert (response.json()["new_registrations"], response.json()["new_users"]) == (17, 17)
    assert registrations(database_url) == [("2026-01-05", 17)]


def test_put_without_either_name_names_the_column(client: TestClient[Any], database_url: str) -> None:
    created = create(client, {"date": "2026-01-05", "new_registrations": 3})
    body = {k: v for k, v in full_body("2026-01-05").items() if k != "new_registrations"}
    assert error(client.put(f"/api/daily/{created['id']}/", json=body)) == (
        400,
        [("new_registrations", "required field is missing")],
    )
    assert registrations(database_url) == [("2026-01-05", 3)]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_both_names_are_refused_and_nothing_is_written(client: TestClient[Any], database_url: str, method: str) -> None:
    created = create(client, {"date": "2026-01-05", "new_registrations": 3})
    url = "/api/daily/" if method == "post" else f"/api/daily/{created['id']}/"
    body = full_body("2026-01-06") if method == "put" else {"date": "2026-01-06"}
    # Refused even when both carry the same value; every other problem is named beside it.
    for both in ({"new_users": 5, "new_registrations": 5}, {"new_users": 5, "new_registrations": 6, "visitors": 1}):
        status, errors = error(getattr(client, method)(url, json={**body, **both}))
        assert (status, errors[0]) == (400, SAME_FIGURE)
        assert errors[1:] == ([("visitors", "unknown field")] if "visitors" in both else [])
    assert registrations(database_url) == [("2026-01-05", 3)]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_a_bad_new_users_is_named_as_sent(client: TestClient[Any], database_url: str, method: str) -> None:
    created = create(client, {"date": "2026-01-05", "new_registrations": 3})
    url = "/api/daily/" if method == "post" else f"/api/daily/{created['id']}/"
    body = {k: v for k, v in full_body("2026-01-06").items() if k != "new_registrations"} if method == "put" else {}
    for value, message in [
        (-1, "Expected `int` >= 0"), ("many", "Expected `int`, got `str`"), (None, "Expected `int`, got `null`"),
    ]:  # fmt: skip
        sent = {"date": "2026-01-06", **body, "new_users": value}
        assert error(getattr(client, method)(url, json=sent)) == (400, [("new_users", message)])
    assert registrations(database_url) == [("2026-01-05", 3)]

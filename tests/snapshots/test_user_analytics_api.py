"""`/api/user-analytics/`: create, list (each filter, each ordering, pages), get, put, patch, delete, 400/404/409,
and what a user who is not staff may see (their own rows) and do (nothing else)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from tests.support import bearer, rows

FIGURES = [
    "page_views", "actions_performed", "communities_viewed", "communities_joined", "community_online_time",
    "community_interactions", "geo_restricted_attempts", "total_posts", "total_comments", "total_likes_given",
    "total_likes_received", "followers_gained", "followers_lost", "total_sessions", "total_time_spent",
    "avg_session_duration", "recommendations_shown", "recommendations_clicked",
]  # fmt: skip
FLOATS = {"community_online_time", "total_time_spent", "avg_session_duration"}

# Created in this order (ids 1..5 in a fresh database): user, date, page_views, actions_performed, total_time_spent.
ROWS = [
    (7, "2026-01-02", 5, 3, 10.5),
    (8, "2026-01-01", 2, 9, 4.0),
    (7, "2026-01-03", 9, 1, 30.0),
    (9, "2026-01-02", 2, 4, 0.0),
    (8, "2026-01-03", 7, 3, 12.25),
]


def full_body(user_id: int, day: str) -> dict[str, Any]:
    """Every writable field: figure i is 1 + i (floats with a quarter)."""
    body: dict[str, Any] = {"user_id": user_id, "date": day}
    for i, name in enumerate(FIGURES):
        body[name] = 1 + i + 0.25 if name in FLOATS else 1 + i
    body["locations_accessed_from"] = [{"country_code": "FR", "city": "Lyon"}]
    body["travel_detected"] = True
    return body


def create(client: TestClient[Any], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/user-analytics/", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def seed(client: TestClient[Any]) -> list[int]:
    """The ROWS; their ids in ROWS order."""
    return [
        create(
            client,
            {"user_id": u, "date": d, "page_views": pv, "actions_performed": ap, "total_time_spent": t},
        )["id"]
        for u, d, pv, ap, t in ROWS
    ]


def listed(client: TestClient[Any], query: str, ids: list[int], **kwargs: Any) -> list[int]:
    """The index in ROWS of every row on the page."""
    response = client.get(f"/api/user-analytics/{query}", **kwargs)
    assert response.status_code == 200, response.text
    return [ids.index(row["id"]) for row in response.json()["results"]]


def error(response: Any) -> tuple[int, list[tuple[str, str]]]:
    body = response.json()
    assert body["status_code"] == response.status_code
    return response.status_code, [(e["field"], e["message"]) for e in body.get("errors", [])]


def stored(database_url: str) -> list[tuple[Any, ...]]:
    return rows(
        database_url, "SELECT user_id, date::text, page_views, locations_accessed_from FROM user_analytics ORDER BY id"
    )


def test_create_fills_defaults_and_get_answers_the_same_row(client: TestClient[Any], database_url: str) -> None:
    before = datetime.now(UTC)
    created = create(
        client,
        {"user_id": 7, "date": "2026-01-05", "page_views": 4,
         "locations_accessed_from": [{"country_code": "DE", "city": "Berlin"}, {"country_code": "AT"}]},
    )  # fmt: skip
    assert {k: v for k, v in created.items() if k not in {"id", "last_calculated"}} == {
        "user_id": 7,
        "date": "2026-01-05",
        **{name: 0.0 if name in FLOATS else 0 for name in FIGURES},
        "page_views": 4,
        "locations_accessed_from": [{"country_code": "DE", "city": "Berlin"}, {"country_code": "AT", "city": None}],
        "travel_detected": False,
        "user": 7,  # the documentation's name for user_id
    }
    calculated = datetime.fromisoformat(created["last_calculated"])
    assert before - timedelta(seconds=1) <= calculated <= datetime.now(UTC) + timedelta(seconds=1)
    assert client.get(f"/api/user-analytics/{created['id']}/").json() == created
    assert stored(database_url) == [
        (7, "2026-01-05", 4, [{"country_code": "DE", "city": "Berlin"}, {"country_code": "AT", "city": None}])
    ]


def test_list_filters(client: TestClient[Any]) -> None:
    ids = seed(client)
    # Newest day first, ties newest id first.
    assert listed(client, "", ids) == [4, 2, 3, 0, 1]
    assert listed(client, "?user=7", ids) == [2, 0]
    assert listed(client, "?user=8", ids) == [4, 1]
    assert listed(client, "?user=10", ids) == []
    assert listed(client, "?date_from=2026-01-02", ids) == [4, 2, 3, 0]
    assert listed(client, "?date_to=2026-01-02", ids) == [3, 0, 1]
    assert listed(client, "?user=7&date_to=2026-01-02", ids) == [0]
    assert listed(client, "?user=8&date_from=2026-01-01&date_to=2026-01-01", ids) == [1]


@pytest.mark.parametrize(
    ("field", "ascending"),
    [
        ("date", [1, 0, 3, 2, 4]),
        ("user_id", [0, 2, 1, 4, 3]),
        ("page_views", [1, 3, 0, 4, 2]),
        ("actions_performed", [2, 0, 4, 3, 1]),
        ("total_time_spent", [3, 1, 0, 4, 2]),
        ("id", [0, 1, 2, 3, 4]),
    ],
)
def test_list_orders_by_each_field(client: TestClient[Any], field: str, ascending: list[int]) -> None:
    ids = seed(client)
    assert listed(client, f"?ordering={field}", ids) == ascending
    assert listed(client, f"?ordering=-{field}", ids) == ascending[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?user=0", "user"),
        ("?user=seven", "user"),
        ("?date_from=2026-1-1x", "date_from"),
        ("?date_from=2026-01-03&date_to=2026-01-01", "date_to"),
        ("?ordering=total_posts", "ordering"),
        ("?page_size=1000", "page_size"),
    ],
)
def test_list_rejects_bad_parameters(client: TestClient[Any], query: str, field: str) -> None:
    status, errors = error(client.get(f"/api/user-analytics/{query}"))
    assert status == 400
    assert [f for f, _ in errors] == [field]


def test_pages(client: TestClient[Any]) -> None:
    ids = seed(client)
    first = client.get("/api/user-analytics/?ordering=user_id&page_size=3").json()
    assert (first["count"], first["next"], first["previous"]) == (
        5, "/api/user-analytics/?ordering=user_id&page_size=3&page=2", None,
    )  # fmt: skip
    assert [ids.index(r["id"]) for r in first["results"]] == [0, 2, 1]
    second = client.get(first["next"]).json()
    assert (second["next"], second["previous"]) == (None, "/api/user-analytics/?ordering=user_id&page_size=3&page=1")
    assert [ids.index(r["id"]) for r in second["results"]] == [4, 3]


def test_put_replaces_every_field(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    before = client.get(f"/api/user-analytics/{ids[1]}/").json()
    response = client.put(f"/api/user-analytics/{ids[1]}/", json=full_body(10, "2026-02-01"))
    assert response.status_code == 200, response.text
    replaced = response.json()
    assert {k: v for k, v in replaced.items() if k != "last_calculated"} == {
        "id": ids[1],
        **full_body(10, "2026-02-01"),
        "user": 10,
    }
    assert datetime.fromisoformat(replaced["last_calculated"]) > datetime.fromisoformat(before["last_calculated"])
    assert stored(database_url)[1] == (10, "2026-02-01", 1, [{"country_code": "FR", "city": "Lyon"}])


def test_put_names_every_missing_field(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    body = full_body(7, "2026-01-02")
    del body["user_id"], body["travel_detected"]
    assert error(client.put(f"/api/user-analytics/{ids[0]}/", json=body)) == (
        400,
        [("user_id", "required field is missing"), ("travel_detected", "required field is missing")],
    )
    assert stored(database_url)[0] == (7, "2026-01-02", 5, [])


def test_patch_changes_only_what_was_sent(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    before = client.get(f"/api/user-analytics/{ids[2]}/").json()
    response = client.patch(
        f"/api/user-analytics/{ids[2]}/",
        json={"travel_detected": True, "locations_accessed_from": [{"city": "Oslo"}], "total_posts": 4},
    )
    assert response.status_code == 200, response.text
    changed = {"travel_detected": True, "locations_accessed_from": [{"country_code": None, "city": "Oslo"}],
               "total_posts": 4}  # fmt: skip
    patched = response.json()
    assert {k: patched[k] for k in changed} == changed
    assert {k: v for k, v in patched.items() if k not in {*changed, "last_calculated"}} == {
        k: v for k, v in before.items() if k not in {*changed, "last_calculated"}
    }
    assert datetime.fromisoformat(patched["last_calculated"]) > datetime.fromisoformat(before["last_calculated"])
    assert [r[:3] for r in stored(database_url)] == [(u, d, pv) for u, d, pv, _, _ in ROWS]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": 1}, [("id", "read-only field")]),
        ({"last_calculated": "2026-01-01T00:00:00Z"}, [("last_calculated", "read-only field")]),
        ({"id": 1, "score": 3}, [("id", "read-only field"), ("score", "unknown field")]),
        ({"user_id": 0}, [("user_id", "Expected `int` >= 1")]),
        ({"user_id": "7"}, [("user_id", "Expected `int`, got `str`")]),
        ({"page_views": 1.5}, [("page_views", "Expected `int`, got `float`")]),
        ({"travel_detected": "yes"}, [("travel_detected", "Expected `bool`, got `str`")]),
        ({"total_time_spent": -0.5}, [("total_time_spent", "Expected `float` >= 0.0")]),
        (
            {"locations_accessed_from": {"city": "Oslo"}},
            [("locations_accessed_from", "Expected `array`, got `object`")],
        ),
        (
            {"locations_accessed_from": [{"country_code": "de"}]},
            [("locations_accessed_from[0].country_code", "Expected `str` matching regex '^[A-Z]{2}$'")],
        ),
        (
            {"locations_accessed_from": [{"country": "Germany"}]},
            [("locations_accessed_from[0].country", "unknown field")],
        ),
    ],
)
def test_bad_bodies_are_refused_and_leave_nothing(
    client: TestClient[Any], database_url: str, method: str, change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    ids = seed(client)
    before = stored(database_url)
    url = "/api/user-analytics/" if method == "post" else f"/api/user-analytics/{ids[0]}/"
    body = {**(full_body(7, "2026-03-01") if method == "put" else {"user_id": 7, "date": "2026-03-01"}), **change}
    assert error(getattr(client, method)(url, json=body)) == (400, expected)
    assert stored(database_url) == before


def test_post_requires_user_and_date(client: TestClient[Any], database_url: str) -> None:
    assert error(client.post("/api/user-analytics/", json={"page_views": 3})) == (
        400,
        [("user_id", "required field is missing"), ("date", "required field is missing")],
    )
    assert stored(database_url) == []


def test_a_taken_user_and_day_is_409_and_nothing_changes(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    before = stored(database_url)
    conflict = {
        "status_code": 409,
        "detail": "user analytics for user_id 7, date 2026-01-02 exists already",
        "errors": [
            {"field": "user_id", "message": "7 is taken together with date 2026-01-02"},
            {"field": "date", "message": "2026-01-02 is taken together with user_id 7"},
        ],
    }
    response = client.post("/api/user-analytics/", json={"user_id": 7, "date": "2026-01-02", "page_views": 50})
    assert (response.status_code, response.json()) == (409, conflict)
    response = client.put(f"/api/user-analytics/{ids[1]}/", json=full_body(7, "2026-01-02"))
    assert (response.status_code, response.json()) == (409, conflict)
    # Only the user is sent: the row's own day (2026-01-02) completes the key named in the answer.
    response = client.patch(f"/api/user-analytics/{ids[3]}/", json={"user_id": 7, "page_views": 50})
    assert (response.status_code, response.json()) == (409, conflict)
    response = client.patch(f"/api/user-analytics/{ids[2]}/", json={"date": "2026-01-02"})
    assert (response.status_code, response.json()) == (409, conflict)
    assert stored(database_url) == before
    # The same user on another day is fine.
    assert client.post("/api/user-analytics/", json={"user_id": 7, "date": "2026-01-04"}).status_code == 201


def test_delete_then_404(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    assert client.delete(f"/api/user-analytics/{ids[0]}/").status_code == 204
    assert client.get(f"/api/user-analytics/{ids[0]}/").status_code == 404
    assert client.delete(f"/api/user-analytics/{ids[0]}/").status_code == 404
    assert [r[:2] for r in stored(database_url)] == [(u, d) for u, d, _, _, _ in ROWS[1:]]


@pytest.mark.parametrize("row_id", ["999", "0", "9223372036854775808"])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_ids_are_404(client: TestClient[Any], database_url: str, method: str, row_id: str) -> None:
    seed(client)
    before = stored(database_url)
    kwargs: dict[str, Any] = {"json": full_body(7, "2026-03-01")} if method in {"put", "patch"} else {}
    response = getattr(client, method)(f"/api/user-analytics/{row_id}/", **kwargs)
    assert (response.status_code, response.json()) == (
        404,
        {"status_code": 404, "detail": f"No user analytics {row_id}"},
    )
    assert stored(database_url) == before


def test_a_user_reads_only_their_own_rows(client: TestClient[Any], settings: Settings) -> None:
    ids = seed(client)
    seven = bearer(settings, "7")
    # Without a filter the list is theirs alone; the count and links agree.
    page = client.get("/api/user-analytics/?page_size=1", headers=seven).json()
    assert page["count"] == 2
    assert [ids.index(r["id"]) for r in page["results"]] == [2]
    assert page["next"] == "/api/user-analytics/?page_size=1&page=2"
    assert listed(client, "?user=7&ordering=date", ids, headers=seven) == [0, 2]
    assert client.get(f"/api/user-analytics/{ids[0]}/", headers=seven).json()["user_id"] == 7
    # Another user's rows: 403, not an empty page.
    response = client.get("/api/user-analytics/?user=8", headers=seven)
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "user analytics of other users are for staff only",
    )
    assert client.get(f"/api/user-analytics/{ids[1]}/", headers=seven).status_code == 403
    # A service token is not a user.
    service = bearer(settings, "backend", service=True)
    assert client.get("/api/user-analytics/", headers=service).status_code == 403
    assert client.get(f"/api/user-analytics/{ids[0]}/", headers=service).status_code == 403


def test_only_staff_write(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    ids = seed(client)
    before = stored(database_url)
    for headers in (bearer(settings, "7"), bearer(settings, "backend", service=True)):
        own = f"/api/user-analytics/{ids[0]}/"
        assert (
            client.post("/api/user-analytics/", json={"user_id": 7, "date": "2026-03-01"}, headers=headers).status_code
            == 403
        )
        assert client.put(own, json=full_body(7, "2026-01-02"), headers=headers).status_code == 403
        assert client.patch(own, json={"page_views": 1000}, headers=headers).status_code == 403
        assert client.delete(own, headers=headers).status_code == 403
    assert stored(database_url) == before


# `user` is the original product's documented name for `user_id`: served beside it, written under either name
# (never both), stored in the one column; the `?user=` filter is unchanged.
SAME_ID = ("user", "the same field as `user_id`: send one of them")


def test_every_row_answered_carries_user(client: TestClient[Any], database_url: str) -> None:
    rows(database_url, "INSERT INTO user_analytics (user_id, date) VALUES (9, '2026-01-04') RETURNING id")
    created = create(client, {"user_id": 7, "date": "2026-01-05"})
    assert (created["user_id"], created["user"]) == (7, 7)
    assert client.get(f"/api/user-analytics/{created['id']}/").json() == created
    listed = client.get("/api/user-analytics/").json()["results"]
    assert [(r["user_id"], r["user"]) for r in listed] == [(7, 7), (9, 9)]
    assert [(r["user_id"], r["user"]) for r in client.get("/api/user-analytics/?user=9").json()["results"]] == [(9, 9)]


@pytest.mark.parametrize("name", ["user", "user_id"])
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_writes_take_either_name(client: TestClient[Any], database_url: str, method: str, name: str) -> None:
    created = create(client, {"user_id": 7, "date": "2026-01-05"}) if method != "post" else None
    url = "/api/user-analytics/" if created is None else f"/api/user-analytics/{created['id']}/"
    body = {k: v for k, v in full_body(0, "2026-01-05").items() if k != "user_id"} if method == "put" else {}
    response = getattr(client, method)(url, json={"date": "2026-01-05", **body, name: 12})
    assert response.status_code == (201 if method == "post" else 200), response.text
    assert (response.json()["user_id"], response.json()["user"]) == (12, 12)
    assert [r[:2] for r in stored(database_url)] == [(12, "2026-01-05")]


@pytest.mark.parametrize("method", ["post", "put"])
def test_post_and_put_require_a_user_under_either_name(client: TestClient[Any], database_url: str, method: str) -> None:
    created = create(client, {"user_id": 7, "date": "2026-01-05"})
    url = "/api/user-analytics/" if method == "post" else f"/api/user-analytics/{created['id']}/"
    body = {k: v for k, v in full_body(0, "2026-01-06").items() if k != "user_id"}
    assert error(getattr(client, method)(url, json=body)) == (400, [("user_id", "required field is missing")])
    assert [r[:2] for r in stored(database_url)] == [(7, "2026-01-05")]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_both_names_are_refused_and_nothing_is_written(client: TestClient[Any], database_url: str, method: str) -> None:
    created = create(client, {"user_id": 7, "date": "2026-01-05"})
    before = stored(database_url)
    url = "/api/user-analytics/" if method == "post" else f"/api/user-analytics/{created['id']}/"
    body = full_body(8, "2026-01-06") if method == "put" else {"user_id": 8, "date": "2026-01-06"}
    for user in (8, 9):  # refused even when both carry the same id
        assert error(getattr(client, method)(url, json={**body, "user": user})) == (400, [SAME_ID])
    assert stored(database_url) == before


def test_a_bad_user_is_named_as_sent(client: TestClient[Any], database_url: str) -> None:
    for value, message in [
        (0, "Expected `int` >= 1"), ("7", "Expected `int`, got `str`"),
        (2**63, "integers must fit in 64 bits (-2^63 to 2^63 - 1)"),
    ]:  # fmt: skip
        response = client.post("/api/user-analytics/", json={"user": value, "date": "2026-01-05"})
        assert error(response) == (400, [("user", message)])
    assert stored(database_url) == []

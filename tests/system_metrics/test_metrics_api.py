"""`/api/metrics/`: create, list (each filter, each ordering, pages), get, put, patch (moving a sample in time),
delete, 400/403/404, the hourly rollup following every write, and the move on a real TimescaleDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from service.core.db import detect_engine
from service.core.settings import Settings
from service.storage.migrations import migrate
from tests.support import at, bearer, refresh_rollups, rows, staff_client
from tests.timescale.conftest import timescale_url  # noqa: F401 - the fixture, for the TimescaleDB test

# Six samples, created in this order (ids 1..6 in a fresh database): (type, value, days ago, hour).
SAMPLES = [
    ("memory_usage", 61.0, 2, 10),
    ("cpu_usage", 12.5, 2, 9),
    ("cpu_usage", 80.0, 1, 11),
    ("disk_usage", 12.5, 3, 8),
    ("cpu_usage", -3.0, 1, 9),
    ("memory_usage", 70.25, 1, 10),
]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def create(client: TestClient[Any], body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/api/metrics/", json=body, **kwargs)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def seed(client: TestClient[Any]) -> list[int]:
    """The SAMPLES, their ids in SAMPLES order."""
    return [
        create(client, {"metric_type": t, "value": v, "recorded_at": iso(at(d, h)), "additional_data": {"n": i}})["id"]
        for i, (t, v, d, h) in enumerate(SAMPLES)
    ]


def listed(client: TestClient[Any], query: str) -> list[int]:
    """The `n` (index in SAMPLES) of every sample on the page."""
    response = client.get(f"/api/metrics/{query}")
    assert response.status_code == 200, response.text
    return [row["additional_data"]["n"] for row in response.json()["results"]]


def error(response: Any) -> tuple[int, list[tuple[str, str]]]:
    body = response.json()
    assert body["status_code"] == response.status_code
    return response.status_code, [(e["field"], e["message"]) for e in body.get("errors", [])]


def stored(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT id, metric_type, value, recorded_at FROM system_metrics ORDER BY id")


def parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_with_defaults_and_get(client: TestClient[Any], database_url: str) -> None:
    before = datetime.now(UTC)
    created = create(client, {"metric_type": "cpu_usage", "value": 42.5})
    after = datetime.now(UTC)
    assert (created["metric_type"], created["value"], created["additional_data"]) == ("cpu_usage", 42.5, {})
    assert before - timedelta(seconds=1) <= parsed(created["recorded_at"]) <= after + timedelta(seconds=1)
    assert client.get(f"/api/metrics/{created['id']}/").json() == created

    moment = at(1, 7, 30)
    full = create(
        client,
        {"metric_type": "queue_depth", "value": 7, "additional_data": {"queue": "mail"}, "recorded_at": iso(moment)},
    )
    assert (full["metric_type"], full["value"], full["additional_data"]) == ("queue_depth", 7.0, {"queue": "mail"})
    assert parsed(full["recorded_at"]) == moment
    assert [(r[1], r[2], r[3]) for r in stored(database_url)] == [
        ("cpu_usage", 42.5, parsed(created["recorded_at"])),
        ("queue_depth", 7.0, moment),
    ]


def test_list_filters(client: TestClient[Any]) -> None:
    seed(client)
    # Newest first by default.
    assert listed(client, "") == [2, 5, 4, 0, 1, 3]
    assert listed(client, "?metric_type=cpu_usage") == [2, 4, 1]
    assert listed(client, "?metric_type=load_average") == []
    since = iso(at(1, 10))
    assert listed(client, f"?recorded_since={since}") == [2, 5]  # at or after
    assert listed(client, f"?recorded_until={since}") == [4, 0, 1, 3]  # strictly before
    assert listed(client, f"?recorded_since={iso(at(2, 9))}&recorded_until={iso(at(1, 11))}") == [5, 4, 0, 1]
    assert listed(client, f"?metric_type=memory_usage&recorded_since={iso(at(2, 0))}") == [5, 0]
    # A time without a zone is UTC.
    naive = at(1, 10).replace(tzinfo=None).isoformat()
    assert listed(client, f"?recorded_since={naive}") == [2, 5]


@pytest.mark.parametrize(
    ("field", "ascending"),
    [
        ("recorded_at", [3, 1, 0, 4, 5, 2]),
        ("value", [4, 1, 3, 0, 5, 2]),  # 12.5 twice: n=1 (id 2) before n=3 (id 4)
        ("metric_type", [1, 2, 4, 3, 0, 5]),  # cpu (ids 2, 3, 5), disk, memory (ids 1, 6)
        ("id", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_list_orders_by_each_field(client: TestClient[Any], field: str, ascending: list[int]) -> None:
    seed(client)
    assert listed(client, f"?ordering={field}") == ascending
    assert listed(client, f"?ordering=-{field}") == ascending[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?metric_type=CPU", "metric_type"),
        ("?metric_type=" + "a" * 64, "metric_type"),
        ("?recorded_since=yesterday", "recorded_since"),
        ("?recorded_until=2026-01-01T25:00:00Z", "recorded_until"),
        ("?recorded_since=2026-01-02T00:00:00Z&recorded_until=2026-01-01T00:00:00Z", "recorded_until"),
        ("?ordering=additional_data", "ordering"),
        ("?ordering=-", "ordering"),
        ("?page=0", "page"),
        ("?page_size=501", "page_size"),
    ],
)
def test_list_rejects_bad_parameters(client: TestClient[Any], query: str, field: str) -> None:
    status, errors = error(client.get(f"/api/metrics/{query}"))
    assert status == 400
    assert [f for f, _ in errors] == [field]


def test_pages(client: TestClient[Any]) -> None:
    seed(client)
    first = client.get("/api/metrics/?metric_type=cpu_usage&page_size=2").json()
    assert first["count"] == 3
    assert (first["next"], first["previous"]) == ("/api/metrics/?metric_type=cpu_usage&page_size=2&page=2", None)
    assert [r["additional_data"]["n"] for r in first["results"]] == [2, 4]
    second = client.get(first["next"]).json()
    assert (second["next"], second["previous"]) == (None, "/api/metrics/?metric_type=cpu_usage&page_size=2&page=1")
    assert [r["additional_data"]["n"] for r in second["results"]] == [1]
    assert client.get("/api/metrics/?page=3&page_size=5").json() == {
        "count": 6, "next": None, "previous": "/api/metrics/?page_size=5&page=2", "results": [],
    }  # fmt: skip


def test_put_replaces_and_patch_changes_only_what_was_sent(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    moment = at(1, 9)  # the sample's own time: no move
    response = client.put(
        f"/api/metrics/{ids[4]}/",
        json={"metric_type": "cpu_steal", "value": 0.25, "additional_data": {"core": 3}, "recorded_at": iso(moment)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": ids[4], "metric_type": "cpu_steal", "value": 0.25, "additional_data": {"core": 3},
        "recorded_at": iso(moment),
    }  # fmt: skip
    response = client.patch(f"/api/metrics/{ids[4]}/", json={"value": 1.5})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": ids[4], "metric_type": "cpu_steal", "value": 1.5, "additional_data": {"core": 3},
        "recorded_at": iso(moment),
    }  # fmt: skip
    assert client.get(f"/api/metrics/{ids[4]}/").json() == response.json()
    # The other samples are untouched.
    assert [r[1:3] for r in stored(database_url)] == [
        ("memory_usage", 61.0), ("cpu_usage", 12.5), ("cpu_usage", 80.0), ("disk_usage", 12.5),
        ("cpu_steal", 1.5), ("memory_usage", 70.25),
    ]  # fmt: skip


def test_put_names_every_missing_field(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    assert error(client.put(f"/api/metrics/{ids[0]}/", json={"value": 3})) == (
        400,
        [
            ("metric_type", "required field is missing"),
            ("additional_data", "required field is missing"),
            ("recorded_at", "required field is missing"),
        ],
    )
    assert stored(database_url)[0][1:3] == ("memory_usage", 61.0)


def test_moving_a_sample_in_time_keeps_its_id(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    weeks_ago = at(20, 6)  # another week: another chunk of the hypertable on timescaledb
    response = client.patch(f"/api/metrics/{ids[2]}/", json={"recorded_at": iso(weeks_ago), "value": 81})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": ids[2], "metric_type": "cpu_usage", "value": 81.0, "additional_data": {"n": 2},
        "recorded_at": iso(weeks_ago),
    }  # fmt: skip
    assert rows(database_url, "SELECT value, recorded_at FROM system_metrics WHERE id = %s", ids[2]) == [
        (81.0, weeks_ago)
    ]
    back = at(1, 12)
    body = {"metric_type": "cpu_usage", "value": 82, "additional_data": {}, "recorded_at": iso(back)}
    assert client.put(f"/api/metrics/{ids[2]}/", json=body).json()["recorded_at"] == iso(back)
    assert rows(database_url, "SELECT value, recorded_at FROM system_metrics WHERE id = %s", ids[2]) == [(82.0, back)]
    assert len(stored(database_url)) == 6
    # A new sample still gets a fresh id after a row was inserted with its own.
    assert create(client, {"metric_type": "cpu_usage", "value": 1})["id"] == ids[-1] + 1


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": 9}, [("id", "read-only field")]),
        ({"unit": "percent"}, [("unit", "unknown field")]),
        ({"metric_type": "CPU"}, [("metric_type", "Expected `str` matching regex '^[a-z][a-z0-9_]{0,62}$'")]),
        ({"metric_type": "a" * 64}, [("metric_type", "Expected `str` of length <= 63")]),
        ({"metric_type": None}, [("metric_type", "Expected `str`, got `null`")]),
        ({"value": "high"}, [("value", "Expected `float`, got `str`")]),
        ({"additional_data": [1]}, [("additional_data", "Expected `object`, got `array`")]),
        ({"recorded_at": "2026-01-01T10:00:00"}, [("recorded_at", "Expected `datetime` with a timezone component")]),
        ({"recorded_at": "soon"}, [("recorded_at", "Invalid RFC3339 encoded datetime")]),
        # What one sample could do to the hourly rollup's sums, and what jsonb cannot hold.
        ({"value": 1.7e308}, [("value", "Expected `float` <= 1e+300")]),
        ({"value": -1e301}, [("value", "Expected `float` >= -1e+300")]),
        ({"additional_data": {"a": ["x\u0000"]}}, [("additional_data.a[0]", "must not contain NUL characters")]),
        (
            {"additional_data": {"n": 2**64}},
            [("additional_data.n", "integers must fit in 64 bits (-2^63 to 2^63 - 1)")],
        ),
    ],
)
def test_bad_bodies_are_refused_and_leave_nothing(
    client: TestClient[Any], database_url: str, method: str, change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    ids = seed(client)
    before = stored(database_url)
    full = {"metric_type": "cpu_usage", "value": 1, "additional_data": {}, "recorded_at": iso(at(1, 1))}
    url = "/api/metrics/" if method == "post" else f"/api/metrics/{ids[0]}/"
    assert error(getattr(client, method)(url, json={**full, **change})) == (400, expected)
    assert stored(database_url) == before


def test_values_beyond_float_and_a_trailing_newline_are_refused(client: TestClient[Any], database_url: str) -> None:
    headers = {"content-type": "application/json"}
    response = client.post("/api/metrics/", content=b'{"metric_type": "cpu", "value": -1e999}', headers=headers)
    assert error(response) == (400, [("value", "Number out of range")])
    # Python's `$` lets a final newline through; the table's check is the last line and names the field.
    response = client.post("/api/metrics/", json={"metric_type": "cpu\n", "value": 1})
    assert error(response) == (400, [("metric_type", "violates the check system_metrics_metric_type_check")])
    assert stored(database_url) == []


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_samples_from_the_future_are_refused(client: TestClient[Any], database_url: str, method: str) -> None:
    ids = seed(client)
    before = stored(database_url)
    url = "/api/metrics/" if method == "post" else f"/api/metrics/{ids[0]}/"
    body = {"metric_type": "cpu_usage", "value": 1, "additional_data": {}}
    future = datetime.now(UTC) + timedelta(minutes=6)
    assert error(getattr(client, method)(url, json={**body, "recorded_at": iso(future)})) == (
        400,
        [("recorded_at", "must not be more than 300 seconds in the future")],
    )
    assert stored(database_url) == before
    # Within the tolerated clock skew.
    soon = datetime.now(UTC) + timedelta(minutes=2)
    assert getattr(client, method)(url, json={**body, "recorded_at": iso(soon)}).status_code in {200, 201}


def test_delete_then_404(client: TestClient[Any], database_url: str) -> None:
    ids = seed(client)
    response = client.delete(f"/api/metrics/{ids[1]}/")
    assert (response.status_code, response.content) == (204, b"")
    assert client.get(f"/api/metrics/{ids[1]}/").status_code == 404
    assert client.delete(f"/api/metrics/{ids[1]}/").status_code == 404
    assert [r[0] for r in stored(database_url)] == [ids[0], *ids[2:]]


@pytest.mark.parametrize("metric_id", ["999", "0", "9223372036854775808"])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_ids_are_404(client: TestClient[Any], database_url: str, method: str, metric_id: str) -> None:
    seed(client)
    before = stored(database_url)
    body = {"metric_type": "cpu_usage", "value": 1, "additional_data": {}, "recorded_at": iso(at(1, 1))}
    kwargs: dict[str, Any] = {"json": body} if method in {"put", "patch"} else {}
    response = getattr(client, method)(f"/api/metrics/{metric_id}/", **kwargs)
    assert (response.status_code, response.json()) == (
        404,
        {"status_code": 404, "detail": f"No system metric {metric_id}"},
    )
    assert stored(database_url) == before


def test_permissions(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    ids = seed(client)
    service = bearer(settings, "backend", service=True)
    user = bearer(settings, "7")
    assert create(client, {"metric_type": "queue_depth", "value": 4}, headers=service)["value"] == 4.0
    assert (
        client.post("/api/metrics/", json={"metric_type": "queue_depth", "value": 4}, headers=user).status_code == 403
    )
    for headers in (service, user):
        assert client.get("/api/metrics/", headers=headers).status_code == 403
        assert client.get(f"/api/metrics/{ids[0]}/", headers=headers).status_code == 403
        assert client.patch(f"/api/metrics/{ids[0]}/", json={"value": 0}, headers=headers).status_code == 403
        assert client.delete(f"/api/metrics/{ids[0]}/", headers=headers).status_code == 403
    assert len(stored(database_url)) == 7
    assert stored(database_url)[0][2] == 61.0


def hourly(database_url: str) -> list[tuple[Any, ...]]:
    return rows(
        database_url,
        "SELECT bucket, metric_type, samples, min_value, max_value FROM system_metrics_hourly "
        "ORDER BY bucket, metric_type",
    )


def test_the_hourly_rollup_follows_every_write(client: TestClient[Any], database_url: str) -> None:
    h1, h2 = at(2, 9), at(2, 14)
    a = create(client, {"metric_type": "cpu_usage", "value": 10, "recorded_at": iso(h1 + timedelta(minutes=5))})
    b = create(client, {"metric_type": "cpu_usage", "value": 30, "recorded_at": iso(h1 + timedelta(minutes=50))})
    refresh_rollups(database_url)  # both hours are now materialized below the watermark
    assert hourly(database_url) == [(h1, "cpu_usage", 2, 10.0, 30.0)]
    client.patch(f"/api/metrics/{b['id']}/", json={"value": 20})
    refresh_rollups(database_url)
    assert hourly(database_url) == [(h1, "cpu_usage", 2, 10.0, 20.0)]
    client.patch(f"/api/metrics/{b['id']}/", json={"recorded_at": iso(h2 + timedelta(minutes=1))})
    refresh_rollups(database_url)
    assert hourly(database_url) == [(h1, "cpu_usage", 1, 10.0, 10.0), (h2, "cpu_usage", 1, 20.0, 20.0)]
    assert client.delete(f"/api/metrics/{a['id']}/").status_code == 204
    refresh_rollups(database_url)
    assert hourly(database_url) == [(h2, "cpu_usage", 1, 20.0, 20.0)]


@pytest.fixture(scope="module")
def timescale_migrated(timescale_url: str) -> Iterator[str]:  # noqa: F811 - the imported fixture
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        assert detect_engine(conn) == "timescaledb"
        migrate(conn, "timescaledb")
    yield timescale_url


def test_moving_a_sample_across_chunks_on_timescaledb(
    timescale_migrated: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    # One connection at a time on this build, and no prepared statements.
    settings = settings_for(
        timescale_migrated, redis_url,
        DATABASE_POOL_MIN="1", DATABASE_POOL_MAX="1", DATABASE_PREPARED_STATEMENTS="false",
    )  # fmt: skip
    old, new = at(1, 9), at(30, 9)  # weeks apart: different chunks
    with staff_client(settings) as client:
        created = create(client, {"metric_type": "cpu_usage", "value": 5, "recorded_at": iso(old)})
        moved = client.patch(f"/api/metrics/{created['id']}/", json={"recorded_at": iso(new), "value": 6})
        assert moved.status_code == 200, moved.text
        assert moved.json() == {
            "id": created["id"], "metric_type": "cpu_usage", "value": 6.0, "additional_data": {},
            "recorded_at": iso(new),
        }  # fmt: skip
        assert client.put(
            f"/api/metrics/{created['id']}/",
            json={"metric_type": "cpu_usage", "value": 7, "additional_data": {}, "recorded_at": iso(old)},
        ).json()["recorded_at"] == iso(old)
        listed_now = client.get("/api/metrics/?metric_type=cpu_usage").json()
        assert [(r["id"], r["value"]) for r in listed_now["results"]] == [(created["id"], 7.0)]
        assert client.delete(f"/api/metrics/{created['id']}/").status_code == 204
    with psycopg.connect(timescale_migrated, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SELECT count(*) FROM system_metrics").fetchone() == (0,)

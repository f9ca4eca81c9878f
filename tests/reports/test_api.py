"""The reports endpoints: the list with each filter and its pages, one report, 404, 400 and the CSV download."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.types.json import Jsonb

from service.core.settings import Settings
from service.storage.migrations import DB_DIR, split_sql
from service.tasks.worker import execute
from tests.geo.test_geo_reports import C as GEO
from tests.geo.test_geo_reports import seed as seed_geo
from tests.support import at, refresh_rollups

# (kind, scope, period day of March 2026), inserted in this order: ids 1 to 7.
STORED = [
    ("analytics", "platform", 1),
    ("community", "community:7", 1),
    ("analytics", "platform", 2),
    ("community", "community:7", 2),
    ("community", "community:8", 2),
    ("geo_effectiveness", "community:21", 2),
    ("analytics", "platform", 3),
]


def seed(database_url: str) -> list[int]:
    """The STORED reports, each with a small payload naming itself; their ids."""
    with psycopg.connect(database_url) as conn:
        return [
            conn.execute(
                "INSERT INTO reports (kind, scope, period_start, period_end, generated_at, payload) "
                "VALUES (%s, %s, %s, %s, '2026-03-04T03:00:00Z', %s) RETURNING id",
                (kind, scope, date(2026, 3, day), date(2026, 3, day), Jsonb({"n": i})),
            ).fetchone()[0]  # type: ignore[index]
            for i, (kind, scope, day) in enumerate(STORED)
        ]


def listed(client: TestClient[Any], query: str) -> list[tuple[str, str, str]]:
    """(kind, scope, period_start) of every report on the answer's page."""
    response = client.get(f"/api/reports/{query}")
    assert response.status_code == 200, response.text
    return [(r["kind"], r["scope"], r["period_start"]) for r in response.json()["results"]]


def test_list_newest_period_first(client: TestClient[Any], database_url: str) -> None:
    ids = seed(database_url)
    body = client.get("/api/reports/").json()
    assert (body["count"], body["next"], body["previous"]) == (7, None, None)
    # By period start (newest first), then the latest generated first.
    assert [r["id"] for r in body["results"]] == [ids[i] for i in (6, 5, 4, 3, 2, 1, 0)]
    assert body["results"][0] == {
        "id": ids[6],
        "kind": "analytics",
        "scope": "platform",
        "period_start": "2026-03-03",
        "period_end": "2026-03-03",
        "generated_at": "2026-03-04T03:00:00Z",
        "payload": {"n": 6},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?kind=community", [("community", "community:8", "2026-03-02"), ("community", "community:7", "2026-03-02"),
                             ("community", "community:7", "2026-03-01")]),
        ("?kind=geo_effectiveness", [("geo_effectiveness", "community:21", "2026-03-02")]),
        ("?scope=community:7", [("community", "community:7", "2026-03-02"),
                                ("community", "community:7", "2026-03-01")]),
        ("?scope=community:9", []),
        ("?since=2026-03-02", [("analytics", "platform", "2026-03-03"),
                               ("geo_effectiveness", "community:21", "2026-03-02"),
                               ("community", "community:8", "2026-03-02"), ("community", "community:7", "2026-03-02"),
                               ("analytics", "platform", "2026-03-02")]),
        ("?until=2026-03-01", [("community", "community:7", "2026-03-01"), ("analytics", "platform", "2026-03-01")]),
        ("?since=2026-03-02&until=2026-03-02&kind=analytics", [("analytics", "platform", "2026-03-02")]),
        ("?kind=analytics&scope=platform&since=2026-03-02", [("analytics", "platform", "2026-03-03"),
                                                             ("analytics", "platform", "2026-03-02")]),
    ],
)  # fmt: skip
def test_filters(client: TestClient[Any], database_url: str, query: str, expected: list[tuple[str, str, str]]) -> None:
    seed(database_url)
    assert listed(client, query) == expected
    assert client.get(f"/api/reports/{query}").json()["count"] == len(expected)


def page_of(link: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(link)
    return parts.path, parse_qs(parts.query)


def test_pages(client: TestClient[Any], database_url: str) -> None:
    ids = seed(database_url)
    newest_first = [ids[i] for i in (6, 5, 4, 3, 2, 1, 0)]
    first = client.get("/api/reports/?page_size=3&since=2026-03-01").json()
    assert first["count"] == 7
    assert [r["id"] for r in first["results"]] == newest_first[:3]
    assert first["previous"] is None
    # The links keep the filters and the page size.
    assert page_of(first["next"]) == ("/api/reports/", {"page_size": ["3"], "since": ["2026-03-01"], "page": ["2"]})

    second = client.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == newest_first[3:6]
    assert page_of(second["previous"])[1]["page"] == ["1"]
    third = client.get(second["next"]).json()
    assert [r["id"] for r in third["results"]] == newest_first[6:]
    assert third["next"] is None
    assert page_of(third["previous"])[1]["page"] == ["2"]

    # Past the last page: nothing, and the way back leads to the last page.
    beyond = client.get("/api/reports/?page_size=3&page=9").json()
    assert (beyond["count"], beyond["results"], beyond["next"]) == (7, [], None)
    assert page_of(beyond["previous"])[1] == {"page_size": ["3"], "page": ["3"]}


def test_empty_list(client: TestClient[Any]) -> None:
    assert client.get("/api/reports/").json() == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("kind=weekly", "kind"),
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("since=2026-03-03&until=2026-03-01", "until"),
        ("page=0", "page"),
        ("page=two", "page"),
        ("page=1000001", "page"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("scope=7", "scope"),
        ("scope=community:", "scope"),
        ("scope=", "scope"),
    ],
)
def test_bad_filters(client: TestClient[Any], query: str, field: str) -> None:
    response = client.get(f"/api/reports/?{query}")
    assert response.status_code == 400
    body = response.json()
    assert (body["status_code"], body["detail"]) == (400, "Invalid input")
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["errors"][0]["message"]


def test_one_report(client: TestClient[Any], database_url: str) -> None:
    ids = seed(database_url)
    body = client.get(f"/api/reports/{ids[5]}/").json()
    assert body == {
        "id": ids[5],
        "kind": "geo_effectiveness",
        "scope": "community:21",
        "period_start": "2026-03-02",
        "period_end": "2026-03-02",
        "generated_at": "2026-03-04T03:00:00Z",
        "payload": {"n": 5},
    }


@pytest.mark.parametrize("path", ["/api/reports/424242/", "/api/reports/424242/csv/", "/api/reports/0/",
                                  f"/api/reports/{2**63}/", "/api/reports/-1/csv/"])  # fmt: skip
def test_unknown_report(client: TestClient[Any], path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["status_code"] == 404
    assert response.json()["detail"].startswith("No report ")


def test_csv_of_a_generated_report(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    seed_geo(database_url)
    refresh_rollups(database_url)
    assert execute(settings, "generate_geo_effectiveness_reports", now=at(0, 4)).status == "success"
    report = next(r for r in client.get("/api/reports/?kind=geo_effectiveness").json()["results"]
                  if r["scope"] == f"community:{GEO}")  # fmt: skip
    day = at(1, 0).date().isoformat()
    response = client.get(f"/api/reports/{report['id']}/csv/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="report-{report["id"]}-geo_effectiveness-community-{GEO}-{day}.csv"'
    )
    # Day -1 of the geo fixture (tests/geo/test_geo_reports.py): Berlin 60 and Paris 40 blocked, 23 allowed.
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert response.text.startswith("key,index,value,")
    figures = {row["key"]: row["value"] for row in table if not row["index"]}
    assert figures == {
        "bypass_attempts": "0",
        "community_id": str(GEO),
        "date_range.end": day,
        "date_range.start": day,
        "restriction_effectiveness.allowed_attempts": "23",
        "restriction_effectiveness.blocked_attempts": "100",
        "restriction_effectiveness.effectiveness_percentage": "81.3",
        "restriction_effectiveness.total_attempts": "123",
        "traveler_attempts": "15",
        **{f"categories.{name}": "0" for name in ("city_allowed", "city_blocked", "region_allowed",
                                                   "region_blocked", "restriction_bypass")},
        "categories.country_allowed": "23",
        "categories.country_blocked": "100",
        "categories.traveler_access": "15",
    }  # fmt: skip
    items = [(row["key"], row["index"]) for row in table if row["index"]]
    assert items == [
        *(("location_breakdown", str(i)) for i in range(3)),  # Germany, France, United States
        ("top_blocked_locations", "0"),
        ("top_blocked_locations", "1"),
        *(("trends", str(i)) for i in range(3)),  # 10:00, 11:00, 12:00
    ]
    top = [
        (row["country_code"], row["city"], row["attempts"]) for row in table if row["key"] == "top_blocked_locations"
    ]
    assert top == [("DE", "Berlin", "60"), ("FR", "Paris", "40")]
    breakdown = [(row["country_code"], row["counts.attempts"]) for row in table if row["key"] == "location_breakdown"]
    assert breakdown == [("DE", "60"), ("FR", "40"), ("US", "23")]
    assert response.text.endswith("\r\n")


def stored_report(database_url: str, payload: dict[str, Any]) -> int:
    """A platform report of 2026-03-01 holding `payload`, stored as a generator would; its id."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO reports (kind, scope, period_start, period_end, payload) "
            "VALUES ('analytics', 'platform', '2026-03-01', '2026-03-01', %s) RETURNING id",
            (Jsonb(payload),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_csv_flattening(client: TestClient[Any], database_url: str) -> None:
    payload = {
        "name": "a, b",  # quoted
        "nothing": None,
        "flag": True,
        "hours": [10, 22],  # a list of values: one row per item, in the value column
        "empty": [],  # no row
        "places": [{"city": "Berlin", "where": {"lat": 52.5}, "key": "k"}, {"city": None, "tags": ["x"]}],
    }
    response = client.get(f"/api/reports/{stored_report(database_url, payload)}/csv/")
    assert response.text.splitlines() == [
        "key,index,value,city,item.key,where.lat,tags",
        "flag,,true,,,,",
        "hours,0,10,,,,",
        "hours,1,22,,,,",
        'name,,"a, b",,,,',
        "nothing,,,,,,",
        "places,0,,Berlin,k,52.5,",
        'places,1,,,,,"[""x""]"',
    ]


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(client: TestClient[Any], database_url: str) -> None:
    payload = {
        "places": [{"city": '=HYPERLINK("http://evil.example","x")', "n": -3}, {"city": "+1"}, {"city": "@SUM(A1)"}],
        "note": "-2+3",
        "tab": "\tx",
        "plain": "Berlin - Mitte",
        "delta": -5,
    }
    csv_text = client.get(f"/api/reports/{stored_report(database_url, payload)}/csv/").text
    table = list(csv.DictReader(io.StringIO(csv_text)))
    values = {r["key"]: r["value"] for r in table if not r["index"]}
    assert values == {"delta": "-5", "note": "'-2+3", "plain": "Berlin - Mitte", "tab": "'\tx"}
    assert [(r["city"], r["n"]) for r in table if r["key"] == "places"] == [
        ('\'=HYPERLINK("http://evil.example","x")', "-3"),
        ("'+1", ""),
        ("'@SUM(A1)", ""),
    ]


def test_reports_stored_in_the_old_shapes_are_reshaped(client: TestClient[Any], database_url: str) -> None:
    old_community = {
        "community_id": 7, "date_range": {"start": "2026-01-01", "end": "2026-01-01"}, "total_views": 3,
        "unique_visitors": 2, "peak_online_members": 5, "average_session_duration": 17.5, "member_retention": 33.3,
        "events_by_type": {"view": 3},
    }  # fmt: skip
    old_geo = {
        "community_id": 21, "date_range": {"start": "2026-01-01", "end": "2026-01-01"},
        "restriction_effectiveness": {"total_attempts": 3, "blocked_attempts": 2, "allowed_attempts": 1,
                                      "effectiveness_percentage": 66.7},
        "top_blocked_locations": [{"country": "Germany", "country_code": "DE", "city": "Berlin", "blocked_attempts": 2},
                                  {"country": None, "country_code": None, "city": None, "blocked_attempts": 1}],
        "traveler_attempts": 0, "bypass_attempts": 0,
    }  # fmt: skip
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO reports (kind, scope, period_start, period_end, payload) VALUES "
            "('community', 'community:7', '2026-01-01', '2026-01-01', %s), "
            "('geo_effectiveness', 'community:21', '2026-01-01', '2026-01-01', %s)",
            (Jsonb(old_community), Jsonb(old_geo)),
        )
        migration = (DB_DIR / "migrations" / "0007_documented_report_shapes.sql").read_text()
        for _ in range(2):  # a second run changes nothing
            for statement in split_sql(migration):
                conn.execute(statement.encode())
    payloads = {r["kind"]: r["payload"] for r in client.get("/api/reports/?since=2026-01-01").json()["results"]}
    assert payloads["community"] == {
        "community_id": 7, "date_range": {"start": "2026-01-01", "end": "2026-01-01"},
        "metrics": {"total_views": 3, "unique_visitors": 2, "peak_online_members": 5, "average_session_duration": 17.5,
                    "member_retention": 33.3},
        "events_by_type": {"view": 3},
    }  # fmt: skip
    assert payloads["geo_effectiveness"] == {
        **old_geo,
        "top_blocked_locations": [{"country": "Germany", "country_code": "DE", "city": "Berlin", "attempts": 2},
                                  {"country": None, "country_code": None, "city": None, "attempts": 1}],
    }  # fmt: skip

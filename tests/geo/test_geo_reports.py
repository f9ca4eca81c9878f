"""Geo effectiveness, location breakdown and trends on a hand-built fixture."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from litestar.testing import TestClient

from service.live.records import GeoRecord
from tests.support import at, refresh_rollups, store

C = 21


def attempt(when: datetime, result: str, country: str, code: str, region: str | None, city: str | None,
            traveler: bool | None = None, community: int = C, scope: str | None = "country",
            user: int | None = None) -> GeoRecord:  # fmt: skip
    return GeoRecord(
        time=when, event_id=uuid.uuid4(), community_id=community, user_id=user, country=country, country_code=code,
        region=region, city=city, access_result=result, restriction_scope=scope, is_traveler=traveler,
    )  # fmt: skip


def geo_records() -> list[GeoRecord]:
    """450 attempts, 127 blocked: 60 Berlin, 40 Paris, 27 Munich; 323 allowed from the US, 15 by travelers."""
    return [
        *(attempt(at(1, 10), "blocked", "Germany", "DE", "Berlin", "Berlin") for _ in range(60)),
        *(attempt(at(1, 11), "blocked", "France", "FR", "Ile-de-France", "Paris") for _ in range(40)),
        *(attempt(at(2, 9), "blocked", "Germany", "DE", "Bavaria", "Munich") for _ in range(27)),
        *(attempt(at(2, 9), "allowed", "United States", "US", "New York", "New York") for _ in range(300)),
        *(attempt(at(1, 12), "allowed", "United States", "US", "California", "Oakland", True) for _ in range(15)),
        *(attempt(at(1, 12), "allowed", "United States", "US", "California", None) for _ in range(8)),
        attempt(at(1, 12), "blocked", "Germany", "DE", "Berlin", "Berlin", community=C + 1),  # another community
        attempt(at(40, 12), "blocked", "Germany", "DE", "Berlin", "Berlin"),  # outside the 30 days
    ]


def seed(database_url: str) -> None:
    store(database_url, geos=geo_records())


def check_effectiveness(body: dict[str, Any]) -> None:
    assert body["restriction_effectiveness"] == {
        "total_attempts": 450,
        "blocked_attempts": 127,
        "allowed_attempts": 323,
        "effectiveness_percentage": 28.2,  # 127 / 450 = 28.22 %
    }
    assert body["top_blocked_locations"] == [
        {"country": "Germany", "country_code": "DE", "city": "Berlin", "attempts": 60},
        {"country": "France", "country_code": "FR", "city": "Paris", "attempts": 40},
        {"country": "Germany", "country_code": "DE", "city": "Munich", "attempts": 27},
    ]
    assert body["traveler_attempts"] == 15
    # Every attempt of the fixture is decided by a country rule.
    assert body["categories"] == {
        "country_blocked": 127, "country_allowed": 323, "city_blocked": 0, "city_allowed": 0, "region_blocked": 0,
        "region_allowed": 0, "traveler_access": 15, "restriction_bypass": 0,
    }  # fmt: skip


def test_effectiveness(client: TestClient[Any], database_url: str) -> None:
    seed(database_url)
    refresh_rollups(database_url)
    check_effectiveness(client.get(f"/api/geo-analytics/{C}/effectiveness/?days=30").json())
    assert client.get(f"/api/geo-analytics/{C}/effectiveness/?days=30&limit=1").json()["top_blocked_locations"] == [
        {"country": "Germany", "country_code": "DE", "city": "Berlin", "attempts": 60}
    ]


def test_categories_count_scopes_results_travelers_and_bypasses(client: TestClient[Any], database_url: str) -> None:
    community, home, away = C + 10, ("Germany", "DE", "Berlin", "Berlin"), ("France", "FR", "Brittany", "Rennes")
    records = [
        *(attempt(at(1, 8), "blocked", *home, scope="country", community=community) for _ in range(3)),
        *(attempt(at(1, 8), "allowed", *home, scope="country", community=community) for _ in range(2)),
        *(attempt(at(1, 8), "blocked", *away, scope="city", community=community) for _ in range(4)),
        attempt(at(1, 8), "allowed", *away, scope="city", community=community),
        *(attempt(at(1, 8), "blocked", *away, scope="region", community=community) for _ in range(2)),
        *(attempt(at(1, 8), "allowed", *away, scope="region", traveler=True, community=community) for _ in range(2)),
        *(attempt(at(1, 8), "allowed", *away, scope="region", community=community) for _ in range(3)),
        attempt(at(1, 8), "allowed", *away, scope=None, community=community),  # no rule named: in no scope category
        # Member 77 is blocked from Germany by the country rule, then let in from France ten minutes later: a bypass
        # (and a traveler: Germany is where they were first seen).
        attempt(at(1, 9), "blocked", *home, scope="country", community=community, user=77),
        attempt(at(1, 9, 10), "allowed", *away, scope="region", community=community, user=77),
    ]
    store(database_url, geos=records)
    refresh_rollups(database_url)
    body = client.get(f"/api/geo-analytics/{community}/effectiveness/?days=7").json()
    assert body["categories"] == {
        "country_blocked": 3 + 1,  # three, and member 77
        "country_allowed": 2,
        "city_blocked": 4,
        "city_allowed": 1,
        "region_blocked": 2,
        "region_allowed": 2 + 3 + 1,  # two travelers, three others, member 77
        "traveler_access": 2 + 1,  # the two sent as travelers, and member 77 abroad
        "restriction_bypass": 1,  # member 77
    }
    assert body["restriction_effectiveness"]["total_attempts"] == 3 + 2 + 4 + 1 + 2 + 2 + 3 + 1 + 2


def test_effectiveness_without_attempts(client: TestClient[Any]) -> None:
    body = client.get(f"/api/geo-analytics/{C}/effectiveness/").json()
    assert body["restriction_effectiveness"]["total_attempts"] == 0
    assert body["restriction_effectiveness"]["effectiveness_percentage"] is None  # 0 of 0 blocked: no share
    assert body["top_blocked_locations"] == []


def test_location_breakdown(client: TestClient[Any], database_url: str) -> None:
    seed(database_url)
    body = client.get(f"/api/geo-analytics/{C}/locations/?days=30").json()  # before any refresh: real-time
    countries = body["countries"]
    assert [(c["country_code"], c["counts"]["attempts"]) for c in countries] == [("US", 323), ("DE", 87), ("FR", 40)]
    us = countries[0]
    assert us["counts"] == {"attempts": 323, "allowed": 323, "blocked": 0, "travelers": 15}
    assert [(r["region"], r["counts"]["attempts"]) for r in us["regions"]] == [("New York", 300), ("California", 23)]
    california = us["regions"][1]
    assert [(c["city"], c["counts"]["attempts"]) for c in california["cities"]] == [("Oakland", 15), (None, 8)]
    germany = countries[1]
    assert [(r["region"], r["counts"]["blocked"]) for r in germany["regions"]] == [("Berlin", 60), ("Bavaria", 27)]


def test_trends(client: TestClient[Any], database_url: str) -> None:
    seed(database_url)
    refresh_rollups(database_url)
    body = client.get(f"/api/geo-analytics/{C}/trends/?days=7").json()
    points = [(p["bucket"][:10], p["attempts"], p["allowed"], p["blocked"], p["travelers"]) for p in body["points"]]
    day2, day1 = at(2, 0).date().isoformat(), at(1, 0).date().isoformat()
    assert points == [(day2, 327, 300, 27, 0), (day1, 123, 23, 100, 15)]
    hourly = client.get(f"/api/geo-analytics/{C}/trends/?days=7&interval=hour").json()["points"]
    assert [(p["attempts"], p["blocked"]) for p in hourly] == [(327, 27), (60, 60), (40, 40), (23, 0)]

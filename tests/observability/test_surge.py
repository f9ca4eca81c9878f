"""Community surges on `/metrics`, against real PostgreSQL: which communities are exported, with which ratio.

A trailing week of hourly activity and geo decisions for several communities, and the half hour before the
moment of the figures, stored through the ingest write path and rolled up; the moment is half past an hour
(f = 0.5), so every expected figure below is computed by hand from the counts: last hour = the current hour's
events + half the previous hour's; baseline = (half the same hour + half the hour before, over the 7 previous
days) / 7, at least 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from litestar.testing import TestClient

from service.app import create_app
from service.core.db import detect_engine
from service.core.settings import Settings
from service.live.records import ActivityRecord, GeoRecord
from service.storage.buckets import HOUR, floor
from service.storage.migrations import migrate
from service.storage.surges import bucket_weights
from service.tools.localstack import PostgresServer
from service.web import metrics_api
from tests.observability.test_metrics import Samples, parse, series, value
from tests.support import act, refresh_rollups, store

ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)
SURGE_NAMES = (
    "analytics_community_surge_ratio",
    "analytics_community_surge_last_hour_events",
    "analytics_community_surge_baseline_events",
)


def spread(start: datetime, n: int, span: timedelta = HOUR) -> list[datetime]:
    """`n` moments evenly over [start, start + span)."""
    return [start + span * i / n for i in range(n)]


def activity(community: int | None, start: datetime, n: int, span: timedelta = HOUR) -> list[ActivityRecord]:
    return [act(t, community, i % 40 + 1) for i, t in enumerate(spread(start, n, span))]


def decisions(community: int, start: datetime, n: int, result: str, span: timedelta = HOUR) -> list[GeoRecord]:
    return [
        GeoRecord(t, uuid.uuid4(), community, i % 40 + 1, "Germany", "DE", None, None, result, "country", False)
        for i, t in enumerate(spread(start, n, span))
    ]


class World:
    """The events of a test, hour by hour around `moment` (half past the hour `current`)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment
        self.current = floor(moment, HOUR)
        self.so_far = moment - self.current  # the part of the current hour before the moment
        self.activities: list[ActivityRecord] = []
        self.geos: list[GeoRecord] = []

    def week(self) -> list[datetime]:
        """The 169 complete hours before the current one: the previous hour and the 7 days' baseline hours."""
        return [self.current - HOUR * h for h in range(1, 170)]

    def activity(self, community: int | None, per_hour: Callable[[datetime], int] | int, now: int) -> None:
        """`per_hour` events in every hour of the week (a number, or one per hour), `now` in the current hour."""
        for hour in self.week():
            self.activities += activity(community, hour, per_hour if isinstance(per_hour, int) else per_hour(hour))
        self.activity_now(community, now)

    def activity_now(self, community: int | None, n: int) -> None:
        self.activities += activity(community, self.current, n, self.so_far)

    def blocked(self, community: int, per_hour: int, now: int, allowed: int = 0, allowed_now: int = 0) -> None:
        """Blocked and allowed decisions per hour of the week, and in the current hour."""
        for hour in self.week():
            self.geos += decisions(community, hour, per_hour, "blocked")
            self.geos += decisions(community, hour, allowed, "allowed")
        self.geos += decisions(community, self.current, now, "blocked", self.so_far)
        self.geos += decisions(community, self.current, allowed_now, "allowed", self.so_far)


def surge_world(database_url: str, moment: datetime) -> None:
    """Store and roll up the communities of the tests; the comments give each one's figures."""
    world = World(moment)

    def peak_at_this_hour(hour: datetime) -> int:  # 200 in this hour and the one before, every day; 20 otherwise
        return 200 if (world.current - hour) % DAY in (timedelta(0), HOUR) else 20

    world.activity(1, 100, 50)  # steady: 50 + 100/2 = 100 against 100, ratio 1
    world.activities += activity(1, world.current - 8 * DAY, 500)  # 8 days ago: outside the baseline
    world.activity(2, 20, 300)  # surging: 300 + 20/2 = 310 against 20, ratio 15.5
    world.activity(3, 40, 100)  # growing: 100 + 40/2 = 120 against 40, ratio 3
    world.activity(4, 1, 30)  # tiny: 30 + 1/2 = 30.5 < 50 events, left out
    world.activity_now(5, 60)  # new: 60 against nothing, i.e. the floor of 1, ratio 60
    world.activity(6, peak_at_this_hour, 100)  # at its daily peak: 100 + 200/2 = 200 against 200, ratio 1
    world.activity_now(None, 1000)  # platform events belong to no community
    world.blocked(7, 5, 400, allowed=20, allowed_now=500)  # 400 + 5/2 = 402.5 against 5; allowed ones do not count
    world.blocked(2, 10, 5)  # 5 + 10/2 = 10 < 50, left out
    world.blocked(8, 50, 25)  # 25 + 50/2 = 50: exactly the minimum, counted
    store(database_url, world.activities, world.geos)
    refresh_rollups(database_url)


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Half past the previous hour, as the clock of the surge figures."""
    at = floor(datetime.now(UTC), HOUR) - HOUR + HOUR / 2
    monkeypatch.setattr(metrics_api, "now", lambda: at)
    return at


def scrape(settings: Settings) -> tuple[int, Samples]:
    """One scrape of a new API process (its own surge cache)."""
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    return response.status_code, parse(response.text)


def surging(samples: Samples) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(signal, community) -> (ratio, last hour, baseline) of every exported community."""
    found = {}
    for labels in series(samples, "analytics_community_surge_ratio"):
        key = {"community_id": labels["community_id"], "signal": labels["signal"]}
        found[(labels["signal"], int(labels["community_id"]))] = (
            value(samples, "analytics_community_surge_ratio", **key),
            value(samples, "analytics_community_surge_last_hour_events", **key),
            value(samples, "analytics_community_surge_baseline_events", **key),
        )
    for name in SURGE_NAMES[1:]:
        assert len(series(samples, name)) == len(found), name
    return found


def test_bucket_weights_cut_the_last_hour_and_the_baseline_days_at_the_moment() -> None:
    at = datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
    weights = bucket_weights(at)
    ten, nine = datetime(2026, 3, 4, 10, tzinfo=UTC), datetime(2026, 3, 4, 9, tzinfo=UTC)
    assert weights[ten] == (1.0, 0.0) and weights[nine] == (0.75, 0.0)
    for day in range(1, 8):
        assert weights[ten - day * DAY] == (0.0, 0.25) and weights[nine - day * DAY] == (0.0, 0.75)
    assert len(weights) == 16


def test_surging_communities_are_exported_with_their_hand_computed_ratios(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings], moment: datetime
) -> None:
    surge_world(database_url, moment)
    status, samples = scrape(settings_for(database_url, redis_url))  # defaults: 10 per signal, 50 events
    assert status == 200
    assert surging(samples) == {
        ("activity", 5): (60.0, 60.0, 1.0),
        ("activity", 2): (15.5, 310.0, 20.0),
        ("activity", 3): (3.0, 120.0, 40.0),
        ("activity", 1): (1.0, 100.0, 100.0),
        ("activity", 6): (1.0, 200.0, 200.0),  # 5.7x the mean of all its hours, but this is its usual peak
        ("geo_blocked", 7): (80.5, 402.5, 5.0),
        ("geo_blocked", 8): (1.0, 50.0, 50.0),
    }
    # Highest ratio first within a signal, ties by community id.
    order = [(labels["signal"], labels["community_id"]) for labels in series(samples, SURGE_NAMES[0])]
    assert order == [
        ("activity", "5"), ("activity", "2"), ("activity", "3"), ("activity", "1"), ("activity", "6"),
        ("geo_blocked", "7"), ("geo_blocked", "8"),
    ]  # fmt: skip


def test_the_series_are_bounded_and_the_volume_floor_is_a_setting(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings], moment: datetime
) -> None:
    surge_world(database_url, moment)
    _, top_two = scrape(settings_for(database_url, redis_url, METRICS_SURGE_COMMUNITIES="2"))
    assert set(surging(top_two)) == {("activity", 5), ("activity", 2), ("geo_blocked", 7), ("geo_blocked", 8)}
    _, busier = scrape(settings_for(database_url, redis_url, METRICS_SURGE_MIN_EVENTS="101"))
    assert set(surging(busier)) == {("activity", 2), ("activity", 3), ("activity", 6), ("geo_blocked", 7)}
    _, lower = scrape(settings_for(database_url, redis_url, METRICS_SURGE_MIN_EVENTS="30"))
    assert surging(lower)[("activity", 4)] == (30.5, 30.5, 1.0)
    status, off = scrape(settings_for(database_url, redis_url, METRICS_SURGE_COMMUNITIES="0"))
    assert status == 200 and not any(name.startswith("analytics_community_surge") for name, _ in off)


def test_the_alert_reads_exactly_the_exported_names(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings], moment: datetime
) -> None:
    """test_prometheus.py cannot see these series on its stack (no community reaches the volume floor there)."""
    surge_world(database_url, moment)
    _, samples = scrape(settings_for(database_url, redis_url))
    groups = yaml.safe_load((ROOT / "prometheus" / "rules" / "alerts.yml").read_text())["groups"]
    [rule] = [r for g in groups for r in g["rules"] if r.get("alert") == "AnalyticsCommunitySurge"]
    text = rule["expr"] + rule["annotations"]["description"]
    assert {name for name in SURGE_NAMES if name in text} == set(SURGE_NAMES)
    exported = {name for name, _ in samples}
    assert set(SURGE_NAMES) <= exported


def test_with_postgres_down_the_figures_are_absent_and_come_back(
    redis_url: str, scratch_dir: Path, settings_for: Callable[..., Settings], moment: datetime
) -> None:
    server = PostgresServer(scratch_dir / "surge-pg", options={"fsync": "off"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            migrate(conn, detect_engine(conn))
        world = World(moment)
        world.activity_now(5, 60)
        store(server.url(), world.activities)
        with TestClient(create_app(settings_for(server.url(), redis_url))) as client:
            server.stop()
            down = client.get("/metrics")
            assert down.status_code == 200
            samples = parse(down.text)
            assert value(samples, "analytics_db_up") == 0
            assert not any(name.startswith("analytics_community_surge") for name, _ in samples)  # absent, not 0
            server.start()
            up = parse(client.get("/metrics").text)  # a failed read is not cached: asked again
            assert surging(up) == {("activity", 5): (60.0, 60.0, 1.0)}
            server.stop()
            cached = parse(client.get("/metrics").text)  # read less than a minute ago: served again
            assert value(cached, "analytics_db_up") == 0
            assert surging(cached) == {("activity", 5): (60.0, 60.0, 1.0)}
    finally:
        server.stop()

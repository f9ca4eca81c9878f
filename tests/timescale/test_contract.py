"""The timescaledb engine against a real TimescaleDB: migrations, continuous aggregates, policies, and the same
report numbers as the postgres engine on the same fixture (a differential test), which are the hand-computed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from service.core.db import detect_engine
from service.core.settings import Settings
from service.storage.migrations import migrate, plan
from service.storage.rollups import refresh
from service.tasks.worker import execute
from tests.community.test_report import (
    C,
    P,
    check_patterns,
    expected_report,
    pattern_events,
    report_events,
    store_presence,
)
from tests.geo.test_geo_reports import C as GEO_C
from tests.geo.test_geo_reports import check_effectiveness, geo_records
from tests.support import refresh_rollups, staff_client, store

CONTINUOUS_AGGREGATES = [  # in dependency order: a hierarchical aggregate after the one it is built on
    "activity_hourly",
    "activity_daily",
    "community_members_daily",
    "geo_hourly",
    "geo_daily",
    "system_metrics_hourly",
]
ENDPOINTS = [
    f"/api/community-analytics/{C}/report/?days=7",
    f"/api/community-analytics/{C}/report/?days=30",
    f"/api/community-analytics/{P}/activity-patterns/?days=30",
    f"/api/geo-analytics/{GEO_C}/effectiveness/?days=30",
    f"/api/geo-analytics/{GEO_C}/locations/?days=30",
    f"/api/geo-analytics/{GEO_C}/trends/?days=7",
    f"/api/geo-analytics/{GEO_C}/trends/?days=7&interval=hour",
]


@pytest.fixture(scope="module")
def migrated(timescale_url: str) -> Iterator[str]:
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        assert detect_engine(conn) == "timescaledb"
        outcome = migrate(conn, "timescaledb")
    assert outcome.applied == [f.name for f in plan("timescaledb")]
    yield timescale_url


def test_every_migration_and_continuous_aggregate_applies_once(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        assert migrate(conn, "timescaledb").applied == []
        hypertables = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        caggs = dict(
            conn.execute(
                "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
            ).fetchall()
        )
    assert {"activity_events", "geo_access_events", "system_metrics"} <= hypertables
    assert caggs == {name: False for name in CONTINUOUS_AGGREGATES}  # all real-time


def test_refresh_policies_are_registered(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        jobs = conn.execute(
            # Recent versions name the aggregate in `hypertable_name`, older ones its materialization table.
            "SELECT coalesce(c.view_name, j.hypertable_name), j.config->>'start_offset', j.config->>'end_offset' "
            "FROM timescaledb_information.jobs j "
            "LEFT JOIN timescaledb_information.continuous_aggregates c "
            "  ON c.materialization_hypertable_name = j.hypertable_name "
            "WHERE j.proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchall()
    by_view = {view: (start, end) for view, start, end in jobs}
    assert set(by_view) == set(CONTINUOUS_AGGREGATES)
    assert all(start == "35 days" for start, _ in by_view.values())  # covers every late event the API accepts
    assert by_view["activity_hourly"][1] == "01:00:00"


def seed(url: str, use_copy: bool) -> None:
    store(url, [*report_events(), *pattern_events()], geo_records(), use_copy=use_copy, batch=100)
    store_presence(url)


def refresh_timescale(url: str) -> None:
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        for view in CONTINUOUS_AGGREGATES:
            conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
        refresh(conn, "timescaledb")  # sessions


def answers(settings: Settings) -> dict[str, Any]:
    with staff_client(settings) as client:
        responses = {path: client.get(path) for path in ENDPOINTS}
    assert all(r.status_code == 200 for r in responses.values()), {p: r.text for p, r in responses.items()}
    return {path: r.json() for path, r in responses.items()}


def test_report_numbers_equal_the_postgres_engine_and_the_hand_computed_ones(
    migrated: str, database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    seed(database_url, use_copy=True)
    refresh_rollups(database_url)
    on_postgres = answers(settings_for(database_url, redis_url))

    seed(migrated, use_copy=False)  # no COPY FROM STDIN on this build
    refresh_timescale(migrated)
    # One connection at a time, and one session for all of them: a pool of one, no prepared statements.
    on_timescale = answers(
        settings_for(
            migrated, redis_url, DATABASE_POOL_MIN="1", DATABASE_POOL_MAX="1", DATABASE_PREPARED_STATEMENTS="false"
        )
    )

    for path in ENDPOINTS:
        assert on_timescale[path] == on_postgres[path], path
    assert on_timescale[ENDPOINTS[0]] == expected_report()
    check_patterns(on_timescale[ENDPOINTS[2]])
    check_effectiveness(on_timescale[ENDPOINTS[3]])


def test_retention_is_applied_through_policies(
    migrated: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(
        migrated, redis_url, RETENTION_RAW_DAYS="7", RETENTION_ROLLUP_DAYS="400", DATABASE_PREPARED_STATEMENTS="false"
    )
    outcome = execute(settings, "cleanup_old_analytics")
    assert outcome.status == "success", outcome.error
    assert outcome.details["activity_events"] == "set"
    assert execute(settings, "cleanup_old_analytics").details["activity_events"] == "kept"  # idempotent
    with psycopg.connect(migrated, autocommit=True, prepare_threshold=None) as conn:
        policies = dict(
            conn.execute(
                "SELECT hypertable_name, config->>'drop_after' FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_retention'"
            ).fetchall()
        )
    assert policies["activity_events"] == "36 days"  # raised: raw data outlives the refresh window
    assert policies["activity_daily"] == "400 days"
    assert set(policies) == {"activity_events", "geo_access_events", "system_metrics", *CONTINUOUS_AGGREGATES}

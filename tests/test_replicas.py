"""Reads on PostgreSQL read replicas, over HTTP through the real app, on a real primary and streaming replicas.

The module starts its own primary (the session's test server is shared and cloned per test; a replica copies
a whole server) and a replica of it made with `pg_basebackup -R`; the tests share its one database, so each
writes rows of its own (its own days, its own community). Which server answered is read from
`analytics_db_reads_total{target}`, and shown by the data: a replica whose replay is paused does not have the
rows written since.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.core.db import detect_engine
from service.core.settings import Settings
from service.storage import replicas
from service.storage.migrations import migrate
from service.storage.replicas import replica_name
from service.tools.localstack import PostgresReplica, PostgresServer, free_port, postgres_bindir
from tests.support import act, at, refresh_rollups, rows, staff_client, store

pytestmark = pytest.mark.slow

SettingsFor = Callable[..., Settings]
T = TypeVar("T")
SECRET = "not-for-show"  # a password in the replica URL (trust authentication ignores it): never shown
C = 41  # the community of the report test


def wait_for(check: Callable[[], T], what: str, seconds: float = 20.0) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {seconds:.0f}s (last: {result!r})")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def primary(scratch_dir: Path) -> Iterator[PostgresServer]:
    """A primary of this module's own, migrated; initdb's defaults let replicas copy and stream from it."""
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries are needed to start a primary and its replicas")
    server = PostgresServer(
        scratch_dir / "replicas" / "primary",
        options={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            migrate(conn, detect_engine(conn))
        yield server
    finally:
        server.stop()


def start_replica(primary: PostgresServer, directory: Path) -> PostgresReplica:
    replica = PostgresReplica(primary, directory / uuid.uuid4().hex[:8])
    replica.start()
    return replica


@pytest.fixture(scope="module")
def replica(primary: PostgresServer, scratch_dir: Path) -> Iterator[PostgresReplica]:
    """A streaming replica of `primary` for the whole module."""
    server = start_replica(primary, scratch_dir / "replicas")
    try:
        yield server
    finally:
        server.stop()


def replica_url(server: PostgresReplica) -> str:
    """The replica's URL, with a password in it that must never be shown."""
    return server.url().replace(f"{server.superuser}@", f"{server.superuser}:{SECRET}@")


def caught_up(primary: PostgresServer, replica: PostgresReplica) -> None:
    """Wait until the replica has replayed everything the primary has done so far (the insert position: with
    synchronous_commit off, a commit may not be written out yet)."""
    position = rows(primary.url(), "SELECT pg_current_wal_insert_lsn()::text")[0][0]
    wait_for(lambda: rows(replica.url(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", position)[0][0], "the replay")


def replay(replica: PostgresReplica, action: str) -> None:
    """Pause or resume the replica's replay of the WAL it receives."""
    query = "SELECT pg_wal_replay_pause()" if action == "pause" else "SELECT pg_wal_replay_resume()"
    with psycopg.connect(replica.url(), autocommit=True) as conn:
        conn.execute(query)


def replicas_of(client: TestClient[Any]) -> list[dict[str, Any]]:
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["replicas"]
    return result


def used(client: TestClient[Any]) -> bool:
    return all(r["used"] for r in replicas_of(client))


def not_used(client: TestClient[Any]) -> dict[str, Any] | None:
    found = [r for r in replicas_of(client) if not r["used"]]
    return found[0] if found else None


def samples(client: TestClient[Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert SECRET not in response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def reads(client: TestClient[Any]) -> dict[str, float]:
    """analytics_db_reads_total by target (the registry is the process's: compare before and after)."""
    found = samples(client)
    return {t: found.get(("analytics_db_reads_total", frozenset({("target", t)})), 0.0) for t in ("primary", "replica")}


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {target: after[target] - before[target] for target in before}


def add_day(client: TestClient[Any], day: date, active_users: int) -> None:
    response = client.post("/api/daily/", json={"date": day.isoformat(), "active_users": active_users})
    assert response.status_code == 201, response.text


def days(client: TestClient[Any], start: date, end: date) -> dict[str, int]:
    """The daily rows from `start` to `end`: day -> active users."""
    response = client.get(f"/api/daily/?date_from={start}&date_to={end}&ordering=date")
    assert response.status_code == 200, response.text
    return {row["date"]: row["active_users"] for row in response.json()["results"]}


def test_a_report_read_from_the_replica_equals_the_primarys(
    primary: PostgresServer, replica: PostgresReplica, redis_url: str, settings_for: SettingsFor
) -> None:
    # Member 1 views twice (days -2 and -1), member 2 once (day -1): 3 views by 2 visitors.
    store(primary.url(), [act(at(2, 10), C, 1), act(at(1, 9), C, 1), act(at(1, 11), C, 2)])
    refresh_rollups(primary.url())
    caught_up(primary, replica)
    path = f"/api/community-analytics/{C}/report/?days=7"
    with staff_client(settings_for(primary.url(), redis_url)) as on_primary:
        expected = on_primary.get(path).json()
    settings = settings_for(primary.url(), redis_url, DATABASE_REPLICA_URLS=replica_url(replica))
    with staff_client(settings) as client:
        wait_for(lambda: used(client), "the replica in use")
        before = reads(client)
        response = client.get(path)
        after = reads(client)
        assert response.status_code == 200
        assert response.json() == expected
        assert (expected["metrics"]["total_views"], expected["metrics"]["unique_visitors"]) == (3, 2)
        assert moved(before, after) == {"primary": 0, "replica": 1}
        # Caught up, so 0 unless the idle primary's background WAL (a checkpoint) was on its way when measured.
        name = f"127.0.0.1:{replica.port}/analytics"
        [status] = replicas_of(client)
        assert (status["name"], status["used"]) == (name, True) and 0 <= status["lag_seconds"] < 30
        lag = samples(client)[("analytics_db_replica_lag_seconds", frozenset({("replica", name)}))]
        assert 0 <= lag < 30


def test_reads_within_the_allowed_lag_come_from_the_replica(
    primary: PostgresServer, replica: PostgresReplica, redis_url: str, settings_for: SettingsFor
) -> None:
    settings = settings_for(primary.url(), redis_url, DATABASE_REPLICA_URLS=replica_url(replica))
    first, second = date(2021, 3, 1), date(2021, 3, 2)
    with staff_client(settings) as client:
        add_day(client, first, 11)
        caught_up(primary, replica)
        wait_for(lambda: used(client), "the replica in use")
        replay(replica, "pause")
        try:
            add_day(client, second, 12)  # a write: on the primary
            before = reads(client)
            # Behind, but less than DATABASE_REPLICA_MAX_LAG (30 s): the read is the replica's, without the new day.
            assert days(client, first, second) == {"2021-03-01": 11}
            assert moved(before, reads(client)) == {"primary": 0, "replica": 1}
        finally:
            replay(replica, "resume")
        caught_up(primary, replica)
        assert days(client, first, second) == {"2021-03-01": 11, "2021-03-02": 12}


def test_a_replica_further_behind_than_the_limit_gets_no_reads(
    primary: PostgresServer, replica: PostgresReplica, redis_url: str, settings_for: SettingsFor
) -> None:
    settings = settings_for(
        primary.url(), redis_url, DATABASE_REPLICA_URLS=replica_url(replica), DATABASE_REPLICA_MAX_LAG="1"
    )
    first, second = date(2021, 4, 1), date(2021, 4, 2)
    with staff_client(settings) as client:
        add_day(client, first, 21)
        caught_up(primary, replica)
        wait_for(lambda: used(client), "the replica in use")
        replay(replica, "pause")
        try:
            add_day(client, second, 22)
            behind = wait_for(lambda: not_used(client), "the monitor to find the replica behind")
            assert behind["lag_seconds"] > 1
            assert "behind the primary" in behind["error"]
            before = reads(client)
            assert days(client, first, second) == {"2021-04-01": 21, "2021-04-02": 22}  # written after the pause
            assert moved(before, reads(client)) == {"primary": 1, "replica": 0}
            lag = samples(client)[("analytics_db_replica_lag_seconds", frozenset({("replica", behind["name"])}))]
            assert lag > 1
        finally:
            replay(replica, "resume")
        wait_for(lambda: used(client), "the replica in use again once it caught up")
        before = reads(client)
        assert days(client, first, second) == {"2021-04-01": 21, "2021-04-02": 22}
        assert moved(before, reads(client)) == {"primary": 0, "replica": 1}


def test_a_replica_stopped_mid_run_sends_its_reads_to_the_primary(
    primary: PostgresServer,
    scratch_dir: Path,
    redis_url: str,
    settings_for: SettingsFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The monitor measures once at start-up, then not again during the test: only the failing read itself can
    # tell the router that the replica is gone.
    monkeypatch.setattr(replicas, "MONITOR_SECONDS", 3600.0)
    doomed = start_replica(primary, scratch_dir / "replicas")
    try:
        settings = settings_for(primary.url(), redis_url, DATABASE_REPLICA_URLS=replica_url(doomed))
        day = date(2021, 5, 1)
        with staff_client(settings) as client:
            add_day(client, day, 31)
            caught_up(primary, doomed)
            wait_for(lambda: used(client), "the replica in use")
            doomed.stop()
            before = reads(client)
            answers = [client.get(f"/api/daily/?date_from={day}&date_to={day}") for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert [a.json()["results"][0]["active_users"] for a in answers] == [31, 31, 31]
            # The first read failed on the replica and was run again on the primary; the next two went there.
            assert moved(before, reads(client)) == {"primary": 3, "replica": 1}
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["failing"] == []
            [status] = ready.json()["replicas"]
            assert status["name"] == replica_name(doomed.url()) and status["used"] is False
            assert status["error"].startswith("a read failed")
            assert SECRET not in ready.text
    finally:
        doomed.stop()


def test_a_replica_down_at_start_up_does_not_stop_the_api(
    primary: PostgresServer, redis_url: str, settings_for: SettingsFor
) -> None:
    nowhere = f"postgresql://analytics:{SECRET}@127.0.0.1:{free_port()}/analytics"
    day = date(2021, 6, 1)
    with staff_client(settings_for(primary.url(), redis_url, DATABASE_REPLICA_URLS=nowhere)) as client:
        add_day(client, day, 41)
        status = wait_for(
            lambda: (s := not_used(client)) and s["error"].startswith("unreachable") and s,
            "the monitor to find the replica unreachable",
        )
        assert status["lag_seconds"] is None
        before = reads(client)
        assert days(client, day, day) == {"2021-06-01": 41}
        assert moved(before, reads(client)) == {"primary": 1, "replica": 0}
        assert not any(name == "analytics_db_replica_lag_seconds" for name, _ in samples(client))


def test_without_replicas_nothing_changes(primary: PostgresServer, redis_url: str, settings_for: SettingsFor) -> None:
    day = date(2021, 7, 1)
    with staff_client(settings_for(primary.url(), redis_url)) as client:
        assert client.app.state.resources.reads.replicas == []
        add_day(client, day, 51)
        before = reads(client)
        assert days(client, day, day) == {"2021-07-01": 51}
        assert moved(before, reads(client)) == {"primary": 1, "replica": 0}
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert "replicas" not in ready.json()
        assert not any(name == "analytics_db_replica_lag_seconds" for name, _ in samples(client))

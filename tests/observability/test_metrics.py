"""`/metrics` and the workers' metrics servers, against real PostgreSQL and Redis.

Counters live in the process-wide registry, which other tests move too: in-process tests compare a scrape
before and after (deltas); the subprocess tests start fresh processes, whose values are absolute.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from litestar.testing import TestClient
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.core.db import sync_pool
from service.core.settings import Settings
from service.ingest.worker import IngestWorker
from service.live.records import encode
from service.observability.exposition import MULTIPROC_ENV, mark_dead_processes, multiprocess_dir
from tests.processes import free_port, running, service_env, until
from tests.support import STREAM, act, bearer, drain, rows, staff_client

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REPORT_ROUTE = "/api/community-analytics/{community_id}/report/"


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample named `name`."""
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape(client: TestClient[Any]) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@pytest.fixture
def worker(settings: Settings) -> Iterator[IngestWorker]:
    """An ingest worker on the test's database and Redis (its consumer group created)."""
    assert settings.database_url and settings.redis_url
    pool = sync_pool(settings, settings.database_url)
    pool.open()
    client = redis.Redis.from_url(settings.redis_url)
    ingest = IngestWorker(settings, pool, client, "metrics-test", threading.Event())
    ingest.ensure_group()
    yield ingest
    pool.close()
    client.close()


def test_requests_are_counted_by_route_template_and_status(client: TestClient[Any]) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/health").status_code == 200
    for community in (12, 13):
        assert client.get(f"/api/community-analytics/{community}/report/?days=7").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    assert (
        client.get("/api/community-analytics/12/report/", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    after = scrape(client)

    requests = "analytics_http_requests_total"
    assert delta(before, after, requests, method="GET", route="/health", status="200") == 3
    assert delta(before, after, requests, method="GET", route=REPORT_ROUTE, status="200") == 2
    assert delta(before, after, requests, method="GET", route=REPORT_ROUTE, status="401") == 1
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert delta(before, after, requests, method="GET", route="/metrics", status="200") == 1  # the first scrape
    timing = "analytics_http_request_duration_seconds_count"
    assert delta(before, after, timing, method="GET", route=REPORT_ROUTE) == 3
    assert delta(before, after, timing, method="GET", route="/health") == 3
    # Templates only: no raw path (with its ids) ever becomes a label value.
    assert not [labels for labels in series(after, requests) if "/12/" in labels["route"] or "/13/" in labels["route"]]
    assert value(after, "analytics_process_start_time_seconds", pid=str(os.getpid())) == pytest.approx(
        psutil.Process().create_time()
    )


def test_tracking_counts_accepted_rejected_and_geo_decisions_then_ingest_counts_rows(
    client: TestClient[Any], settings: Settings, worker: IngestWorker
) -> None:
    before = scrape(client)
    track, batch = "/api/community-analytics/track/", "/api/community-analytics/track/batch/"
    assert client.post(track, json={"community_id": 1, "user_id": 7, "activity_type": "view"}).status_code == 202
    answer = client.post(
        batch,
        json=[
            {"community_id": 1, "user_id": 8, "activity_type": "join"},
            {"community_id": 1, "user_id": 8, "activity_type": "post"},
            {"community_id": 2, "activity_type": "view"},
            {"community_id": 1, "activity_type": "bogus"},
            {"community_id": "x", "activity_type": "view"},
        ],
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    bad_batch = [{"community_id": 1, "activity_type": "bogus"}, {"community_id": 1}]
    assert client.post(batch, json=bad_batch).status_code == 400
    assert client.post(track, json={"community_id": "twelve", "activity_type": "view"}).status_code == 400
    platform = [{"activity_type": "register", "user_id": 9}, {"activity_type": "page_view", "user_id": 9}]
    assert client.post("/api/events/", json=platform).status_code == 202
    # A user tracking for someone else: the whole request is refused.
    as_user = bearer(settings, "42")
    refused = client.post(track, json={"community_id": 1, "user_id": 7, "activity_type": "view"}, headers=as_user)
    assert refused.status_code == 403
    geo = {"community_id": 5, "user_id": 7, "access_result": "blocked", "restriction_scope": "country"}
    geo_one = {**geo, "location": {"country": "Germany", "country_code": "DE"}}
    assert client.post("/api/geo-analytics/track/", json=geo_one).status_code == 202
    geo_batch = [
        {"community_id": 5, "user_id": 8, "access_result": "allowed", "location": {"country": "FR"}},
        {
            "community_id": 5,
            "access_result": "allowed",
            "restriction_scope": "city",
            "location": {"country": "United States", "country_code": "us", "city": "Boston"},
        },
        {"community_id": 5, "access_result": "maybe"},
    ]
    answer = client.post("/api/geo-analytics/track/batch/", json=geo_batch)
    assert answer.status_code == 202 and answer.json()["accepted"] == 2
    tracked = scrape(client)

    accepted, rejected = "analytics_events_accepted_total", "analytics_events_rejected_total"
    assert delta(before, tracked, accepted, kind="activity") == 1 + 3 + 2
    assert delta(before, tracked, accepted, kind="geo") == 1 + 2
    assert delta(before, tracked, rejected, kind="activity", reason="validation") == 2 + 2 + 1
    assert delta(before, tracked, rejected, kind="activity", reason="forbidden") == 1
    assert delta(before, tracked, rejected, kind="geo", reason="validation") == 1
    decisions = "analytics_geo_decisions_total"
    assert delta(before, tracked, decisions, result="blocked", scope="country", country_code="DE") == 1
    assert delta(before, tracked, decisions, result="allowed", scope="none", country_code="FR") == 1
    assert delta(before, tracked, decisions, result="allowed", scope="city", country_code="US") == 1
    # Each accepted request was its own flush, so its own stream entry; none is consumed yet.
    assert value(tracked, "analytics_stream_backlog") == 5
    assert 0 <= value(tracked, "analytics_ingest_lag_seconds") < 60

    assert drain(worker) == 9
    drained = scrape(client)
    ingested = "analytics_events_ingested_total"
    assert delta(tracked, drained, ingested, kind="activity") == 6
    assert delta(tracked, drained, ingested, kind="geo") == 3
    assert value(drained, "analytics_stream_backlog") == 0
    assert value(drained, "analytics_ingest_lag_seconds") == 0
    assert value(drained, "analytics_redis_up") == 1 and value(drained, "analytics_db_up") == 1


def test_redelivered_events_are_not_counted_as_ingested_twice(
    client: TestClient[Any], settings: Settings, worker: IngestWorker
) -> None:
    record = act(datetime.now(UTC), 3, 30)
    stream = redis.Redis.from_url(settings.redis_url or "")
    try:
        before = scrape(client)
        stream.xadd(STREAM, {"0": encode(record)})
        drain(worker)
        once = scrape(client)
        stream.xadd(STREAM, {"0": encode(record)})  # the same event delivered again (a retry after a crash)
        drain(worker)
        twice = scrape(client)
    finally:
        stream.close()
    assert delta(before, once, "analytics_events_ingested_total", kind="activity") == 1
    assert delta(once, twice, "analytics_events_ingested_total", kind="activity") == 0
    assert rows(
        settings.database_url or "", "SELECT count(*) FROM activity_events WHERE event_id = %s", record.event_id
    ) == [(1,)]


def test_a_full_backlog_counts_the_refused_events(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(database_url, redis_url, INGEST_MAX_BACKLOG="1")
    one = {"community_id": 1, "user_id": 1, "activity_type": "view"}
    with staff_client(settings) as client:
        before = scrape(client)
        for _ in range(2):  # the check is "more than 1 waiting", so the second entry still goes in
            assert client.post("/api/community-analytics/track/", json=one).status_code == 202
        refused = client.post("/api/community-analytics/track/batch/", json=[one] * 4)
        assert refused.status_code == 503
        after = scrape(client)
    assert delta(before, after, "analytics_events_rejected_total", kind="activity", reason="backlog") == 4
    assert delta(before, after, "analytics_events_accepted_total", kind="activity") == 2
    assert value(after, "analytics_stream_backlog") == 2


def test_online_members_total_and_the_busiest_communities_only(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(database_url, redis_url, METRICS_TOP_COMMUNITIES="2")
    members = {1: [1, 2, 3], 2: [3, 4], 3: [5]}  # member 3 is in two communities: counted once in the total
    events = [{"community_id": c, "user_id": u, "activity_type": "view"} for c, users in members.items() for u in users]
    events.append({"community_id": 3, "activity_type": "view"})  # anonymous: nobody to count
    with staff_client(settings) as client:
        assert client.post("/api/community-analytics/track/batch/", json=events).status_code == 202
        samples = scrape(client)
    assert value(samples, "analytics_online_members") == 5
    per_community = {
        labels["community_id"]: value(samples, "analytics_community_online_members", **labels)
        for labels in series(samples, "analytics_community_online_members")
    }
    assert per_community == {"1": 3, "2": 2}  # community 3 is past METRICS_TOP_COMMUNITIES


def test_ingest_lag_is_the_age_of_the_oldest_unacknowledged_entry(client: TestClient[Any], settings: Settings) -> None:
    stream = redis.Redis.from_url(settings.redis_url or "")
    try:
        now_ms = int(stream.time()[0]) * 1000
        stream.xadd(STREAM, {"0": b"x"}, id=f"{now_ms - 90_000}-0")  # added 90 s ago (by Redis's clock)
        stream.xadd(STREAM, {"0": b"x"}, id=f"{now_ms - 30_000}-0")
        no_group = scrape(client)  # the ingest worker never ran: no consumer group yet
        stream.xgroup_create(STREAM, "ingest", id="0")
        delivered: Any = stream.xreadgroup("ingest", "someone", {STREAM: ">"}, count=1)
        pending = scrape(client)  # the oldest delivered, not acknowledged; the other not delivered
        stream.xack(STREAM, "ingest", delivered[0][1][0][0])
        one_left = scrape(client)
        stream.xreadgroup("ingest", "someone", {STREAM: ">"}, count=1)
        stream.xack(STREAM, "ingest", f"{now_ms - 30_000}-0")
        none_left = scrape(client)
    finally:
        stream.close()
    for samples in (no_group, pending):
        assert value(samples, "analytics_stream_backlog") == 2
        assert 90 <= value(samples, "analytics_ingest_lag_seconds") < 100
    assert value(one_left, "analytics_stream_backlog") == 1
    assert 30 <= value(one_left, "analytics_ingest_lag_seconds") < 40
    assert value(none_left, "analytics_stream_backlog") == 0
    assert value(none_left, "analytics_ingest_lag_seconds") == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_down_reads_as_zero_and_its_figures_are_left_out(
    database_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(database_url, f"redis://127.0.0.1:{_closed_port()}/0")
    with TestClient(create_app(settings)) as client:
        samples = scrape(client)
    assert samples[("analytics_redis_up", frozenset())] == 0
    assert value(samples, "analytics_db_up") == 1
    assert not series(samples, "analytics_stream_backlog") and not series(samples, "analytics_online_members")
    pool = {labels["state"] for labels in series(samples, "analytics_db_pool_connections")}
    assert pool == {"size", "available", "waiting"}
    assert value(samples, "analytics_db_pool_connections", state="size") >= 1


def test_metrics_token_is_required_when_set(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    token = "a-metrics-token-for-the-tests"
    settings = settings_for(database_url, redis_url, METRICS_TOKEN=token)
    with TestClient(create_app(settings)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {token}x"})
        staff_jwt = client.get("/metrics", headers=bearer(settings, "1", staff=True))  # an API token is not it
        right = client.get("/metrics", headers={"Authorization": f"bearer {token}"})
    for answer in (missing, wrong, staff_jwt):
        assert answer.status_code == 401
        assert answer.json()["status_code"] == 401 and "METRICS_TOKEN" in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert right.status_code == 200 and "analytics_db_up 1.0" in right.text


def test_metrics_stay_out_of_the_openapi_schema(client: TestClient[Any]) -> None:
    paths = client.get("/docs/openapi.json").json()["paths"]
    assert "/metrics" not in paths and "/health" in paths


# --- multiprocess mode ---


def test_multiprocess_dir_empties_a_given_directory_or_makes_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "gauge_liveall_123.db").write_bytes(b"stale")
    (given / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with multiprocess_dir(workers=1) as path:
        assert path == given
        assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]
    monkeypatch.delenv(MULTIPROC_ENV)
    with multiprocess_dir(workers=1) as path:
        assert path is None and MULTIPROC_ENV not in os.environ
    with multiprocess_dir(workers=3) as path:
        assert path is not None and path.is_dir() and os.environ[MULTIPROC_ENV] == str(path)
    assert not path.exists() and MULTIPROC_ENV not in os.environ


def test_processes_that_no_longer_exist_are_marked_dead(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    for pid in (finished.pid, os.getpid()):
        live = MmapedDict(str(tmp_path / f"gauge_liveall_{pid}.db"))
        live.write_value(json.dumps(["m", "m", {"pid": str(pid)}, "help"]), 1.0, 0.0)
        live.close()
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    assert mark_dead_processes(tmp_path) == [finished.pid]
    left = sorted(p.name for p in tmp_path.iterdir())
    # Only the dead process's live gauge goes; counters stay in the sums.
    assert left == sorted(
        [f"counter_{finished.pid}.db", f"counter_{os.getpid()}.db", f"gauge_liveall_{os.getpid()}.db"]
    )


def _scrape_url(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)  # a new connection each time
    response.raise_for_status()
    return parse(response.text)


def _served_by(path: Path, route: str) -> dict[int, float]:
    """Requests to `route` each worker process counted, read from its own metrics file."""
    counts: dict[int, float] = {}
    for file in path.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(file)]):
            for sample in metric.samples:
                if sample.name == "analytics_http_requests_total" and sample.labels["route"] == route:
                    counts[pid] = counts.get(pid, 0) + sample.value
    return counts


@pytest.mark.slow
def test_two_api_processes_export_one_consistent_view(database_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(database_url, redis_url, ANALYTICS_PORT=str(port), ANALYTICS_WORKERS="2")
    log = tmp_path / "serve.log"
    with running(["serve"], env, log) as server:

        def pids() -> set[str]:
            return {labels["pid"] for labels in series(_scrape_url(f"{base}/metrics"), START)}

        until(lambda: len(pids()) == 2, server, log)
        workers = [int(pid) for pid in pids()]
        directory = Path(psutil.Process(workers[0]).environ()[MULTIPROC_ENV])
        assert directory.is_dir() and psutil.Process(workers[1]).environ()[MULTIPROC_ENV] == str(directory)

        # New connections until both processes have answered some.
        sent = 0
        while len([c for c in _served_by(directory, "/health").values() if c]) < 2 and sent < 500:
            for _ in range(10):
                assert httpx.get(f"{base}/health", timeout=10).status_code == 200
            sent += 10
        served = _served_by(directory, "/health")
        assert sorted(served) == sorted(workers) and all(served.values()), served

        samples = _scrape_url(f"{base}/metrics")
        assert {labels["pid"] for labels in series(samples, START)} == {str(pid) for pid in workers}
        assert value(samples, REQUESTS, method="GET", route="/health", status="200") == sent
        assert value(samples, "analytics_http_request_duration_seconds_count", method="GET", route="/health") == sent
        # Read once per scrape, whichever process answered: one sample each, no pid label.
        for name in ("analytics_db_up", "analytics_redis_up", "analytics_stream_backlog", "analytics_online_members"):
            assert series(samples, name) == [{}], name
        assert value(samples, "analytics_db_up") == 1 and value(samples, "analytics_redis_up") == 1
        assert len(series(samples, "analytics_db_pool_connections")) == 3

        # A worker killed outright: uvicorn starts another; the dead one's start time goes, its counts stay.
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        until(lambda: len(found := pids()) == 2 and str(victim) not in found, server, log)
        samples = _scrape_url(f"{base}/metrics")
        assert value(samples, REQUESTS, method="GET", route="/health", status="200") == sent

        children = psutil.Process(server.pid).children(recursive=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log.read_text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"orphans left behind: {alive}"
        assert not directory.exists()  # the temporary multiprocess directory is removed with the server


START = "analytics_process_start_time_seconds"
REQUESTS = "analytics_http_requests_total"


# --- the workers' own metrics servers ---


@pytest.mark.slow
def test_the_ingest_worker_serves_its_counts_behind_the_token(
    database_url: str, redis_url: str, settings: Settings, tmp_path: Path
) -> None:
    port, token = free_port(), "a-metrics-token-for-the-tests"
    env = service_env(database_url, redis_url, INGEST_METRICS_PORT=str(port), METRICS_TOKEN=token, INGEST_CONSUMER="m1")
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "ingest.log"
    with running(["ingest"], env, log) as ingest:
        until(lambda: _scrape_url(url, token), ingest, log)
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        events = [{"community_id": 1, "user_id": u, "activity_type": "view"} for u in range(1, 5)]
        with staff_client(settings) as client:
            assert client.post("/api/community-analytics/track/batch/", json=events).status_code == 202
            geo = {"community_id": 1, "access_result": "allowed", "location": {"country": "DE"}}
            assert client.post("/api/geo-analytics/track/", json=geo).status_code == 202

        def ingested() -> Samples | None:
            samples = _scrape_url(url, token)
            done = value(samples, "analytics_events_ingested_total", kind="geo") == 1
            return samples if done else None

        samples = until(ingested, ingest, log, seconds=30)
        assert value(samples, "analytics_events_ingested_total", kind="activity") == 4
        assert series(samples, START) == [{"pid": str(ingest.pid)}]
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(timeout=30) == 0, log.read_text()


@pytest.mark.slow
def test_task_runs_reach_prometheus_from_the_task_worker(
    database_url: str, redis_url: str, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(database_url, redis_url, WORKER_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "worker.log"
    with running(["worker", "--no-periodic", "--threads", "1"], env, log) as worker_process:
        until(lambda: _scrape_url(url), worker_process, log)
        with staff_client(settings) as client:
            assert client.post("/api/tasks/cleanup_redis_analytics/run/").status_code == 202

        def counted() -> Samples | None:
            samples = _scrape_url(url)
            runs = value(samples, "analytics_task_runs_total", task="cleanup_redis_analytics", status="success")
            return samples if runs == 1 else None

        samples = until(counted, worker_process, log, seconds=30)
        assert value(samples, "analytics_task_duration_seconds_count", task="cleanup_redis_analytics") == 1
        last = value(samples, "analytics_task_last_success_timestamp_seconds", task="cleanup_redis_analytics")
        assert time.time() - 60 < last <= time.time()
        worker_process.send_signal(signal.SIGINT)
        assert worker_process.wait(timeout=30) == 0, log.read_text()

"""The service on a real 3-master Redis Cluster: tracking, realtime, /metrics, the tasks, the ingest worker's
exactly-once under SIGKILL, and a master going down (503 for its communities only)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from redis.cluster import RedisCluster

from service.app import create_app
from service.core.settings import Settings
from service.ingest.worker import SHARD_REST
from service.live.client import async_client, layout, prepare, sync_client
from service.live.counters import day_counts
from service.live.keys import GROUP, Shard
from service.live.records import ActivityRecord
from service.live.stream import stream_backlog
from service.live.writer import LiveWriter
from service.tasks.worker import execute
from service.tools.localstack import RedisClusterNodes
from tests.ingest.conftest import MakeWorker
from tests.ingest.test_faults import wait_for
from tests.ingest.test_tracking import test_batch_reports_each_item_and_stores_the_good_ones as test_batch_on_cluster
from tests.ingest.test_tracking import test_platform_events as test_platform_events_on_cluster
from tests.ingest.test_worker import activity, count
from tests.processes import service_env
from tests.support import bearer, drain, rows, staff_client

__all__ = ["test_batch_on_cluster", "test_platform_events_on_cluster"]  # the single-Redis tests, run here too

ROOT = Path(__file__).resolve().parents[2]
TRACK = "/api/community-analytics/track/"
Client = TestClient[Any]


def owner(client: RedisCluster, shard: Shard) -> str:
    """The master (`host:port`) serving the shard's hash slot."""
    return str(client.get_node_from_key(shard.stream).name)


def test_shards_spread_evenly_over_the_masters(settings: Settings, redis_cluster: RedisClusterNodes) -> None:
    client = sync_client(settings)
    assert isinstance(client, RedisCluster)
    try:
        shards = layout(settings)
        assert shards.count == 12
        masters = [owner(client, shard) for shard in shards.all]
        assert sorted(masters.count(node.url.split("//")[1].removesuffix("/0")) for node in redis_cluster.nodes) == [
            4,
            4,
            4,
        ]
        shard = shards.of(7)
        keys = [shard.stream, shard.presence_key(7), shard.peak_key("2026-01-01"), shard.minute_key(7, 1)]
        keys += [shard.counts_key("2026-01-01", 7), shard.online, shard.dead_letters]
        assert len({client.keyslot(key) for key in keys}) == 1  # all a tracking call touches: one slot
    finally:
        client.close()


def test_tracking_and_realtime_across_the_masters(client: Client, settings: Settings, make_worker: MakeWorker) -> None:
    communities = list(range(1, 13))  # one per shard: every master takes part
    event_ids = []
    for community in communities:
        for user in range(community % 3 + 1):
            body = {"community_id": community, "user_id": 100 + user, "activity_type": "view"}
            response = client.post(TRACK, json=body)
            assert response.status_code == 202, response.text
            event_ids.append(response.json()["event_id"])
    geo = {"community_id": 7, "user_id": 100, "access_result": "blocked", "restriction_scope": "country",
           "location": {"country": "DE"}}  # fmt: skip
    assert client.post("/api/geo-analytics/track/", json=geo).status_code == 202
    assert (
        client.post(
            "/api/geo-analytics/track/", json={**geo, "community_id": 8, "access_result": "allowed"}
        ).status_code
        == 202
    )
    retried = {"community_id": 5, "user_id": 100, "activity_type": "post", "event_id": str(uuid.uuid4())}
    assert client.post(TRACK, json=retried).status_code == 202
    assert client.post(TRACK, json=retried).status_code == 202  # a retry: recognised by its shard

    for community in communities:
        figures = client.get(f"/api/community-analytics/{community}/realtime/").json()
        expected_online = community % 3 + 1
        assert (figures["online_members"], figures["peak_members_today"]) == (expected_online, expected_online)

    async def platform_counts() -> dict[str, int]:
        live = async_client(settings)
        try:
            return await day_counts(live, layout(settings), datetime.now(UTC).strftime("%Y-%m-%d"))
        finally:
            await live.aclose()

    total = sum(community % 3 + 1 for community in communities)
    assert asyncio.run(platform_counts()) == {
        "view_count": total,
        "post_count": 1,
        "geo_blocked_count": 1,
        "geo_allowed_count": 1,
    }

    assert drain(make_worker()) == total + 1 + 2
    assert rows(settings.database_url or "", "SELECT count(*), count(DISTINCT event_id) FROM activity_events") == [
        (total + 1, total + 1)
    ]
    assert rows(settings.database_url or "", "SELECT community_id, access_result FROM geo_access_events "
                "ORDER BY 1") == [(7, "blocked"), (8, "allowed")]  # fmt: skip

    ready = client.get("/ready").json()
    assert sorted(slots for m in ready["redis_cluster"] for slots in m["slots"]) == [
        "0-5460",
        "10923-16383",
        "5461-10922",
    ]
    metrics = client.get("/metrics").text
    assert "analytics_online_members 3.0" in metrics  # users 100-102, counted once over all shards
    assert 'analytics_community_online_members{community_id="2"} 3.0' in metrics


def test_rate_limits_and_sessions_on_the_cluster(
    settings_for: Callable[..., Settings], database_url: str, redis_url: str, task_redis_url: str
) -> None:
    settings = settings_for(
        database_url, redis_url, REDIS_CLUSTER="true", TASK_REDIS_URL=task_redis_url, RATE_LIMIT_TRACK="3",
        SESSION_COOKIE_SECURE="false",
    )  # fmt: skip
    with TestClient(create_app(settings)) as api:
        service = bearer(settings, "backend", service=True)
        body = {"community_id": 1, "user_id": 1, "activity_type": "view"}
        assert [api.post(TRACK, json=body, headers=service).status_code for _ in range(4)] == [202, 202, 202, 429]
        login = api.post("/api/auth/session/", headers=bearer(settings, "7", moderated=[5]))
        assert login.status_code == 201, login.text
        me = api.get("/api/auth/me/")
        assert me.json()["authenticated_by"] == "session"
        assert api.get("/api/community-analytics/5/realtime/").status_code == 200  # by the session cookie


def test_tasks_read_and_clean_every_shard(client: Client, settings: Settings, make_worker: MakeWorker) -> None:
    for community in (1, 2, 3):
        assert client.post(TRACK, json={"community_id": community, "user_id": 9, "activity_type": "view"}).status_code
    drain(make_worker())
    sampled = execute(settings, "update_community_analytics")
    assert (sampled.status, sampled.details["communities_sampled"], sampled.details["online"]) == ("success", 3, 3)
    assert rows(settings.database_url or "", "SELECT community_id, peak_online FROM community_presence_daily "
                "ORDER BY 1") == [(1, 1), (2, 1), (3, 1)]  # fmt: skip
    cleaned = execute(settings, "cleanup_redis_analytics")
    assert cleaned.status == "success", cleaned.error
    live = sync_client(settings)
    try:
        assert stream_backlog(live, layout(settings)) == (0, 0)  # every shard's entries acknowledged
    finally:
        live.close()
    for task in ("update_system_metrics", "update_daily_analytics"):
        outcome = execute(settings, task)
        assert outcome.status == "success", outcome.error
    [(memory, reachable)] = rows(settings.database_url or "", "SELECT value, additional_data->>'reachable' "
                                 "FROM system_metrics WHERE metric_type = 'redis_memory_bytes'")  # fmt: skip
    assert memory > 0 and reachable == "true"  # every master's memory, summed


def enqueue(settings: Settings, records: list[ActivityRecord]) -> None:
    """Accept records the way the API does, on the cluster."""

    async def go() -> None:
        client = async_client(settings)
        try:
            await prepare(client)
            await LiveWriter(client, layout(settings), max_backlog=10**9).write(records)
        finally:
            await client.aclose()

    asyncio.run(go())


def pending(client: RedisCluster, settings: Settings) -> int:
    return sum(int(client.xpending(shard.stream, GROUP)["pending"]) for shard in layout(settings).all)


def test_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    total = 24_000
    for start in range(0, total, 4_000):
        enqueue(settings, [activity(n, community_id=n % 12 + 1) for n in range(start, start + 4_000)])
    assert settings.database_url and settings.redis_url and settings.task_redis_url
    env = service_env(
        settings.database_url, settings.redis_url, REDIS_CLUSTER="true", TASK_REDIS_URL=settings.task_redis_url,
        INGEST_CONSUMER="fault-worker", INGEST_METRICS_PORT="0", INGEST_BATCH_SIZE="2",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    client = sync_client(settings)
    assert isinstance(client, RedisCluster)

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "service", "ingest"], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip

    first = start()
    try:
        wait_for(lambda: count(settings.database_url or "")[0] > 0 and pending(client, settings) > 0, 60,
                 "a batch in flight", log)  # fmt: skip
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    stored_at_kill = count(settings.database_url)[0]
    assert 0 < stored_at_kill < total, log.read_text()
    second = start()
    try:
        wait_for(lambda: count(settings.database_url or "")[0] >= total and pending(client, settings) == 0, 120,
                 "the backlog to drain", log)  # fmt: skip
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
        client.close()
    assert count(settings.database_url) == (total, total)


def test_a_master_down_fails_its_communities_only(
    settings: Settings, redis_cluster: RedisClusterNodes, make_worker: MakeWorker
) -> None:
    live = sync_client(settings)
    assert isinstance(live, RedisCluster)
    shards = layout(settings)
    try:
        by_master = {owner(live, shards.of(c)): c for c in range(1, 13)}
    finally:
        live.close()
    down = redis_cluster.nodes[1]
    lost = by_master[f"127.0.0.1:{down.port}"]
    kept = [c for name, c in by_master.items() if name != f"127.0.0.1:{down.port}"]
    database = settings.database_url or ""
    down.stop()
    try:
        # An API process and an ingest worker that start while the master is down, as after a restart.
        with staff_client(settings) as api:
            for community in kept:
                body = {"community_id": community, "user_id": 2, "activity_type": "view"}
                assert api.post(TRACK, json=body).status_code == 202
                assert api.get(f"/api/community-analytics/{community}/realtime/").json()["online_members"] == 1
            lost_track = api.post(TRACK, json={"community_id": lost, "user_id": 2, "activity_type": "view"})
            assert lost_track.status_code == 503, lost_track.text
            assert "Redis" in lost_track.json()["detail"]
            assert api.get(f"/api/community-analytics/{lost}/realtime/").status_code == 503
            ready = api.get("/ready")
            assert ready.status_code == 200, ready.text  # the other masters serve their communities
            masters = {m["address"]: m["up"] for m in ready.json()["redis_cluster"]}
            assert masters == {f"127.0.0.1:{node.port}": node is not down for node in redis_cluster.nodes}
            assert ready.json()["checks"]["redis"] == {"ok": True, "error": f"masters down: 127.0.0.1:{down.port}"}
            assert api.get("/metrics").status_code == 200
            worker = make_worker()
            drain(worker)  # the healthy shards' events are stored; the lost shard is left alone meanwhile
            assert rows(database, "SELECT community_id FROM activity_events ORDER BY 1") == [(c,) for c in sorted(kept)]

            down.start()
            deadline = time.monotonic() + 30
            while not redis_cluster.ready() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert redis_cluster.ready()
            time.sleep(SHARD_REST)  # the worker leaves the shard alone this long after its last failure
            deadline = time.monotonic() + 30
            while (
                back := api.post(TRACK, json={"community_id": lost, "user_id": 2, "activity_type": "view"})
            ).status_code != 202:
                assert time.monotonic() < deadline, back.text
                time.sleep(0.2)
            deadline = time.monotonic() + 30
            while not rows(database, "SELECT 1 FROM activity_events WHERE community_id = %s", lost):
                assert time.monotonic() < deadline, "the recovered shard's events were not ingested"
                drain(worker)
    finally:
        if not down.alive():
            down.start()
        deadline = time.monotonic() + 30
        while not redis_cluster.ready() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_a_single_redis_without_shards_keeps_the_names_from_before() -> None:
    single = layout(Settings())
    assert (single.count, single.all[0].stream, single.all[0].presence_key(5), single.all[0].dead_letters) == (
        1,
        "analytics:events",
        "analytics:presence:5",
        "analytics:events:dead",
    )

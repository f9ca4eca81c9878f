"""Faults: the ingest worker SIGKILLed mid-batch, PostgreSQL stopped while events keep coming."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from service.core.db import detect_engine
from service.core.settings import Settings
from service.live.keys import GROUP
from service.storage.migrations import migrate
from service.tools.localstack import PostgresServer
from tests.ingest.conftest import MakeWorker
from tests.ingest.test_worker import activity, count, enqueue
from tests.processes import log_tail, service_env
from tests.support import STREAM, rows, staff_client

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll `condition`; on timeout, fail naming `what` with the tail of the child's `log`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = f"; the worker's log ends:\n{log_tail(log)}" if log is not None else ""
            raise AssertionError(f"timed out waiting for {what}{tail}")
        time.sleep(0.02)


def start_worker(database_url: str, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    """`analytics ingest` as a child process, its metrics on a port the system picks (a fixed one may be taken)."""
    env = service_env(
        database_url, redis_url, INGEST_CONSUMER="fault-worker", INGEST_METRICS_PORT="0",
        INGEST_BATCH_SIZE="2",  # stream entries of 1,000 events each: 15 batches
    )  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "service", "ingest"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def test_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    total = 30_000
    for start in range(0, total, 5_000):
        enqueue(redis_url, [activity(n) for n in range(start, start + 5_000)])
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "worker.log"

    first = start_worker(database_url, redis_url, log)
    try:
        # Kill it while it holds entries it has read but not acknowledged, after some batches committed.
        wait_for(lambda: count(database_url)[0] > 0 and client.xpending(STREAM, GROUP)["pending"] > 0, 60,
                 "a batch in flight", log)  # fmt: skip
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    stored_at_kill = count(database_url)[0]
    assert 0 < stored_at_kill < total, log.read_text()

    second = start_worker(database_url, redis_url, log)
    try:
        wait_for(lambda: count(database_url)[0] >= total and client.xpending(STREAM, GROUP)["pending"] == 0, 120,
                 "the backlog to drain", log)  # fmt: skip
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
    assert count(database_url) == (total, total)


def test_postgres_outage_while_accepting_then_everything_arrives_once(
    redis_url: str, scratch_dir: Path, make_worker: MakeWorker, settings_for: Callable[..., Settings]
) -> None:
    server = PostgresServer(scratch_dir / "outage-pg", options={"fsync": "off"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            migrate(conn, detect_engine(conn))
        settings = settings_for(server.url(), redis_url, DATABASE_TIMEOUT="1")
        worker = make_worker("outage", settings=settings)
        runner = threading.Thread(target=worker.run)
        runner.start()
        accepted: list[str] = []
        try:
            with staff_client(settings) as api:

                def post(n: int) -> None:
                    body = {"community_id": 1, "user_id": n + 1, "activity_type": "view"}
                    response = api.post("/api/community-analytics/track/", json=body)
                    assert response.status_code == 202, response.text
                    accepted.append(response.json()["event_id"])

                for n in range(100):
                    post(n)
                wait_for(lambda: count(server.url())[0] == 100, 30, "the first events")
                server.stop()
                for n in range(100, 400):  # PostgreSQL is down: tracking goes on
                    post(n)
                time.sleep(2)  # the worker fails and backs off meanwhile
                server.start()
                wait_for(lambda: count(server.url())[0] >= 400, 60, "the backlog after the outage")
        finally:
            worker.stop.set()
            runner.join(30)
        assert count(server.url()) == (400, 400)
        stored = {row[0] for row in rows(server.url(), "SELECT event_id::text FROM activity_events")}
        assert stored == set(accepted)
    finally:
        server.stop()

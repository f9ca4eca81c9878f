"""The ingest worker: exactly-once writes, takeover of stale entries, dead letters, geo enrichment."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis
from litestar.testing import TestClient

from service.core.settings import Settings
from service.ingest.writer import write_batch
from service.live.keys import GROUP
from service.live.records import ActivityRecord, GeoRecord
from service.live.stream import stream_backlog, stream_state
from service.live.writer import LiveWriter
from tests.ingest.conftest import MakeWorker
from tests.support import DEAD_LETTERS, SINGLE, STREAM, drain, rows

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def activity(n: int, **changes: Any) -> ActivityRecord:
    base: dict[str, Any] = dict(
        time=T0 + timedelta(seconds=n), event_id=uuid.uuid4(), community_id=1, user_id=n, activity_type="view",
        session_id=None, duration=None, section=None, metadata={},
    )  # fmt: skip
    base.update(changes)
    return ActivityRecord(**base)


def geo(minutes: int, user: int, country: str, result: str, **changes: Any) -> GeoRecord:
    base: dict[str, Any] = dict(
        time=T0 + timedelta(minutes=minutes), event_id=uuid.uuid4(), community_id=9, user_id=user, country=None,
        country_code=country, region=None, city=None, access_result=result, restriction_scope="country",
        is_traveler=None,
    )  # fmt: skip
    base.update(changes)
    return GeoRecord(**base)


def enqueue(redis_url: str, records: list[ActivityRecord] | list[GeoRecord]) -> None:
    """Accept records the way the API does."""

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await LiveWriter(client, SINGLE, max_backlog=10**9).write(records)
        finally:
            await client.aclose()

    asyncio.run(go())


def count(database_url: str, table: str = "activity_events") -> tuple[int, int]:
    [(total, distinct)] = rows(database_url, f"SELECT count(*), count(DISTINCT event_id) FROM {table}")
    return total, distinct


def test_writing_the_same_batch_twice_stores_it_once(database_url: str) -> None:
    records = [activity(n) for n in range(50)]
    with psycopg.connect(database_url) as conn:
        write_batch(conn, records, [], 3600)
        write_batch(conn, [*records[25:], activity(99)], [], 3600)  # a redelivery plus one new event
    assert count(database_url) == (51, 51)


def test_entries_are_acknowledged_after_commit(database_url: str, redis_url: str, make_worker: MakeWorker) -> None:
    enqueue(redis_url, [activity(n) for n in range(10)])
    worker = make_worker()
    assert drain(worker) == 10
    client = redis.Redis.from_url(redis_url)
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    assert count(database_url) == (10, 10)


def test_a_dead_consumers_pending_entries_are_taken_over(
    database_url: str, redis_url: str, make_worker: MakeWorker, settings_for: Callable[..., Settings]
) -> None:
    for start in (0, 10):  # two requests: two stream entries of 10 events
        enqueue(redis_url, [activity(n) for n in range(start, start + 10)])
    client = redis.Redis.from_url(redis_url)
    make_worker("first").ensure_group()
    # "first" reads the entries and dies before writing them: they stay pending on it.
    client.xreadgroup(GROUP, "first", {STREAM: ">"}, count=100)
    assert client.xpending(STREAM, GROUP)["pending"] == 2
    fast = settings_for(database_url, redis_url, INGEST_CLAIM_IDLE="0.001")
    second = make_worker("second", settings=fast)
    assert drain(second) == 20
    assert count(database_url) == (20, 20)
    assert client.xpending(STREAM, GROUP)["pending"] == 0


def test_a_restarted_consumer_finishes_its_own_pending_entries_first(
    database_url: str, redis_url: str, make_worker: MakeWorker
) -> None:
    enqueue(redis_url, [activity(n) for n in range(5)])
    make_worker("same").ensure_group()
    redis.Redis.from_url(redis_url).xreadgroup(GROUP, "same", {STREAM: ">"}, count=100)
    assert drain(make_worker("same")) == 5
    assert count(database_url) == (5, 5)


def test_undecodable_and_refused_entries_go_to_dead_letters(
    database_url: str, redis_url: str, make_worker: MakeWorker
) -> None:
    worker = make_worker()
    client = redis.Redis.from_url(redis_url)
    client.xadd(STREAM, {"0": b"a\x00garbage", "1": b"zwhat"})
    # Valid for the stream, refused by the table's CHECK (a type the API would never accept).
    enqueue(redis_url, [activity(1), activity(2, activity_type="teleport"), activity(3)])
    assert drain(worker) == 5
    assert count(database_url) == (2, 2)
    letters = client.xrange(DEAD_LETTERS)
    assert len(letters) == 3
    reasons = sorted(fields[b"error"].decode() for _, fields in letters)
    assert reasons[0].startswith("new row for relation") and "check constraint" in reasons[0]
    assert reasons[1].startswith("undecodable")
    assert reasons[2] == "unknown kind b'z'"
    assert client.xpending(STREAM, GROUP)["pending"] == 0


def test_geo_travelers_and_restriction_bypass(database_url: str, redis_url: str, make_worker: MakeWorker) -> None:
    enqueue(
        redis_url,
        [
            geo(0, user=1, country="DE", result="allowed"),  # first country recorded: home DE
            geo(10, user=1, country="FR", result="allowed"),  # traveler
            geo(20, user=1, country="FR", result="allowed", is_traveler=False),  # the client says otherwise
            geo(30, user=2, country="US", result="blocked"),  # home US
            geo(40, user=2, country="CA", result="allowed"),  # 10 min after a block from US: bypass
            geo(45, user=2, country="US", result="allowed"),  # same country as the block: no bypass
            geo(200, user=2, country="CA", result="allowed"),  # 170 min after the block: outside the hour
            geo(50, user=3, country=None, result="blocked"),  # unknown location: no home, no traveler
        ],
    )
    drain(make_worker())
    got = rows(
        database_url,
        "SELECT user_id, country_code, access_result, is_traveler, restriction_bypass FROM geo_access_events "
        "ORDER BY time",
    )
    assert got == [
        (1, "DE", "allowed", False, False),
        (1, "FR", "allowed", True, False),
        (1, "FR", "allowed", False, False),
        (2, "US", "blocked", False, False),
        (2, "CA", "allowed", True, True),
        (2, "US", "allowed", False, False),
        (3, None, "blocked", False, False),
        (2, "CA", "allowed", True, False),
    ]
    assert rows(database_url, "SELECT user_id, country_code FROM user_home_locations ORDER BY user_id") == [
        (1, "DE"),
        (2, "US"),
    ]


def test_geo_over_http_with_location(client: TestClient[Any], database_url: str, make_worker: MakeWorker) -> None:
    response = client.post(
        "/api/geo-analytics/track/",
        json={
            "community_id": 4,
            "user_id": 8,
            "access_result": "blocked",
            "restriction_scope": "city",
            "location": {"country": "Germany", "country_code": "de", "region": "Berlin", "city": "Berlin"},
        },
    )
    assert response.status_code == 202
    drain(make_worker())
    assert rows(
        database_url,
        "SELECT community_id, user_id, country, country_code, region, city, access_result, restriction_scope "
        "FROM geo_access_events",
    ) == [(4, 8, "Germany", "DE", "Berlin", "Berlin", "blocked", "city")]


def test_insert_mode_without_copy_writes_the_same_rows(database_url: str) -> None:
    records = [activity(n, duration=1.5, metadata={"k": n}) for n in range(30)]
    geos = [geo(0, user=1, country="DE", result="blocked"), geo(5, user=1, country="FR", result="allowed")]
    with psycopg.connect(database_url) as conn:
        write_batch(conn, records, geos, 3600, use_copy=False)
        write_batch(conn, records[:10], [], 3600, use_copy=False)  # redelivered: skipped
    assert count(database_url) == (30, 30)
    assert rows(database_url, "SELECT sum(duration), count(*) FILTER (WHERE metadata ? 'k') FROM activity_events") == [
        (45.0, 30)
    ]
    assert rows(database_url, "SELECT country_code, is_traveler, restriction_bypass FROM geo_access_events "
                "ORDER BY time") == [("DE", False, False), ("FR", True, True)]  # fmt: skip


def test_orphans_come_back_at_full_speed(
    database_url: str, redis_url: str, make_worker: MakeWorker, settings_for: Callable[..., Settings]
) -> None:
    """A ghost consumer reads 200 entries and never acknowledges them: a worker claims them batch after batch
    (not one batch per INGEST_CLAIM_IDLE / 2), so all are stored within 2 x INGEST_CLAIM_IDLE."""
    for start in range(0, 400, 2):  # 200 requests: 200 stream entries of 2 events
        enqueue(redis_url, [activity(n) for n in range(start, start + 2)])
    client = redis.Redis.from_url(redis_url)
    make_worker("ghost").ensure_group()
    client.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=1000)
    assert client.xpending(STREAM, GROUP)["pending"] == 200
    idle = 3.0
    worker = make_worker("heir", settings=settings_for(database_url, redis_url, INGEST_CLAIM_IDLE=str(idle)))
    started = time.monotonic()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        while count(database_url) != (400, 400) and time.monotonic() - started < 4 * idle:
            time.sleep(0.05)
        took = time.monotonic() - started
    finally:
        worker.stop.set()
        thread.join(10)
    assert count(database_url) == (400, 400)
    assert took <= 2 * idle, f"all 200 orphans stored after {took:.1f}s, more than 2 x INGEST_CLAIM_IDLE"
    assert client.xpending(STREAM, GROUP)["pending"] == 0


def test_the_task_and_metrics_count_the_backlog_alike(redis_url: str, make_worker: MakeWorker) -> None:
    """One definition: entries not acknowledged yet (not delivered, or delivered and pending), whether sampled by
    update_system_metrics (stream_backlog) or scraped (stream_state); acknowledged entries do not count."""
    for n in range(4):
        enqueue(redis_url, [activity(n)])
    client = redis.Redis.from_url(redis_url)
    make_worker("probe").ensure_group()
    [(_, delivered)] = client.xreadgroup(GROUP, "probe", {STREAM: ">"}, count=2)
    client.xack(STREAM, GROUP, delivered[0][0])  # one done, one pending, two not delivered

    async def scraped() -> int:
        async with aioredis.Redis.from_url(redis_url) as live:
            return (await stream_state(live, SINGLE)).backlog

    assert stream_backlog(client, SINGLE) == (3, 1)
    assert asyncio.run(scraped()) == 3

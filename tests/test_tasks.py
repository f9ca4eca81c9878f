"""Periodic tasks: the schedule table, both names of a task, overrides and their precedence, the worker's plan and
minute-aligned checks, locks, run records, the API, and each task's effect on the rows."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from service.core import task_catalog
from service.core.settings import Settings
from service.core.task_catalog import TASKS, TaskSpec, lookup, schedule_name
from service.live.records import GeoRecord
from service.live.writer import LiveWriter
from service.tasks.schedule import Stored, planned
from service.tasks.worker import (
    LOCK_PREFIX,
    MinuteScheduler,
    ScheduleBook,
    close_interrupted_runs,
    create_queue,
    execute,
)
from tests.processes import free_port
from tests.support import DEAD_LETTERS, SINGLE, act, at, rows, staff_client, store

# DESIGN.md section 9 (the seed's table), plus the rollup refresh of this service.
SEED = {
    "update_daily_analytics": "*/30 * * * *",
    "update_user_analytics": "0 * * * *",
    "update_community_analytics": "*/15 * * * *",
    "process_geo_restriction_analytics": "*/20 * * * *",
    "update_system_metrics": "*/15 * * * *",
    "cleanup_old_analytics": "0 2 * * *",
    "generate_analytics_reports": "0 3 * * *",
    "generate_community_reports": "30 3 * * *",
    "generate_geo_effectiveness_reports": "0 4 * * *",
    "process_error_logs": "*/10 * * * *",
    "cleanup_resolved_error_logs": "30 4 * * *",
    "cleanup_redis_analytics": "0 5 * * *",
    "refresh_rollups": "* * * * *",
}


def test_schedule_table_matches_the_seed(client: TestClient[Any]) -> None:
    tasks = client.get("/api/tasks/").json()
    assert {t["name"]: t["schedule"] for t in tasks} == SEED
    assert all(t["enabled"] and t["next_run"] and t["last_run"] is None for t in tasks)


def test_overrides_and_disabled_tasks(database_url: str, redis_url: str, settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(
        database_url, redis_url,
        TASK_SCHEDULES="update_daily_analytics=*/5 * * * *", TASKS_DISABLED="cleanup_old_analytics",
    )  # fmt: skip
    with staff_client(settings) as client:
        tasks = {t["name"]: t for t in client.get("/api/tasks/").json()}
    daily = tasks["update_daily_analytics"]
    assert (daily["schedule"], daily["default_schedule"]) == ("*/5 * * * *", "*/30 * * * *")
    assert datetime.fromisoformat(daily["next_run"]).minute % 5 == 0
    assert (tasks["cleanup_old_analytics"]["enabled"], tasks["cleanup_old_analytics"]["next_run"]) == (False, None)
    # What the consumer would run at 02:05: the overridden task, not the disabled one.
    due = {t.name for t in create_queue(settings).huey.read_periodic(datetime(2026, 1, 5, 2, 5))}
    assert "update_daily_analytics" in due and "cleanup_old_analytics" not in due
    due_default = {t.name for t in create_queue(settings_for(database_url, redis_url)).huey.read_periodic(
        datetime(2026, 1, 5, 2, 0))}  # fmt: skip
    assert "cleanup_old_analytics" in due_default


def test_either_documented_name_finds_the_task() -> None:
    for spec in TASKS:
        assert lookup(spec.name) is spec and lookup(schedule_name(spec.name)) is spec
    daily = lookup("update-daily-analytics")
    assert daily is not None and daily.name == "update_daily_analytics"
    assert schedule_name(daily.name) == "update-daily-analytics"
    for wrong in ("update_daily-analytics", "Update_Daily_Analytics", "nope", "", "update_daily_analytics\x00",
                  "x" * 10_000):  # fmt: skip
        assert lookup(wrong) is None, wrong


def _plans(settings: Settings, stored: dict[str, Stored] | None = None) -> dict[str, tuple[Any, ...]]:
    return {p.spec.name: (p.schedule, p.schedule_source, p.enabled, p.enabled_source)
            for p in planned(settings, stored)}  # fmt: skip


def test_a_stored_change_wins_over_the_environment_which_wins_over_the_default(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(
        None, None,
        TASK_SCHEDULES="update-daily-analytics=*/5 * * * *;process_error_logs=0 * * * *",
        TASKS_DISABLED="cleanup_old_analytics,generate-analytics-reports",
    )  # fmt: skip
    configured = _plans(settings)
    assert configured["update_daily_analytics"] == ("*/5 * * * *", "environment", True, "default")
    assert configured["process_error_logs"] == ("0 * * * *", "environment", True, "default")
    assert configured["cleanup_old_analytics"] == ("0 2 * * *", "default", False, "environment")
    assert configured["generate_analytics_reports"] == ("0 3 * * *", "default", False, "environment")
    assert configured["refresh_rollups"] == ("* * * * *", "default", True, "default")

    when = datetime(2026, 11, 28, 12, tzinfo=UTC)
    stored = {
        "update_daily_analytics": Stored("*/7 * * * *", None, "1", when),  # over TASK_SCHEDULES
        "process_error_logs": Stored(None, False, "1", when),  # switched off, its TASK_SCHEDULES schedule kept
        "cleanup_old_analytics": Stored(None, True, "1", when),  # over TASKS_DISABLED
        "generate_analytics_reports": Stored(None, None, "1", when),  # both reset: the configuration applies
        "refresh_rollups": Stored("*/2 * * * *", False, "1", when),  # over the defaults
        "no_longer_a_task": Stored("* * * * *", False, "1", when),  # ignored
    }
    changed = _plans(settings, stored)
    assert changed["update_daily_analytics"] == ("*/7 * * * *", "api", True, "default")
    assert changed["process_error_logs"] == ("0 * * * *", "environment", False, "api")
    assert changed["cleanup_old_analytics"] == ("0 2 * * *", "default", True, "api")
    assert changed["generate_analytics_reports"] == ("0 3 * * *", "default", False, "environment")
    assert changed["refresh_rollups"] == ("*/2 * * * *", "api", False, "api")
    assert set(changed) == {spec.name for spec in TASKS}
    untouched = set(changed) - set(stored)
    assert {name: changed[name] for name in untouched} == {name: configured[name] for name in untouched}


def test_the_worker_plan_reloads_and_keeps_the_last_one_when_the_database_is_away(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    book = ScheduleBook(settings)
    moment = datetime(2026, 1, 5, 2, 5)  # naive UTC, as huey's scheduler gives it
    assert not book.due("process_error_logs", moment)  # */10
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO task_schedules (task_name, schedule, changed_by) "
                     "VALUES ('process_error_logs', '*/5 * * * *', '1')")  # fmt: skip
        conn.execute("INSERT INTO task_schedules (task_name, enabled, changed_by) "
                     "VALUES ('refresh_rollups', false, '1')")  # fmt: skip
    book.reload()
    assert book.due("process_error_logs", moment) and not book.due("refresh_rollups", moment)
    # PostgreSQL unreachable: a warning, and the last plan still holds.
    book.settings = msgspec.structs.replace(settings, database_url=f"postgresql://127.0.0.1:{free_port()}/gone")
    with caplog.at_level(logging.WARNING, logger="service.tasks.worker"):
        book.reload()
    assert "could not reload the task schedules" in caplog.text
    assert book.due("process_error_logs", moment) and not book.due("refresh_rollups", moment)


def test_an_invalid_stored_schedule_stops_only_its_task(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url) as conn:  # written past the API, which refuses it
        conn.execute("INSERT INTO task_schedules (task_name, schedule, changed_by) "
                     "VALUES ('process_error_logs', 'every minute', 'psql')")  # fmt: skip
    book = ScheduleBook(settings)
    book.reload()
    huey = create_queue(settings, book=book).huey
    with caplog.at_level(logging.WARNING, logger="service.tasks.worker"):
        due = {t.name for t in huey.read_periodic(datetime(2026, 1, 5, 2, 0))}
    assert "refresh_rollups" in due and "cleanup_old_analytics" in due and "process_error_logs" not in due
    assert "task process_error_logs: schedule 'every minute' is not valid" in caplog.text


def test_the_scheduler_checks_at_whole_minutes_once_each_on_the_reloaded_plan(
    settings: Settings, database_url: str
) -> None:
    book = ScheduleBook(settings)
    huey = create_queue(settings, book=book).huey
    scheduler = MinuteScheduler(book, huey=huey, stop_flag=threading.Event(), interval=1, periodic=True)
    # huey would check at its start and every 60 s from there; this one at the next whole wall-clock minute.
    first_check = time.time() + scheduler._next_periodic - time.monotonic()
    assert first_check > time.time() and first_check % 60 < 0.5
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO task_schedules (task_name, schedule, changed_by) "
            "VALUES ('process_error_logs', '* * * * *', '1'), ('cleanup_old_analytics', '* * * * *', '1')"
        )
        conn.execute("INSERT INTO task_schedules (task_name, enabled, changed_by) "
                     "VALUES ('refresh_rollups', false, '1')")  # fmt: skip
    if time.time() % 60 > 57:  # both checks below in one minute
        time.sleep(60 - time.time() % 60 + 0.1)
    scheduler.enqueue_periodic_tasks(None)
    queued = sorted(t.name for t in huey.pending())
    assert "process_error_logs" in queued and "cleanup_old_analytics" in queued and "refresh_rollups" not in queued
    minute = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
    assert queued == sorted(name for name in book.plans if book.due(name, minute))
    scheduler.enqueue_periodic_tasks(None)  # a second check in the same minute enqueues nothing
    assert sorted(t.name for t in huey.pending()) == queued
    after = time.time() + scheduler._next_periodic - time.monotonic()
    assert after > time.time() and after % 60 < 0.5


def test_a_disabled_task_still_runs_when_asked(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    assert client.patch("/api/tasks/process-error-logs/", json={"enabled": False}).json()["enabled"] is False
    queued = client.post("/api/tasks/process-error-logs/run/")
    assert queued.status_code == 202
    huey = create_queue(settings).huey
    message = huey.dequeue()  # what the worker does with it
    assert huey.execute(message) == "success"
    assert rows(database_url, "SELECT id, task_name, trigger, status FROM task_runs") == [
        (queued.json()["run_id"], "process_error_logs", "manual", "success")
    ]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_run_is_recorded_and_counted(settings: Settings, database_url: str) -> None:
    before = metric("analytics_task_runs_total", task="refresh_rollups", status="success")
    store(database_url, [act(at(1, 10), 3, 1), act(at(1, 10, 5), 3, 1)])
    outcome = execute(settings, "refresh_rollups")
    assert outcome.status == "success"
    [(status, error, details, finished)] = rows(
        database_url, "SELECT status, error, details, finished_at IS NOT NULL FROM task_runs WHERE id = %s",
        outcome.run_id,
    )  # fmt: skip
    assert (status, error, finished) == ("success", None, True)
    assert details["invalidations"] == 1
    assert metric("analytics_task_runs_total", task="refresh_rollups", status="success") == before + 1
    assert metric("analytics_task_last_success_timestamp_seconds", task="refresh_rollups") > 0
    assert rows(database_url, "SELECT user_id, community_id, events FROM sessions") == [(1, 3, 2)]


def test_a_locked_task_is_skipped(settings: Settings, redis_url: str, database_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(LOCK_PREFIX + "process_error_logs", "another-run", ex=60)
    outcome = execute(settings, "process_error_logs")
    assert (outcome.status, outcome.error) == ("skipped", "another run of this task is in progress")
    assert client.get(LOCK_PREFIX + "process_error_logs") == b"another-run"  # not ours to release
    client.delete(LOCK_PREFIX + "process_error_logs")
    assert execute(settings, "process_error_logs").status == "success"
    assert client.get(LOCK_PREFIX + "process_error_logs") is None  # released after the run
    assert [r[0] for r in rows(database_url, "SELECT status FROM task_runs ORDER BY id")] == ["skipped", "success"]


def explode(context: object) -> dict[str, Any]:
    raise RuntimeError("the disk is full")


def test_a_failure_is_recorded_and_releases_the_lock(
    settings: Settings, redis_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(task_catalog.BY_NAME, "boom", TaskSpec("boom", "* * * * *", "tests.test_tasks:explode", "x"))
    outcome = execute(settings, "boom")
    assert (outcome.status, outcome.error) == ("failure", "RuntimeError: the disk is full")
    assert rows(database_url, "SELECT status, error FROM task_runs") == [("failure", "RuntimeError: the disk is full")]
    assert redis.Redis.from_url(redis_url).get(LOCK_PREFIX + "boom") is None


def test_run_now_through_the_api(client: TestClient[Any], settings: Settings, database_url: str) -> None:
    response = client.post("/api/tasks/process_error_logs/run/")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert response.json() == {"run_id": run_id, "task": "process_error_logs", "status": "queued"}
    assert create_queue(settings).huey.pending_count() == 1
    assert client.get("/api/tasks/runs/?status=queued").json()["results"][0]["id"] == run_id
    # What the worker does with the queued message:
    assert execute(settings, "process_error_logs", run_id).status == "success"
    runs = client.get("/api/tasks/runs/?task=process_error_logs").json()
    assert runs["count"] == 1 and runs["results"][0]["status"] == "success"
    assert runs["results"][0]["trigger"] == "manual"
    task = next(t for t in client.get("/api/tasks/").json() if t["name"] == "process_error_logs")
    assert task["last_run"]["id"] == run_id
    assert client.post("/api/tasks/no_such_task/run/").status_code == 404
    assert client.get("/api/tasks/runs/?status=exploded").status_code == 400
    assert client.get("/api/tasks/runs/?since=yesterday").status_code == 400


def test_update_community_analytics(settings: Settings, redis_url: str, database_url: str) -> None:
    now = datetime.now(UTC)

    async def track() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await LiveWriter(client, SINGLE, 10**6).write([act(now, 5, 1), act(now, 5, 2), act(now, 6, 3)])
        finally:
            await client.aclose()

    asyncio.run(track())
    slot = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    for _ in range(2):  # a rerun in the same slot writes the same rows
        assert execute(settings, "update_community_analytics", now=now).status == "success"
        assert rows(database_url, "SELECT community_id, slot, online FROM community_presence_samples "
                    "ORDER BY 1") == [(5, slot, 2), (6, slot, 1)]  # fmt: skip
    assert rows(database_url, "SELECT community_id, peak_online, average_online, samples "
                "FROM community_presence_daily ORDER BY 1") == [(5, 2, 2.0, 1), (6, 1, 1.0, 1)]  # fmt: skip
    if slot.date() == (slot + timedelta(minutes=15)).date():  # the next quarter hour, same day: everyone gone
        later = now + timedelta(minutes=15)
        redis.Redis.from_url(redis_url).delete("analytics:presence:5", "analytics:presence:6")
        assert execute(settings, "update_community_analytics", now=later).status == "success"
        assert rows(database_url, "SELECT community_id, peak_online, average_online, samples "
                    "FROM community_presence_daily ORDER BY 1") == [(5, 2, 1.0, 2), (6, 1, 0.5, 2)]  # fmt: skip


def test_quarter_hours_nobody_sampled_are_sampled_from_the_stored_events(settings: Settings, database_url: str) -> None:
    # Back-dated activity of yesterday (as an import or the demo's history sends it): no run sampled it live.
    store(database_url, [
        act(at(1, 10, 11), 5, 1), act(at(1, 10, 13), 5, 2), act(at(1, 10, 14), 5, 2),  # 2 members up to 10:15
        act(at(1, 10, 9), 5, 3),  # more than 5 minutes before 10:15: not online then
        act(at(1, 10, 14), 5, None),  # a visitor who is not signed in is no member
        act(at(1, 10, 30), 6, 9),  # online at 10:30 (the 5 minutes end at the slot, inclusive)
        act(at(1, 11, 58), 5, 4),
    ])  # fmt: skip
    outcome = execute(settings, "update_community_analytics", now=at(0, 0, 20))
    assert outcome.status == "success"
    assert outcome.details["slots_sampled_from_events"] == 96 + 1  # yesterday's, and today's 00:00
    samples = rows(database_url, "SELECT community_id, slot, online FROM community_presence_samples WHERE online > 0"
                   " ORDER BY 2, 1")  # fmt: skip
    assert samples == [(5, at(1, 10, 15), 2), (6, at(1, 10, 30), 1), (5, at(1, 12, 0), 1)]
    # Every quarter hour of the day has a sample for both communities (0 when quiet): the average counts them.
    assert rows(database_url, "SELECT community_id, count(*) FROM community_presence_samples"
                " WHERE slot < %s GROUP BY 1 ORDER BY 1", (at(0, 0),)) == [(5, 96), (6, 96)]  # fmt: skip
    daily = rows(database_url, "SELECT community_id, day, peak_online, average_online, samples"
                 " FROM community_presence_daily ORDER BY 1")  # fmt: skip
    assert daily == [
        (5, at(1, 0).date(), 2, pytest.approx((2 + 1) / 96), 96),
        (6, at(1, 0).date(), 1, pytest.approx(1 / 96), 96),
    ]
    # Sampled once: a later run looks again only at today's two quarter hours, where nothing was active.
    assert execute(settings, "update_community_analytics", now=at(0, 0, 35)).details["slots_sampled_from_events"] == 2
    assert rows(database_url, "SELECT count(*) FROM community_presence_samples")[0][0] == 2 * 96


def geo(when: datetime, user: int, country: str, result: str) -> GeoRecord:
    return GeoRecord(when, uuid.uuid4(), 9, user, None, country, None, None, result, "country", None)


def test_bypasses_are_flagged_whatever_the_delivery_order(settings: Settings, database_url: str) -> None:
    t = datetime.now(UTC) - timedelta(hours=2)
    store(database_url, geos=[geo(t + timedelta(minutes=10), 1, "CA", "allowed")])  # arrives first
    store(database_url, geos=[geo(t, 1, "US", "blocked")])  # the block it bypassed arrives later
    assert rows(database_url, "SELECT country_code FROM geo_access_events WHERE restriction_bypass") == [("CA",)]
    # The periodic task double-checks the last day, e.g. rows written before this rule existed.
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE geo_access_events SET restriction_bypass = false")
    outcome = execute(settings, "process_geo_restriction_analytics")
    assert outcome.details["bypasses_flagged"] == 1
    assert rows(database_url, "SELECT country_code FROM geo_access_events WHERE restriction_bypass") == [("CA",)]
    assert execute(settings, "process_geo_restriction_analytics").details["bypasses_flagged"] == 0


def test_update_system_metrics(settings: Settings, database_url: str) -> None:
    now = datetime.now(UTC)
    for _ in range(2):  # one sample per metric and slot, however often it runs
        assert execute(settings, "update_system_metrics", now=now).status == "success"
    found = dict(rows(database_url, "SELECT metric_type, count(*) FROM system_metrics GROUP BY 1"))
    assert found == {name: 1 for name in (
        "cpu_usage", "memory_usage", "disk_usage", "load_average", "database_size_bytes", "database_connections",
        "redis_memory_bytes", "stream_backlog")}  # fmt: skip
    [(size,)] = rows(database_url, "SELECT value FROM system_metrics WHERE metric_type = 'database_size_bytes'")
    assert size > 1_000_000
    assert metric("analytics_system_metric", metric_type="database_size_bytes") == size


def test_retention_on_the_postgres_engine(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(database_url, redis_url, RETENTION_RAW_DAYS="30", RETENTION_ROLLUP_DAYS="60")
    old, recent = at(45, 12), at(5, 12)
    store(database_url, [act(old, 1, 1), act(old, 1, 2), act(recent, 1, 1)], [geo(old, 1, "US", "allowed")])
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO activity_daily_mat VALUES (%s, 1, 'view', 4, 0, 0), (%s, 1, 'view', 2, 0, 0), "
            "(%s, 1, 'view', 1, 0, 0)",
            (at(90, 0), at(45, 0), at(5, 0)),
        )
        conn.execute(
            "INSERT INTO sessions VALUES (1, 1, %s, %s, 1), (1, 1, %s, %s, 1)", (at(90, 1), at(90, 1), old, old)
        )
    assert execute(settings, "cleanup_old_analytics").status == "success"
    # Raw data older than 30 days is gone, the rest untouched; rollups and sessions keep 60 days.
    assert rows(database_url, "SELECT time FROM activity_events") == [(recent,)]
    assert rows(database_url, "SELECT count(*) FROM geo_access_events") == [(0,)]
    assert rows(database_url, "SELECT bucket FROM activity_daily_mat ORDER BY 1") == [(at(45, 0),), (at(5, 0),)]
    assert rows(database_url, "SELECT started_at FROM sessions") == [(old,)]


def error_log(conn: psycopg.Connection[Any], message: str, user: int | None = None, **extra: Any) -> None:
    trace = 'Traceback (most recent call last):\n  File "app/users.py", line 12, in get_user\n    raise'
    conn.execute(
        "INSERT INTO error_logs (level, message, stack_trace, user_id, created_at, is_resolved, resolved_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (extra.get("level", "error"), message, extra.get("trace", trace), user, extra.get("created", datetime.now(UTC)),
         extra.get("resolved_at") is not None, extra.get("resolved_at")),
    )  # fmt: skip


def test_process_error_logs_groups_and_marks_regressions(settings: Settings, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        error_log(conn, "User 42 not found", user=1)
        error_log(conn, "User 7 not found", user=2, level="critical")
        error_log(conn, "User 7 not found", user=2)
        error_log(conn, "Timeout after 30s calling 'billing'", trace=None)
    outcome = execute(settings, "process_error_logs")
    assert outcome.details == {"logs_grouped": 4, "groups_touched": 2}
    groups = rows(database_url, "SELECT sample_message, level, occurrences, users_affected, status, top_frame "
                  "FROM error_groups ORDER BY occurrences DESC")  # fmt: skip
    assert groups == [
        ("User 42 not found", "critical", 3, 2, "unresolved", "app/users.py:get_user"),
        ("Timeout after 30s calling 'billing'", "error", 1, 0, "unresolved", None),
    ]
    assert execute(settings, "process_error_logs").details == {"logs_grouped": 0, "groups_touched": 0}
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE error_groups SET status = 'resolved', resolved_at = now() - interval '1 minute' "
                     "WHERE top_frame IS NOT NULL")  # fmt: skip
        error_log(conn, "User 99 not found", user=3)
    execute(settings, "process_error_logs")
    assert rows(database_url, "SELECT status, occurrences, users_affected FROM error_groups "
                "WHERE top_frame IS NOT NULL") == [("regressed", 4, 3)]  # fmt: skip


def test_cleanup_resolved_error_logs(database_url: str, redis_url: str, settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(database_url, redis_url, RETENTION_RESOLVED_ERRORS_DAYS="30")
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        error_log(conn, "old and resolved", created=now - timedelta(days=50), resolved_at=now - timedelta(days=40))
        error_log(conn, "recently resolved", created=now - timedelta(days=50), resolved_at=now - timedelta(days=10))
        error_log(conn, "old, unresolved", created=now - timedelta(days=50))
    assert execute(settings, "cleanup_resolved_error_logs").details["deleted"] == 1
    assert sorted(r[0] for r in rows(database_url, "SELECT message FROM error_logs")) == [
        "old, unresolved", "recently resolved"]  # fmt: skip


def test_cleanup_redis_analytics(settings: Settings, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now = datetime.now(UTC).timestamp()
    client.zadd("analytics:presence:4", {"1": now, "2": now - 3600})  # member 2 left an hour ago
    client.hset("analytics:counts:2026-01-01", "view_count", 3)  # lost its expiry
    client.set("unrelated:key", "kept")
    for n in range(12):
        client.xadd(DEAD_LETTERS, {"v": b"x", "error": f"bad {n}"})
    import service.live.cleanup

    service.live.cleanup.DEAD_LETTERS_KEPT, kept = 10, service.live.cleanup.DEAD_LETTERS_KEPT
    try:
        outcome = execute(settings, "cleanup_redis_analytics")
    finally:
        service.live.cleanup.DEAD_LETTERS_KEPT = kept
    assert outcome.details["stale_presence_members"] == 1
    assert outcome.details["expiries_restored"] >= 2
    assert client.zrange("analytics:presence:4", 0, -1) == [b"1"]
    assert 0 < client.ttl("analytics:counts:2026-01-01") <= 9 * 86400
    assert client.ttl("unrelated:key") == -1
    assert client.xlen(DEAD_LETTERS) == 10


def test_runs_of_a_dead_worker_are_closed_at_start(settings: Settings, redis_url: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO task_runs (task_name, status) VALUES ('process_error_logs', 'running'), "
                     "('refresh_rollups', 'running')")  # fmt: skip
    redis.Redis.from_url(redis_url).set(LOCK_PREFIX + "refresh_rollups", "alive", ex=60)  # still running elsewhere
    assert close_interrupted_runs(settings) == 1
    assert rows(database_url, "SELECT task_name, status, error FROM task_runs ORDER BY id") == [
        ("process_error_logs", "failure", "interrupted: the worker stopped during the run"),
        ("refresh_rollups", "running", None),
    ]

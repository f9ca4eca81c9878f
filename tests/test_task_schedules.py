"""Schedules managed at runtime: `PATCH /api/tasks/{name}/` stores a schedule or switches a task off, the stored
change wins over TASK_SCHEDULES / TASKS_DISABLED, both documented names of a task are taken, and a running
`analytics worker` (a real huey consumer) follows a change at the next whole minute, across a restart too."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from service.scheduling import Stored, lookup, planned, schedule_name
from service.settings import Settings
from tests.processes import running, service_env, until
from tests.support import bearer, rows

Client = TestClient[Any]


def test_either_documented_name_finds_the_task() -> None:
    spec = lookup("update-daily-analytics")
    assert spec is not None and spec is lookup("update_daily_analytics")
    assert schedule_name(spec.name) == "update-daily-analytics"
    assert lookup("update_daily-analytics") is None and lookup("nope") is None


def test_a_stored_change_wins_over_the_environment_which_wins_over_the_default(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(
        None, None, TASK_SCHEDULES="update-daily-analytics=*/5 * * * *", TASKS_DISABLED="cleanup_old_analytics"
    )
    at = datetime(2026, 11, 28, 12, tzinfo=UTC)
    stored = {
        "update_daily_analytics": Stored("*/7 * * * *", None, "user:1", at),
        "cleanup_old_analytics": Stored(None, True, "user:1", at),
        "process_error_logs": Stored(None, False, "user:1", at),
    }

    def plans(*stored_changes: Any) -> dict[str, tuple[Any, ...]]:
        return {
            p.spec.name: (p.schedule, p.schedule_source, p.enabled, p.enabled_source)
            for p in planned(settings, *stored_changes)
        }

    before = plans()
    assert before["update_daily_analytics"] == ("*/5 * * * *", "environment", True, "default")
    assert before["cleanup_old_analytics"] == ("0 2 * * *", "default", False, "environment")
    after = {
        p.spec.name: (p.schedule, p.schedule_source, p.enabled, p.enabled_source) for p in planned(settings, stored)
    }
    assert after["update_daily_analytics"] == ("*/7 * * * *", "api", True, "default")
    assert after["cleanup_old_analytics"] == ("0 2 * * *", "default", True, "api")
    assert after["process_error_logs"] == ("*/10 * * * *", "default", False, "api")


def test_patch_stores_the_change_and_null_returns_to_the_configuration(client: Client, database_url: str) -> None:
    changed = client.patch("/api/tasks/update-daily-analytics/", json={"schedule": "*/5 * * * *"})
    assert changed.status_code == 200, changed.text
    task = changed.json()
    assert (task["name"], task["schedule_name"]) == ("update_daily_analytics", "update-daily-analytics")
    assert (task["schedule"], task["default_schedule"], task["schedule_source"]) == (
        "*/5 * * * *",
        "*/30 * * * *",
        "api",
    )
    assert (task["enabled"], task["enabled_source"], task["changed_by"]) == (True, "default", "user:1")
    assert datetime.fromisoformat(task["next_run"]).minute % 5 == 0
    assert rows(database_url, "SELECT task_name, schedule, enabled, changed_by FROM task_schedules") == [
        ("update_daily_analytics", "*/5 * * * *", None, "user:1")
    ]

    off = client.patch("/api/tasks/update_daily_analytics/", json={"enabled": False}).json()
    assert (off["schedule"], off["enabled"], off["enabled_source"], off["next_run"]) == (
        "*/5 * * * *",
        False,
        "api",
        None,
    )
    listed = {t["name"]: t for t in client.get("/api/tasks/").json()}
    assert listed["update_daily_analytics"] == {**off, "last_run": None}
    assert client.get("/api/tasks/update-daily-analytics/").json() == off

    back = client.patch("/api/tasks/update-daily-analytics/", json={"schedule": None, "enabled": None}).json()
    assert (back["schedule"], back["schedule_source"], back["enabled"], back["enabled_source"]) == (
        "*/30 * * * *", "default", True, "default"
    )  # fmt: skip
    assert back["changed_by"] == "user:1" and back["changed_at"] is not None  # the last change is kept on record


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"schedule": "every minute"},
         [("schedule", "expected 5 cron fields (minute hour day month weekday), got 'every minute'")]),
        ({"schedule": "61 * * * *"}, None),
        ({"enabled": "no"}, [("enabled", "Expected `bool | null`, got `str`")]),
        ({"cron": "* * * * *"}, [("cron", "unknown field")]),
        ({}, [("schedule", "send `schedule` and/or `enabled`"), ("enabled", "send `schedule` and/or `enabled`")]),
    ],
)  # fmt: skip
def test_bad_changes_are_400s_naming_the_field(
    client: Client, database_url: str, body: dict[str, Any], errors: list[tuple[str, str]] | None
) -> None:
    response = client.patch("/api/tasks/process_error_logs/", json=body)
    assert response.status_code == 400, response.text
    found = [(e["field"], e["message"]) for e in response.json()["errors"]]
    assert found == errors if errors is not None else [f for f, _ in found] == ["schedule"]
    assert rows(database_url, "SELECT count(*)::int FROM task_schedules") == [(0,)]


def test_unknown_tasks_are_404s_and_users_403s(client: Client, settings: Settings) -> None:
    for method in ("get", "patch"):
        response = client.request(method.upper(), "/api/tasks/nope/", json={"enabled": False})
        assert (response.status_code, response.json()["detail"]) == (404, "No task named 'nope'")
    refused = client.patch("/api/tasks/process_error_logs/", json={"enabled": False}, headers=bearer(settings, "7"))
    assert (refused.status_code, refused.json()["detail"]) == (403, "staff only")


def test_runs_by_either_name(client: Client) -> None:
    queued = client.post("/api/tasks/process-error-logs/run/")
    assert queued.status_code == 202 and queued.json()["task"] == "process_error_logs"
    for name in ("process-error-logs", "process_error_logs"):
        runs = client.get(f"/api/tasks/runs/?task={name}").json()
        assert [r["id"] for r in runs["results"]] == [queued.json()["run_id"]]


def _wait_for_minute_past(moment: float) -> None:
    """Sleep until a little after the first whole minute after `moment` (wall clock)."""
    time.sleep(max(0.0, 60 - moment % 60 + 3 - (time.time() - moment)))


@pytest.mark.slow
def test_the_running_worker_follows_changes_within_a_minute(
    client: Client, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, redis_url, WORKER_METRICS_PORT="0", ANALYTICS_LOG_LEVEL="INFO")
    log = tmp_path / "worker.log"

    def scheduled_runs(task: str, after: datetime | None = None) -> list[datetime]:
        found = rows(
            database_url,
            "SELECT started_at FROM task_runs WHERE task_name = %s AND trigger = 'schedule' "
            "AND started_at > coalesce(%s::timestamptz, '-infinity') ORDER BY started_at",
            task,
            after,
        )
        return [started for (started,) in found]

    def quiet_through_next_minute(worker: Any, since: float, after: datetime) -> None:
        """Across the next whole minute after `since`, the worker checked its periodic tasks (refresh_rollups runs
        every minute) and process_error_logs did not run."""
        marker = datetime.fromtimestamp(since, UTC)
        _wait_for_minute_past(since)
        until(lambda: scheduled_runs("refresh_rollups", marker), worker, log, seconds=30)
        assert scheduled_runs("process_error_logs", after) == []

    with running(["worker"], env, log) as worker:
        until(lambda: "consuming queue" in log.read_text(), worker, log, seconds=30)
        # Changed while the worker runs: due every minute from now on (its default is every 10 minutes).
        assert client.patch("/api/tasks/process-error-logs/", json={"schedule": "* * * * *"}).status_code == 200
        [first] = until(lambda: scheduled_runs("process_error_logs"), worker, log, seconds=75)
        # Switched off while it runs: no run at the next minute.
        assert client.patch("/api/tasks/process_error_logs/", json={"enabled": False}).status_code == 200
        quiet_through_next_minute(worker, time.time(), first)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    # A new worker reads the stored change.
    with running(["worker"], env, log) as worker:
        until(lambda: log.read_text().count("consuming queue") == 2, worker, log, seconds=30)
        quiet_through_next_minute(worker, time.time(), first)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    task = client.get("/api/tasks/process-error-logs/").json()
    assert (task["schedule"], task["enabled"], task["enabled_source"]) == ("* * * * *", False, "api")

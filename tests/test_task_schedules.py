"""Schedules managed at runtime: `PATCH /api/tasks/{name}/` stores a schedule or switches a task off (the stored
change wins over TASK_SCHEDULES / TASKS_DISABLED), both documented names of a task are taken by every route, and a
running `analytics worker` (a real huey consumer) follows a change at the next whole minute, across a restart too.

The precedence function and the name lookup have their unit tests in tests/test_tasks.py."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from tests.processes import running, service_env, until
from tests.support import bearer, rows, staff_client

Client = TestClient[Any]
STORED = "SELECT task_name, schedule, enabled, changed_by, changed_at FROM task_schedules ORDER BY task_name"


def test_patch_stores_the_change_and_null_returns_to_the_configuration(client: Client, database_url: str) -> None:
    before = datetime.now(UTC)
    changed = client.patch("/api/tasks/update-daily-analytics/", json={"schedule": "*/5 * * * *"})
    assert changed.status_code == 200, changed.text
    task = changed.json()
    assert set(task) == {
        "name", "schedule_name", "description", "schedule", "default_schedule", "schedule_source", "enabled",
        "enabled_source", "next_run", "changed_by", "changed_at", "last_run",
    }  # fmt: skip
    assert (task["name"], task["schedule_name"]) == ("update_daily_analytics", "update-daily-analytics")
    assert task["description"].startswith("Today's (and yesterday's, until final) DailyAnalytics row")
    assert (task["schedule"], task["default_schedule"], task["schedule_source"]) == (
        "*/5 * * * *", "*/30 * * * *", "api"
    )  # fmt: skip
    assert (task["enabled"], task["enabled_source"], task["changed_by"], task["last_run"]) == (
        True, "default", "1", None
    )  # fmt: skip
    next_run = datetime.fromisoformat(task["next_run"])
    assert next_run.minute % 5 == 0 and next_run.second == 0 and before < next_run <= before + timedelta(minutes=5)
    [(name, schedule, enabled, by, at)] = rows(database_url, STORED)
    assert (name, schedule, enabled, by) == ("update_daily_analytics", "*/5 * * * *", None, "1")
    assert datetime.fromisoformat(task["changed_at"]) == at and before - timedelta(seconds=5) < at

    off = client.patch("/api/tasks/update_daily_analytics/", json={"enabled": False}).json()
    assert (off["schedule"], off["schedule_source"], off["enabled"], off["enabled_source"], off["next_run"]) == (
        "*/5 * * * *", "api", False, "api", None
    )  # fmt: skip
    assert rows(database_url, STORED)[0][1:4] == ("*/5 * * * *", False, "1")  # the schedule was kept
    listed = {t["name"]: t for t in client.get("/api/tasks/").json()}
    assert listed["update_daily_analytics"] == off
    assert client.get("/api/tasks/update-daily-analytics/").json() == off
    assert client.get("/api/tasks/update_daily_analytics/").json() == off
    untouched = listed["update_user_analytics"]
    assert (untouched["schedule_source"], untouched["enabled_source"]) == ("default", "default")
    assert (untouched["changed_by"], untouched["changed_at"]) == (None, None)

    schedule_back = client.patch("/api/tasks/update-daily-analytics/", json={"schedule": None}).json()
    assert (schedule_back["schedule"], schedule_back["schedule_source"], schedule_back["enabled"]) == (
        "*/30 * * * *", "default", False
    )  # fmt: skip
    back = client.patch("/api/tasks/update-daily-analytics/", json={"enabled": None}).json()
    assert (back["schedule"], back["schedule_source"], back["enabled"], back["enabled_source"]) == (
        "*/30 * * * *", "default", True, "default"
    )  # fmt: skip
    assert back["changed_by"] == "1" and back["changed_at"] is not None  # the last change is kept on record
    assert rows(database_url, STORED)[0][1:4] == (None, None, "1")


def test_null_returns_to_task_schedules_and_tasks_disabled(
    database_url: str, redis_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(
        database_url, redis_url, TASK_SCHEDULES="process-error-logs=0 * * * *", TASKS_DISABLED="process_error_logs"
    )
    with staff_client(settings) as client:
        configured = client.get("/api/tasks/process_error_logs/").json()
        assert (configured["schedule"], configured["schedule_source"]) == ("0 * * * *", "environment")
        assert (configured["enabled"], configured["enabled_source"], configured["next_run"]) == (
            False, "environment", None
        )  # fmt: skip
        changed = client.patch("/api/tasks/process_error_logs/", json={"schedule": "*/2 * * * *", "enabled": True})
        assert changed.json()["schedule"] == "*/2 * * * *" and changed.json()["enabled"] is True
        assert changed.json()["next_run"] is not None
        back = client.patch("/api/tasks/process_error_logs/", json={"schedule": None, "enabled": None}).json()
    assert (back["schedule"], back["schedule_source"], back["enabled"], back["enabled_source"]) == (
        "0 * * * *", "environment", False, "environment"
    )  # fmt: skip


def test_a_service_token_is_recorded_by_its_name(client: Client, settings: Settings, database_url: str) -> None:
    service = bearer(settings, "platform-backend", service=True, staff=True)
    changed = client.patch("/api/tasks/refresh-rollups/", json={"enabled": False}, headers=service)
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed_by"] == "platform-backend"
    assert [r[:4] for r in rows(database_url, STORED)] == [("refresh_rollups", None, False, "platform-backend")]
    # The next change records its own author and time.
    again = client.patch("/api/tasks/refresh_rollups/", json={"schedule": "*/3 * * * *"}).json()
    assert (again["changed_by"], again["enabled"], again["schedule"]) == ("1", False, "*/3 * * * *")
    assert again["changed_at"] >= changed.json()["changed_at"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"schedule": "every minute"},
         [("schedule", "expected 5 cron fields (minute hour day month weekday), got 'every minute'")]),
        ({"schedule": ""}, [("schedule", "expected 5 cron fields (minute hour day month weekday), got ''")]),
        ({"schedule": "61 * * * *"}, [("schedule", "61 is not a valid input")]),
        ({"schedule": "*/0 * * * *"}, [("schedule", "slice step cannot be zero")]),
        ({"schedule": 5}, [("schedule", "Expected `str | null`, got `int`")]),
        ({"schedule": "1," * 150 + "1 * * * *"}, [("schedule", "Expected `str` of length <= 200")]),
        ({"enabled": "no"}, [("enabled", "Expected `bool | null`, got `str`")]),
        ({"enabled": 0}, [("enabled", "Expected `bool | null`, got `int`")]),
        ({"cron": "* * * * *"}, [("cron", "unknown field")]),
        ({"enabled": False, "task_name": "x"}, [("task_name", "unknown field")]),
        ({}, [("schedule", "send `schedule` and/or `enabled`"), ("enabled", "send `schedule` and/or `enabled`")]),
        ([], [("body", "Expected `object`, got `array`")]),
    ],
)  # fmt: skip
def test_bad_changes_are_400s_naming_the_field(
    client: Client, database_url: str, body: Any, errors: list[tuple[str, str]]
) -> None:
    response = client.patch("/api/tasks/process_error_logs/", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "Invalid input"
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == errors
    assert rows(database_url, "SELECT count(*)::int FROM task_schedules") == [(0,)]


def test_unknown_tasks_are_404s_and_users_403s(client: Client, settings: Settings, database_url: str) -> None:
    paths = (("GET", "nope/"), ("PATCH", "nope/"), ("POST", "nope/run/"), ("GET", "update_daily-analytics/"))
    for method, path in paths:
        response = client.request(method, f"/api/tasks/{path}", json={"enabled": False})
        name = path.split("/")[0]
        assert (response.status_code, response.json()["detail"]) == (404, f"No task named {name!r}"), path
    for headers in (bearer(settings, "7"), bearer(settings, "backend", service=True)):
        refused = client.patch("/api/tasks/process_error_logs/", json={"enabled": False}, headers=headers)
        assert (refused.status_code, refused.json()["detail"]) == (403, "staff only")
    assert rows(database_url, "SELECT count(*)::int FROM task_schedules") == [(0,)]


def test_runs_by_either_name(client: Client) -> None:
    queued = client.post("/api/tasks/process-error-logs/run/")
    assert queued.status_code == 202 and queued.json()["task"] == "process_error_logs"
    other = client.post("/api/tasks/refresh_rollups/run/").json()
    for name in ("process-error-logs", "process_error_logs"):
        runs = client.get("/api/tasks/runs/", params={"task": name}).json()
        assert [r["id"] for r in runs["results"]] == [queued.json()["run_id"]]
    assert client.get("/api/tasks/runs/", params={"task": "nope"}).json() == {"count": 0, "results": []}
    assert {r["id"] for r in client.get("/api/tasks/runs/").json()["results"]} == {
        queued.json()["run_id"], other["run_id"]
    }  # fmt: skip
    for bad in ("process_error_logs\x00", "x" * 101, "\u00e9" * 5000):
        refused = client.get("/api/tasks/runs/", params={"task": bad})
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["task"]


@pytest.mark.slow
def test_the_running_worker_follows_changes_within_a_minute(
    client: Client, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, redis_url, WORKER_METRICS_PORT="0", ANALYTICS_LOG_LEVEL="INFO")
    log = tmp_path / "worker.log"

    def scheduled_runs(task: str, after: datetime, finished: bool = False) -> list[datetime]:
        found = rows(
            database_url,
            "SELECT started_at FROM task_runs WHERE task_name = %s AND trigger = 'schedule' AND started_at > %s "
            "AND (NOT %s OR finished_at IS NOT NULL) ORDER BY started_at",
            task, after, finished,
        )  # fmt: skip
        return [started for (started,) in found]

    start = datetime.now(UTC)
    with running(["worker"], env, log) as worker:
        until(lambda: "consuming queue" in log.read_text(), worker, log, seconds=30)
        # Changed while the worker runs: due every minute from now on (its default is every 10 minutes), so it
        # runs at the next whole minute.
        assert client.patch("/api/tasks/process-error-logs/", json={"schedule": "* * * * *"}).status_code == 200
        [first] = until(lambda: scheduled_runs("process_error_logs", start), worker, log, seconds=70)
        assert first.second < 10  # at the whole minute
        assert client.patch("/api/tasks/process_error_logs/", json={"enabled": False}).status_code == 200
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) is not None
    # A new worker reads the stored change: across its first whole minute (refresh_rollups, due every minute,
    # proves it checked its periodic tasks, after process_error_logs in the queue) the disabled task does not run.
    with running(["worker"], env, log) as worker:
        until(lambda: log.read_text().count("consuming queue") == 2, worker, log, seconds=30)
        restarted = datetime.now(UTC)
        until(lambda: scheduled_runs("refresh_rollups", restarted, finished=True), worker, log, seconds=70)
        assert scheduled_runs("process_error_logs", first) == []
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    task = client.get("/api/tasks/process-error-logs/").json()
    assert (task["schedule"], task["schedule_source"], task["enabled"], task["enabled_source"]) == (
        "* * * * *", "api", False, "api"
    )  # fmt: skip
    assert task["last_run"]["trigger"] == "schedule" and task["next_run"] is None

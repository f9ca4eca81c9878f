"""The periodic tasks: names and schedules of the seed (DESIGN.md section 9), overrides (TASK_SCHEDULES,
TASKS_DISABLED, and changes stored through the API, which win), and what a task gets.

A task is a plain function `(TaskContext) -> dict` (the summary stored with its run) living beside the
domain it works on; `service/tasks/worker.py` wraps each one for huey with a lock and a run record.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import redis
from huey import crontab

from service.core.db import Engine
from service.core.settings import Settings


@dataclass(frozen=True)
class TaskContext:
    """What a task run works with: one database connection (the task commits), Redis, and the clock."""

    settings: Settings
    conn: psycopg.Connection[Any]
    redis: redis.Redis
    engine: Engine
    now: datetime


TaskFunction = Callable[[TaskContext], dict[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A periodic task: its seed name, default schedule (cron: minute hour day month weekday) and function."""

    name: str
    schedule: str
    function: str  # "module:attribute", imported when the task runs
    description: str

    def load(self) -> TaskFunction:
        module, _, attribute = self.function.partition(":")
        function: TaskFunction = getattr(importlib.import_module(module), attribute)
        return function


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("update_daily_analytics", "*/30 * * * *", "service.snapshots.daily:update_daily_analytics",
             "Today's (and yesterday's, until final) DailyAnalytics row, every field"),
    TaskSpec("update_user_analytics", "0 * * * *", "service.snapshots.users:update_user_analytics",
             "UserAnalytics rows of the users active today, every field"),
    TaskSpec("update_community_analytics", "*/15 * * * *", "service.community.presence:update_community_analytics",
             "Average and peak online members per community and day, from Redis"),
    TaskSpec("process_geo_restriction_analytics", "*/20 * * * *", "service.geo.processing:process_geo_restrictions",
             "Traveler and bypass processing, per-community geo summaries"),
    TaskSpec("update_system_metrics", "*/15 * * * *", "service.system_metrics.collect:update_system_metrics",
             "CPU, memory, disk, load, database, Redis and stream figures as system metrics"),
    TaskSpec("cleanup_old_analytics", "0 2 * * *", "service.storage.retention:cleanup_old_analytics",
             "Applies the retention periods to raw data and rollups"),
    TaskSpec("generate_analytics_reports", "0 3 * * *", "service.reports.generate:generate_analytics_reports",
             "The platform report of the previous day"),
    TaskSpec("generate_community_reports", "30 3 * * *", "service.reports.generate:generate_community_reports",
             "A report per community active the previous day"),
    TaskSpec("generate_geo_effectiveness_reports", "0 4 * * *",
             "service.reports.generate:generate_geo_effectiveness_reports",
             "Geo-restriction effectiveness per community for the previous day"),
    TaskSpec("process_error_logs", "*/10 * * * *", "service.errorlog.grouping:process_error_logs",
             "Groups new error logs, updates counts and last seen, marks regressions"),
    TaskSpec("cleanup_resolved_error_logs", "30 4 * * *", "service.errorlog.grouping:cleanup_resolved_error_logs",
             "Deletes resolved error logs older than the configured age"),
    TaskSpec("cleanup_redis_analytics", "0 5 * * *", "service.live.state:cleanup_redis_analytics",
             "Removes expired live keys and trims acknowledged stream entries"),
    TaskSpec("refresh_rollups", "* * * * *", "service.storage.rollups:refresh_task",
             "Sessions and (postgres engine) rollup tables from the newly ingested data"),
)  # fmt: skip
BY_NAME = {spec.name: spec for spec in TASKS}


def schedule_name(name: str) -> str:
    """The documentation's schedule-entry name of a task: `update_daily_analytics` -> `update-daily-analytics`."""
    return name.replace("_", "-")


def lookup(name: str) -> TaskSpec | None:
    """The task named either way the documentation names it (its function or its schedule entry), if any."""
    return BY_NAME.get(name.replace("-", "_")) if "_" not in name or "-" not in name else None


def parse_cron(expression: str) -> Callable[[datetime], bool]:
    """A five-field cron expression as huey's crontab test; ValueError when it is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 cron fields (minute hour day month weekday), got {expression!r}")
    minute, hour, day, month, weekday = fields
    test: Callable[[datetime], bool] = crontab(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, strict=True
    )
    return test


def quarter_hour(now: datetime) -> datetime:
    """The start of the quarter hour holding `now`: the sample slot of the quarter-hourly tasks."""
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)


def next_run(expression: str, after: datetime, horizon: timedelta = timedelta(days=32)) -> datetime | None:
    """The first whole minute after `after` (UTC) that the schedule matches, if any within `horizon`."""
    test = parse_cron(expression)
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = moment + horizon
    while moment < end:
        if test(moment.replace(tzinfo=None)):
            return moment
        moment += timedelta(minutes=1)
    return None


Source = Literal["default", "environment", "api"]


@dataclass(frozen=True)
class Stored:
    """A change made through `PATCH /api/tasks/{name}/` (a row of `task_schedules`); None: not set there."""

    schedule: str | None
    enabled: bool | None
    changed_by: str
    changed_at: datetime


STORED_SQL = "SELECT task_name, schedule, enabled, changed_by, changed_at FROM task_schedules"


def stored_changes(rows: Iterable[tuple[Any, ...]]) -> dict[str, Stored]:
    """STORED_SQL's rows by task name."""
    return {name: Stored(schedule, enabled, by, at) for name, schedule, enabled, by, at in rows}


@dataclass(frozen=True)
class Planned:
    """A task as it runs: its schedule and whether it runs periodically, each with where it came from."""

    spec: TaskSpec
    schedule: str
    schedule_source: Source
    enabled: bool
    enabled_source: Source
    stored: Stored | None = None


def planned(settings: Settings, stored: Mapping[str, Stored] | None = None) -> list[Planned]:
    """Every task's plan: a change stored through the API wins over TASK_SCHEDULES / TASKS_DISABLED, which win
    over the default schedule (enabled)."""
    overrides = settings.task_schedules()
    disabled = settings.disabled_tasks()
    plans = []
    for spec in TASKS:
        change = (stored or {}).get(spec.name)
        schedule: tuple[str, Source] = (spec.schedule, "default")
        if spec.name in overrides:
            schedule = (overrides[spec.name], "environment")
        if change is not None and change.schedule is not None:
            schedule = (change.schedule, "api")
        enabled: tuple[bool, Source] = (False, "environment") if spec.name in disabled else (True, "default")
        if change is not None and change.enabled is not None:
            enabled = (change.enabled, "api")
        plans.append(Planned(spec, schedule[0], schedule[1], enabled[0], enabled[1], change))
    return plans

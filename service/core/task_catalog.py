"""The periodic tasks by name: the seed's names and default schedules (DESIGN.md section 9) and the function that
does each one's work.

A task is a plain function `(TaskContext) -> dict` (the summary stored with its run) living beside the domain it
works on, named here by its import path so that this table needs none of them; `service/tasks/worker.py` wraps
each one for huey with a lock and a run record, and `service/tasks/schedule.py` says when it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    """A periodic task: its seed name, default schedule (cron: minute hour day month weekday) and function."""

    name: str
    schedule: str
    function: str  # "module:attribute", imported when the task runs
    description: str
    annotate_failures: bool = False  # a failed run marks the dashboards (an annotation region while it fails)

    def load(self) -> Callable[..., dict[str, Any]]:
        """The task's function, `(TaskContext) -> dict` (service/core/task_context.py)."""
        module, _, attribute = self.function.partition(":")
        function: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), attribute)
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
    TaskSpec("cleanup_redis_analytics", "0 5 * * *", "service.live.cleanup:cleanup_redis_analytics",
             "Removes expired live keys and trims acknowledged stream entries"),
    TaskSpec("refresh_rollups", "* * * * *", "service.storage.rollups:refresh_task",
             "Sessions and (postgres engine) rollup tables from the newly ingested data", annotate_failures=True),
)  # fmt: skip
BY_NAME = {spec.name: spec for spec in TASKS}


def schedule_name(name: str) -> str:
    """The documentation's schedule-entry name of a task: `update_daily_analytics` -> `update-daily-analytics`."""
    return name.replace("_", "-")


def lookup(name: str) -> TaskSpec | None:
    """The task named either way the documentation names it (its function or its schedule entry), if any."""
    return BY_NAME.get(name.replace("-", "_")) if "_" not in name or "-" not in name else None

"""Where each task's plan comes from: the default schedule (service/core/task_catalog.py), TASK_SCHEDULES and
TASKS_DISABLED, and changes stored through the API (`task_schedules`), which win."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.core.settings import Settings
from service.core.task_catalog import TASKS, TaskSpec

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

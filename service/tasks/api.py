"""`/api/tasks/`: the periodic tasks (schedule, next and last run), changing a schedule at runtime, running one
now, and the runs recorded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
import redis
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import Meta

from service.annotations.store import note_schedule_change
from service.auth.guards import principal_of, staff_only
from service.core.cron import next_run, parse_cron
from service.core.errors import FieldError, InvalidInput, NotFound
from service.core.listing import decode_body, sent_fields
from service.core.openapi import json_body
from service.core.task_catalog import TaskSpec, lookup, schedule_name
from service.tasks.schedule import STORED_SQL, Source, planned, stored_changes
from service.web.resources import Resources


class Run(msgspec.Struct):
    id: int
    task_name: str
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    details: dict[str, Any]


class Task(msgspec.Struct):
    """A periodic task as it runs now. Its two documented names: `name` (the function, `update_daily_analytics`)
    and `schedule_name` (the schedule entry, `update-daily-analytics`); routes take either."""

    name: str
    schedule_name: str
    description: str
    schedule: str  # cron, UTC: the stored change, else TASK_SCHEDULES, else the default
    default_schedule: str
    schedule_source: Source
    enabled: bool
    enabled_source: Source
    next_run: datetime | None  # None when disabled
    changed_by: str | None  # who last changed it through the API (a user's id, `7`; a service's name), and when
    changed_at: datetime | None
    last_run: Run | None


class TaskChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`PATCH /api/tasks/{name}/`: a new schedule and/or whether it runs on it; null returns that value to the
    configuration (TASK_SCHEDULES / TASKS_DISABLED, else the default)."""

    schedule: (
        Annotated[str, Meta(max_length=200, description="cron: minute hour day month weekday, UTC")]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET
    enabled: bool | msgspec.UnsetType | None = msgspec.UNSET


class RunQueued(msgspec.Struct):
    run_id: int
    task: str
    status: str


class RunPage(msgspec.Struct):
    count: int
    results: list[Run]


_LAST_RUNS = """
SELECT DISTINCT ON (task_name) id, task_name, status, trigger, started_at, finished_at, error, details
FROM task_runs ORDER BY task_name, started_at DESC, id DESC
"""
_RUNS = """
SELECT id, task_name, status, trigger, started_at, finished_at, error, details, count(*) OVER ()
FROM task_runs
WHERE (%(task)s::text IS NULL OR task_name = %(task)s) AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

log = logging.getLogger(__name__)
AnyRequest = Request[Any, Any, Any]
RunStatus = Literal["queued", "running", "success", "failure", "skipped"]

# A PATCH sets what it sends and keeps the other value; it records who changed the task and when.
_CHANGE = """
INSERT INTO task_schedules (task_name, schedule, enabled, changed_by)
VALUES (%(name)s, %(schedule)s, %(enabled)s, %(by)s)
ON CONFLICT (task_name) DO UPDATE SET
    schedule = CASE WHEN %(set_schedule)s THEN excluded.schedule ELSE task_schedules.schedule END,
    enabled = CASE WHEN %(set_enabled)s THEN excluded.enabled ELSE task_schedules.enabled END,
    changed_by = excluded.changed_by, changed_at = now()
"""


def _spec(name: str) -> TaskSpec:
    """The task named either way, or a 404 naming it."""
    spec = lookup(name)
    if spec is None:
        raise NotFound(f"No task named {name!r}")
    return spec


async def _tasks(resources: Resources, only: str | None = None) -> list[Task]:
    """Every task as it runs now (or the one named `only`), with its last run."""
    async with resources.pool.connection() as conn:
        cur = await conn.execute(_LAST_RUNS)
        last = {row[1]: Run(*row) for row in await cur.fetchall()}
        cur = await conn.execute(STORED_SQL)
        stored = stored_changes(await cur.fetchall())
    now = datetime.now(UTC)
    return [
        Task(
            name=p.spec.name,
            schedule_name=schedule_name(p.spec.name),
            description=p.spec.description,
            schedule=p.schedule,
            default_schedule=p.spec.schedule,
            schedule_source=p.schedule_source,
            enabled=p.enabled,
            enabled_source=p.enabled_source,
            next_run=next_run(p.schedule, now) if p.enabled else None,
            changed_by=p.stored.changed_by if p.stored else None,
            changed_at=p.stored.changed_at if p.stored else None,
            last_run=last.get(p.spec.name),
        )
        for p in planned(resources.settings, stored)
        if only is None or p.spec.name == only  # next_run walks the minutes ahead: only for what is asked
    ]


class TasksController(Controller):
    """Periodic tasks as configured, and their runs."""

    path = "/api/tasks"
    tags = ["tasks"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [staff_only]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Every task: schedule, enabled, next run, last run and its status")
    async def list_tasks(self, resources: NamedDependency[Resources]) -> list[Task]:
        return await _tasks(resources)

    @get("/{name:str}/", summary="One task (by `update_daily_analytics` or `update-daily-analytics`)")
    async def get_task(self, name: FromPath[str], resources: NamedDependency[Resources]) -> Task:
        spec = _spec(name)
        [task] = await _tasks(resources, only=spec.name)
        return task

    @patch(
        "/{name:str}/",
        summary="Change a task's schedule or switch it off (stored; the running worker follows within a minute)",
        operation_class=json_body(TaskChange, "`schedule` (cron) and/or `enabled`; null returns to the configuration"),
    )
    async def change_task(
        self, name: FromPath[str], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> Task:
        spec = _spec(name)
        change = decode_body(await request.body(), TaskChange)
        sent = sent_fields(change)
        if not sent:
            raise InvalidInput([FieldError(f, "send `schedule` and/or `enabled`") for f in ("schedule", "enabled")])
        if isinstance(change.schedule, str):
            try:
                parse_cron(change.schedule)
            except ValueError as exc:
                raise InvalidInput([FieldError("schedule", str(exc))]) from None
        by = principal_of(request).subject
        params = {
            "name": spec.name, "schedule": sent.get("schedule"), "enabled": sent.get("enabled"),
            "set_schedule": "schedule" in sent, "set_enabled": "enabled" in sent, "by": by,
        }  # fmt: skip
        async with resources.pool.connection() as conn:  # one transaction: the change and its annotation
            await conn.execute(_CHANGE, params)
            await note_schedule_change(conn, spec.name, sent, by)
        log.info("task %s changed by %s: %s", spec.name, by, sent)
        [task] = await _tasks(resources, only=spec.name)
        return task

    @post("/{name:str}/run/", status_code=HTTP_202_ACCEPTED, summary="Run a task now (queued for the worker)")
    async def run(self, name: FromPath[str], resources: NamedDependency[Resources]) -> RunQueued:
        name = _spec(name).name
        async with resources.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO task_runs (task_name, status, trigger) VALUES (%s, 'queued', 'manual') RETURNING id",
                (name,),
            )
            row = await cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        try:  # huey's client is synchronous: keep it off the event loop
            await anyio.to_thread.run_sync(resources.queue.enqueue, name, run_id)
        except redis.RedisError:
            async with resources.pool.connection() as conn:
                await conn.execute(
                    "UPDATE task_runs SET status = 'failure', finished_at = now(), error = %s WHERE id = %s",
                    ("could not be queued: Redis is unavailable", run_id),
                )
            raise
        return RunQueued(run_id=run_id, task=name, status="queued")

    @get("/runs/", summary="Recorded runs, newest first")
    async def runs(
        self,
        resources: NamedDependency[Resources],
        task: Annotated[
            str | None,
            QueryParameter(max_length=100, description="`update_daily_analytics` or `update-daily-analytics`"),
        ] = None,
        status: FromQuery[RunStatus | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=10_000_000)] = 0,
    ) -> RunPage:
        spec = lookup(task) if task is not None else None
        task = spec.name if spec is not None else task  # either documented name filters the same runs
        params = {"task": task, "status": status, "since": since, "until": until, "limit": limit, "offset": offset}
        async with resources.pool.connection() as conn:
            cur = await conn.execute(_RUNS, params)
            rows = await cur.fetchall()
        return RunPage(count=int(rows[0][-1]) if rows else 0, results=[Run(*row[:-1]) for row in rows])

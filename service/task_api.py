"""`/api/tasks/`: the periodic tasks (schedule, next and last run), running one now, and the runs recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
import redis
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from service.auth.guards import staff_only
from service.errors import NotFound
from service.resources import Resources
from service.scheduling import BY_NAME, next_run, planned


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
    name: str
    description: str
    schedule: str  # cron, UTC, after TASK_SCHEDULES
    default_schedule: str
    enabled: bool
    next_run: datetime | None  # None when disabled
    last_run: Run | None


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

RunStatus = Literal["queued", "running", "success", "failure", "skipped"]


class TasksController(Controller):
    """Periodic tasks as configured, and their runs."""

    path = "/api/tasks"
    tags = ["tasks"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [staff_only]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Every task: schedule, enabled, next run, last run and its status")
    async def list_tasks(self, resources: NamedDependency[Resources]) -> list[Task]:
        async with resources.pool.connection() as conn:
            cur = await conn.execute(_LAST_RUNS)
            last = {row[1]: Run(*row) for row in await cur.fetchall()}
        now = datetime.now(UTC)
        return [
            Task(
                name=p.spec.name,
                description=p.spec.description,
                schedule=p.schedule,
                default_schedule=p.spec.schedule,
                enabled=p.enabled,
                next_run=next_run(p.schedule, now) if p.enabled else None,
                last_run=last.get(p.spec.name),
            )
            for p in planned(resources.settings)
        ]

    @post("/{name:str}/run/", status_code=HTTP_202_ACCEPTED, summary="Run a task now (queued for the worker)")
    async def run(self, name: FromPath[str], resources: NamedDependency[Resources]) -> RunQueued:
        if name not in BY_NAME:
            raise NotFound(f"No task named {name!r}")
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
        task: FromQuery[str | None] = None,
        status: FromQuery[RunStatus | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=10_000_000)] = 0,
    ) -> RunPage:
        params = {"task": task, "status": status, "since": since, "until": until, "limit": limit, "offset": offset}
        async with resources.pool.connection() as conn:
            cur = await conn.execute(_RUNS, params)
            rows = await cur.fetchall()
        return RunPage(count=int(rows[0][-1]) if rows else 0, results=[Run(*row[:-1]) for row in rows])

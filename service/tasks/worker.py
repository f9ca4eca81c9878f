"""The huey instance on Redis, the periodic tasks registered on it, and running one task under a lock.

Each run of a task, on its schedule or asked for through the API, goes through `execute`: it takes the task's
lock in Redis (two runs of one task never overlap; the lock lives 60 s and a heartbeat renews it while the run
lives, so a crashed run frees its task within a minute), records
the run in `task_runs` (started, finished, status, error, the summary the task returns), and counts it in
Prometheus. Only one `analytics worker` should schedule the periodic tasks (start more with `--no-periodic`);
it checks them at each whole minute against the plan reloaded from PostgreSQL (`ScheduleBook`), so schedules
changed through the API are followed within a minute. A worker opens its PostgreSQL connections (one per
thread) and its Redis client once, when it starts (`TaskResources`), and every run uses them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import msgspec
import psycopg
from huey import RedisHuey
from huey.consumer import Consumer, Scheduler
from psycopg.types.json import Jsonb

from service.annotations.store import note_refresh_failure
from service.core.cron import parse_cron
from service.core.db import detect_engine, sync_pool
from service.core.errors import REDIS_ERRORS, first_line
from service.core.settings import Settings
from service.core.task_catalog import BY_NAME, TASKS
from service.core.task_context import TaskContext
from service.live.client import SyncRedis, sync_client
from service.observability.metrics import TASK_DURATION, TASK_LAST_SUCCESS, TASK_RUNS
from service.tasks.schedule import STORED_SQL, planned, stored_changes

log = logging.getLogger(__name__)

LOCK_PREFIX = "analytics:task-lock:"
LOCK_TTL = 60  # seconds; renewed every LOCK_TTL / 3 while the run lives, so a dead run frees its task quickly
# Delete the lock only if it is still ours (it may have expired and been taken by another run meanwhile).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _Lock:
    """The task's lock in Redis for the duration of a run, kept alive by a heartbeat thread."""

    def __init__(self, client: SyncRedis, name: str) -> None:
        self.client, self.key, self.token = client, LOCK_PREFIX + name, uuid4().hex
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, ex=LOCK_TTL):
            return False
        self._beat = threading.Thread(target=self._renew, name=f"lock {self.key}", daemon=True)
        self._beat.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_TTL / 3):
            try:
                self.client.eval(_RENEW, 1, self.key, self.token, LOCK_TTL)
            except REDIS_ERRORS as exc:  # the next beat tries again; the lock outlives one missed beat
                log.warning("could not renew %s: %s", self.key, exc)

    def __exit__(self, *exc: object) -> None:
        if self._beat is not None:
            self._stop.set()
            self._beat.join()
            self.client.eval(_RELEASE, 1, self.key, self.token)


@dataclass(frozen=True)
class Outcome:
    """How one run ended."""

    run_id: int
    status: str  # success, failure or skipped
    details: dict[str, Any]
    error: str | None = None


class TaskResources:
    """What a task worker process holds open for its runs, from its start to its stop: a pool with one connection
    per worker thread (autocommit: each task commits its own transactions) and one Redis client (thread-safe)."""

    def __init__(self, settings: Settings, threads: int = 1) -> None:
        assert settings.database_url is not None and settings.redis_url is not None
        self.pool = sync_pool(settings, settings.database_url, name="tasks", autocommit=True, size=threads)
        self.redis = sync_client(settings)
        self.pool.open(wait=True, timeout=max(settings.db_wait, settings.db_timeout))

    def close(self) -> None:
        self.pool.close()
        self.redis.close()

    @classmethod
    @contextmanager
    def opened(cls, settings: Settings, threads: int = 1) -> Iterator[TaskResources]:
        held = cls(settings, threads)
        try:
            yield held
        finally:
            held.close()


def execute(
    settings: Settings,
    name: str,
    run_id: int | None = None,
    now: datetime | None = None,
    held: TaskResources | None = None,
) -> Outcome:
    """Run task `name` once under its lock and record the run (a queued one when `run_id` is given), with the
    worker's open resources (`held`), or with ones opened for this run alone."""
    if held is None:
        with TaskResources.opened(settings) as opened:
            return execute(settings, name, run_id, now, opened)
    spec = BY_NAME[name]
    started = time.perf_counter()
    with held.pool.connection() as conn:
        run_id = _start(conn, name, run_id)
        try:
            with _Lock(held.redis, name) as locked:
                if not locked:
                    outcome = Outcome(run_id, "skipped", {}, "another run of this task is in progress")
                else:
                    context = TaskContext(settings, conn, held.redis, detect_engine(conn), now or datetime.now(UTC))
                    outcome = Outcome(run_id, "success", spec.load()(context))
        except Exception as exc:
            log.exception("task %s failed", name)
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            outcome = Outcome(run_id, "failure", {}, f"{type(exc).__name__}: {exc}".strip())
            if spec.annotate_failures:
                _annotate(conn, name, outcome.error or "failed")
        conn.execute(
            "UPDATE task_runs SET status = %s, finished_at = greatest(now(), started_at), error = %s, "
            "details = %s WHERE id = %s",
            (outcome.status, outcome.error, Jsonb(msgspec.to_builtins(outcome.details)), run_id),
        )
    TASK_RUNS.labels(name, outcome.status).inc()
    TASK_DURATION.labels(name).observe(time.perf_counter() - started)
    if outcome.status == "success":
        TASK_LAST_SUCCESS.labels(name).set(time.time())
    log.info("task %s run %s: %s %s", name, outcome.run_id, outcome.status, outcome.error or outcome.details)
    return outcome


def _annotate(conn: psycopg.Connection[Any], name: str, error: str) -> None:
    """Mark the failure on the dashboards; the run is recorded whether or not the mark could be written."""
    try:
        note_refresh_failure(conn, error)
    except psycopg.Error as exc:
        log.warning("task %s: the failure could not be annotated (%s)", name, first_line(exc))
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()


def _start(conn: psycopg.Connection[Any], name: str, run_id: int | None) -> int:
    if run_id is None:
        row = conn.execute(
            "INSERT INTO task_runs (task_name, status) VALUES (%s, 'running') RETURNING id", (name,)
        ).fetchone()
    else:
        row = conn.execute(
            "UPDATE task_runs SET status = 'running', started_at = now() WHERE id = %s AND task_name = %s RETURNING id",
            (run_id, name),
        ).fetchone()
    if row is None:
        raise LookupError(f"no queued run {run_id} of task {name}")
    return int(row[0])


@dataclass(frozen=True)
class TaskQueue:
    """The huey instance and the task that runs a queued run."""

    huey: RedisHuey
    run_task: Any  # huey TaskWrapper: run_task(name, run_id) enqueues

    def enqueue(self, name: str, run_id: int) -> None:
        self.run_task(name, run_id)


class ScheduleBook:
    """The plan the worker's scheduler follows: every task's effective schedule and whether it is enabled
    (service.tasks.schedule.planned), reloaded from `task_schedules` when asked (once per periodic check), so a change
    made through the API is followed without a restart. A failed reload keeps the last plan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.plans = {plan.spec.name: plan for plan in planned(settings)}
        self._tests: dict[str, Callable[[datetime], bool]] = {}

    def reload(self) -> None:
        """The plan again, with the changes stored now (each changed task logged); on a database error, a warning
        and the last plan."""
        assert self.settings.database_url is not None
        try:
            with psycopg.connect(self.settings.database_url, connect_timeout=5) as conn:
                stored = stored_changes(conn.execute(STORED_SQL).fetchall())
        except psycopg.Error as exc:
            log.warning("could not reload the task schedules (%s); keeping the last ones", first_line(exc))
            return
        plans = {plan.spec.name: plan for plan in planned(self.settings, stored)}
        for name, plan in plans.items():
            was = self.plans.get(name)
            if was is None or (was.schedule, was.enabled) != (plan.schedule, plan.enabled):
                log.info(
                    "task %s: schedule %r (%s), %s (%s)", name, plan.schedule, plan.schedule_source,
                    "enabled" if plan.enabled else "disabled", plan.enabled_source,
                )  # fmt: skip
        self.plans = plans

    def due(self, name: str, moment: datetime) -> bool:
        """Whether task `name` runs at `moment` (naive UTC, as huey's scheduler gives it)."""
        plan = self.plans[name]
        if not plan.enabled:
            return False
        test = self._tests.get(plan.schedule)
        if test is None:
            try:
                test = self._tests[plan.schedule] = parse_cron(plan.schedule)
            except ValueError as exc:  # a row written past the API: this task waits, the others still run
                log.warning("task %s: schedule %r is not valid (%s); not run", name, plan.schedule, exc)
                return False
        return test(moment)


def create_queue(
    settings: Settings,
    immediate: bool = False,
    book: ScheduleBook | None = None,
    held: TaskResources | None = None,
) -> TaskQueue:
    """The huey instance with every task registered as periodic, due when `book` says so (by default the
    configured plan, never reloaded), and `run_task` for runs asked for by hand; `immediate=True` runs tasks
    in-process (tests). The runs use the worker's open resources (`held`), else each opens its own."""
    if settings.redis_url is None or settings.database_url is None:
        raise ValueError("REDIS_URL and DATABASE_URL must be set to create the task queue")
    huey = RedisHuey("analytics", url=settings.task_redis_url, immediate=immediate, utc=True)
    book = book or ScheduleBook(settings)
    for spec in TASKS:
        _register(huey, settings, spec.name, book, held)

    @huey.task(name="run_task")  # type: ignore[untyped-decorator]
    def run_task(name: str, run_id: int) -> str:
        return execute(settings, name, run_id, held=held).status

    return TaskQueue(huey, run_task)


def _register(huey: RedisHuey, settings: Settings, name: str, book: ScheduleBook, held: TaskResources | None) -> None:
    def run() -> str:
        return execute(settings, name, held=held).status

    def due(moment: datetime) -> bool:
        return book.due(name, moment)

    run.__name__ = name
    huey.periodic_task(due, name=name)(run)


def _next_minute() -> float:
    """The monotonic time of the next whole wall-clock minute (a little after it)."""
    return time.monotonic() + 60.0 - time.time() % 60.0 + 0.05


class MinuteScheduler(Scheduler):  # type: ignore[misc]
    """huey's scheduler, checking periodic tasks at each whole wall-clock minute (huey checks every 60 s from
    the consumer's start) and reloading the schedule book before each check, once per minute."""

    def __init__(self, book: ScheduleBook, **options: Any) -> None:
        super().__init__(**options)
        self.book = book
        self._next_periodic = _next_minute()
        self._checked: datetime | None = None

    def enqueue_periodic_tasks(self, now: datetime | None) -> None:
        minute = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
        if minute != self._checked:  # never twice in one minute, whatever the clocks do
            self._checked = minute
            self.book.reload()
            super().enqueue_periodic_tasks(minute)
        self._next_periodic = _next_minute()


class BookConsumer(Consumer):  # type: ignore[misc]
    """huey's consumer with a MinuteScheduler following `book`."""

    def __init__(self, huey: RedisHuey, book: ScheduleBook, **options: Any) -> None:
        self.book = book
        super().__init__(huey, **options)

    def _create_scheduler(self) -> MinuteScheduler:
        return MinuteScheduler(
            self.book,
            huey=self.huey,
            stop_flag=self.stop_flag,
            interval=self.scheduler_interval,
            periodic=self.periodic,
        )


def close_interrupted_runs(settings: Settings) -> int:
    """Runs left 'running' whose lock is gone (their worker died) are recorded as failures; how many."""
    assert settings.database_url is not None and settings.redis_url is not None
    client = sync_client(settings)
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            running = conn.execute("SELECT id, task_name FROM task_runs WHERE status = 'running'").fetchall()
            dead = [run_id for run_id, name in running if not client.exists(LOCK_PREFIX + name)]
            if dead:
                conn.execute(
                    "UPDATE task_runs SET status = 'failure', finished_at = greatest(now(), started_at), "
                    "error = 'interrupted: the worker stopped during the run' WHERE id = ANY(%s)",
                    (dead,),
                )
    finally:
        client.close()
    return len(dead)


def run_worker(settings: Settings, workers: int = 2, periodic: bool = True) -> None:
    """Run the huey consumer until SIGINT (finish running tasks) or SIGTERM (stop now)."""
    if interrupted := close_interrupted_runs(settings):
        log.warning("recorded %d runs interrupted by a stopped worker as failures", interrupted)
    book = ScheduleBook(settings)
    book.reload()
    with TaskResources.opened(settings, threads=workers) as held:  # one connection per worker thread, kept
        huey = create_queue(settings, book=book, held=held).huey
        log.info("huey worker consuming queue %r with %d threads (periodic tasks: %s)", huey.name, workers, periodic)
        BookConsumer(huey, book, workers=workers, worker_type="thread", periodic=periodic, flush_locks=True).run()

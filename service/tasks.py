"""The huey instance on Redis, its periodic tasks, and the `analytics worker` consumer that runs them."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg
from huey import RedisHuey, crontab

from service.db import detect_engine
from service.rollups import refresh
from service.settings import Settings

log = logging.getLogger(__name__)


def create_huey(settings: Settings, immediate: bool = False) -> RedisHuey:
    """One huey instance for these settings with every task registered; `immediate=True` runs tasks in-process."""
    if settings.redis_url is None or settings.database_url is None:
        raise ValueError("REDIS_URL and DATABASE_URL must be set to create the task queue")
    huey = RedisHuey("analytics", url=settings.redis_url, immediate=immediate, utc=True)
    database_url = settings.database_url

    @huey.periodic_task(crontab(minute="*"), name="refresh_rollups")  # type: ignore[untyped-decorator]
    def refresh_rollups() -> dict[str, Any]:
        """Bring sessions (and the postgres engine's rollup twins) up to date with what was ingested."""
        with psycopg.connect(database_url) as conn:
            done = refresh(conn, detect_engine(conn))
        log.info("refresh_rollups: %s", done)
        return msgspec.to_builtins(done)  # type: ignore[no-any-return]

    return huey


def run_worker(settings: Settings, workers: int = 2) -> None:
    """Run the huey consumer until SIGINT (finish running tasks) or SIGTERM (stop now)."""
    huey = create_huey(settings)
    log.info("huey worker consuming queue %r with %d threads", huey.name, workers)
    huey.create_consumer(workers=workers, worker_type="thread", periodic=True, flush_locks=True).run()

"""The huey instance on Redis and the `analytics worker` consumer that runs its tasks."""

from __future__ import annotations

import logging

from huey import RedisHuey

from service.settings import Settings

log = logging.getLogger(__name__)


def create_huey(settings: Settings, immediate: bool = False) -> RedisHuey:
    """One huey instance for these settings; `immediate=True` runs tasks in-process (tests)."""
    if settings.redis_url is None:
        raise ValueError("REDIS_URL must be set to create the task queue")
    return RedisHuey("analytics", url=settings.redis_url, immediate=immediate, utc=True)


def run_worker(settings: Settings, workers: int = 2) -> None:
    """Run the huey consumer until SIGINT (finish running tasks) or SIGTERM (stop now)."""
    huey = create_huey(settings)
    # Periodic tasks are registered here by the tasks issue; until then the consumer runs an empty schedule.
    log.info("huey worker consuming queue %r with %d threads", huey.name, workers)
    huey.create_consumer(workers=workers, worker_type="thread", periodic=True, flush_locks=True).run()

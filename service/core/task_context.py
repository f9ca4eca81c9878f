"""What a periodic task's function gets, and its type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import redis
from redis.cluster import RedisCluster

from service.core.db import Engine
from service.core.settings import Settings


@dataclass(frozen=True)
class TaskContext:
    """What a task run works with: one database connection (the task commits), Redis, and the clock."""

    settings: Settings
    conn: psycopg.Connection[Any]
    redis: redis.Redis | RedisCluster  # the live state's Redis (a cluster with REDIS_CLUSTER)
    engine: Engine
    now: datetime


TaskFunction = Callable[[TaskContext], dict[str, Any]]

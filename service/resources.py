"""What one API process holds open (pool, Redis client, engine), and the dependency that hands it out."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from service.db import Engine
from service.migrations import SqlFile
from service.settings import Settings


@dataclass(frozen=True)
class Resources:
    """What one API process holds open: opened in the lifespan, handed to handlers by `provide_resources`."""

    settings: Settings
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    engine: Engine
    schema: list[SqlFile]  # the migrations and rollups this engine should have applied


def provide_resources(state: State) -> Resources:
    """Dependency: the process's open resources."""
    resources: Resources = state.resources
    return resources

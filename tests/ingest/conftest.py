"""Ingest fixtures: workers on the test database and Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import redis
from psycopg_pool import ConnectionPool

from service.core.db import sync_pool
from service.core.settings import Settings
from service.ingest.worker import IngestWorker

MakeWorker = Callable[..., IngestWorker]


@pytest.fixture
def make_worker(settings: Settings) -> Iterator[MakeWorker]:
    """`make_worker(consumer="w1", settings=...)`: IngestWorkers sharing the test's database and Redis."""
    opened: list[tuple[ConnectionPool, redis.Redis]] = []

    def make(consumer: str = "test-worker", settings: Settings = settings) -> IngestWorker:
        assert settings.database_url and settings.redis_url
        pool = sync_pool(settings, settings.database_url)
        pool.open()
        client = redis.Redis.from_url(settings.redis_url)
        opened.append((pool, client))
        worker = IngestWorker(settings, pool, client, consumer, threading.Event())
        worker.ensure_group()
        return worker

    yield make
    for pool, client in opened:
        pool.close()
        client.close()

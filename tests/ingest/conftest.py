"""Ingest fixtures: workers on the test database and Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from psycopg_pool import ConnectionPool

from service.core.db import sync_pool
from service.core.settings import Settings
from service.ingest.worker import IngestWorker
from service.live.client import SyncRedis, sync_client

MakeWorker = Callable[..., IngestWorker]


@pytest.fixture
def make_worker(settings: Settings) -> Iterator[MakeWorker]:
    """`make_worker(consumer="w1", settings=...)`: IngestWorkers sharing the test's database and Redis (a
    cluster's too, with REDIS_CLUSTER in the settings)."""
    opened: list[tuple[ConnectionPool, SyncRedis]] = []

    def make(consumer: str = "test-worker", settings: Settings = settings) -> IngestWorker:
        assert settings.database_url and settings.redis_url
        pool = sync_pool(settings, settings.database_url)
        pool.open()
        client = sync_client(settings)
        opened.append((pool, client))
        worker = IngestWorker(settings, pool, client, consumer, threading.Event())
        worker.ensure_group()
        return worker

    yield make
    for pool, client in opened:
        pool.close()
        client.close()

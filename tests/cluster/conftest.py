"""A real 3-master Redis Cluster (the system's redis-server, `redis-cli --cluster create`), started once per run,
and settings that point the service at it, with a plain Redis beside it for the task queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.core.settings import Settings
from service.tools.localstack import RedisClusterNodes, ensure_binaries
from tests.conftest import emptied, settings_for
from tests.ingest.conftest import make_worker

__all__ = ["make_worker"]  # the ingest workers' fixture, here on the cluster's settings


@pytest.fixture(scope="session")
def redis_cluster(scratch_dir: Path) -> Iterator[RedisClusterNodes]:
    ensure_binaries(install=False)
    nodes = RedisClusterNodes(scratch_dir, masters=3, appendonly=False)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def redis_url(redis_cluster: RedisClusterNodes) -> str:
    """The cluster (any node's URL), every master emptied for this test (overrides the single Redis)."""
    for node in redis_cluster.nodes:
        client = redis.Redis.from_url(node.url)
        try:
            client.flushall()
        finally:
            client.close()
    return redis_cluster.url


@pytest.fixture
def task_redis_url(redis_server_url: str) -> str:
    """The plain Redis of the task queue, emptied for this test."""
    return emptied(redis_server_url)


@pytest.fixture
def settings(database_url: str, redis_url: str, task_redis_url: str) -> Settings:
    """The service on the cluster (12 shards, the default there) and the test's database."""
    return settings_for(database_url, redis_url, REDIS_CLUSTER="true", TASK_REDIS_URL=task_redis_url)

"""The Redis clients of live state: a single Redis, or a Redis Cluster (REDIS_CLUSTER), and its shard layout.

The cluster clients discover every node from the one in REDIS_URL and follow the slots as they move. Without
replicas, a master that is down takes its slots with it: only the shards whose hash slots it serves fail, so
the cluster must run with `cluster-require-full-coverage no` for the other masters to keep answering.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import msgspec
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from service.core.errors import first_line
from service.core.settings import Settings
from service.live.keys import Shards, shards

SyncRedis: TypeAlias = redis.Redis | RedisCluster
AsyncRedis: TypeAlias = aioredis.Redis | AsyncRedisCluster


def layout(settings: Settings) -> Shards:
    """The ingest shards these settings ask for."""
    return shards(settings.ingest_shards, settings.redis_cluster)


def async_client(settings: Settings, url: str | None = None, **options: Any) -> AsyncRedis:
    """A client of the live Redis (`url`: another node of it) for an API process."""
    url = url or settings.redis_url
    assert url is not None
    timeout = settings.redis_timeout
    if settings.redis_cluster:
        return AsyncRedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **options)
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **options)


async def prepare(client: AsyncRedis) -> None:
    """Read a cluster's slot map before the client is used by concurrent tasks: redis-py's async cluster client
    reads it on first use, and first uses racing each other can cut connections from under one another."""
    if isinstance(client, AsyncRedisCluster):
        await client.initialize()


def sync_client(settings: Settings) -> SyncRedis:
    """A client of the live Redis for a worker process (thread-safe)."""
    assert settings.redis_url is not None
    read = settings.redis_timeout + 5
    connect = settings.redis_timeout
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, socket_timeout=read, socket_connect_timeout=connect)
    return redis.Redis.from_url(settings.redis_url, socket_timeout=read, socket_connect_timeout=connect)


def used_memory(client: SyncRedis) -> int:
    """Bytes the live Redis holds: of every master, on a cluster."""
    if isinstance(client, RedisCluster):
        replies: Any = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(info["used_memory"]) for info in replies.values())
    return int(client.info("memory")["used_memory"])


class Master(msgspec.Struct, omit_defaults=True):
    """One master of the live Redis Cluster as `/ready` shows it."""

    address: str  # host:port
    slots: list[str]  # its hash slot ranges, e.g. "0-5460"
    up: bool
    error: str | None = None


async def cluster_masters(client: AsyncRedisCluster, ping_timeout: float) -> list[Master]:
    """Every master the client knows, its slot ranges and whether it answers PING within `ping_timeout` s."""
    await client.initialize()  # the slot map, read from any node that answers (nothing more once it has one)
    owners: dict[str, list[int]] = {}
    for slot, nodes in client.nodes_manager.slots_cache.items():
        owners.setdefault(nodes[0].name, []).append(slot)
    primaries = client.get_primaries()

    async def ping(node: Any) -> str | None:
        try:
            await asyncio.wait_for(client.ping(target_nodes=node), ping_timeout)
        except Exception as exc:  # noqa: BLE001 - the answer of the check
            return first_line(exc) or type(exc).__name__
        return None

    errors = await asyncio.gather(*(ping(node) for node in primaries))
    return [
        Master(node.name, _ranges(sorted(owners.get(node.name, []))), error is None, error)
        for node, error in sorted(zip(primaries, errors, strict=True), key=lambda item: item[0].name)
    ]


def _ranges(slots: list[int]) -> list[str]:
    """[0, 1, 2, 7] -> ["0-2", "7"]."""
    ranges: list[str] = []
    start = previous = None
    for slot in [*slots, None]:
        if slot is not None and previous is not None and slot == previous + 1:
            previous = slot
            continue
        if start is not None:
            ranges.append(f"{start}-{previous}" if previous != start else str(start))
        start = previous = slot
    return ranges

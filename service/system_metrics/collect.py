"""The periodic task `update_system_metrics`: the host, PostgreSQL, Redis and the stream, sampled per slot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import psutil
from psycopg.types.json import Jsonb

from service.core.errors import REDIS_ERRORS
from service.core.task_context import TaskContext
from service.core.windows import quarter_hour
from service.live.client import layout, used_memory
from service.live.stream import stream_backlog
from service.observability.metrics import SYSTEM_METRIC
from service.storage.rollups import record_invalidation

_DATABASE = """
SELECT pg_database_size(current_database()),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
"""


def sample(context: TaskContext) -> dict[str, tuple[float, dict[str, Any]]]:
    """metric_type -> (value, additional data) right now."""
    memory = psutil.virtual_memory()
    disk_path = Path(context.settings.data_dir) if Path(context.settings.data_dir).exists() else Path("/")
    disk = shutil.disk_usage(disk_path)
    load1, load5, load15 = os.getloadavg()
    row = context.conn.execute(_DATABASE).fetchone()
    assert row is not None
    try:
        redis_memory = float(used_memory(context.redis))
        backlog, pending = stream_backlog(context.redis, layout(context.settings))
        redis_ok = True
    except REDIS_ERRORS:
        redis_memory, backlog, pending, redis_ok = 0.0, 0, 0, False
    return {
        "cpu_usage": (psutil.cpu_percent(interval=0.5), {"cores": psutil.cpu_count()}),
        "memory_usage": (memory.percent, {"total_bytes": memory.total, "available_bytes": memory.available}),
        "disk_usage": (round(100 * disk.used / disk.total, 2), {"path": str(disk_path), "free_bytes": disk.free}),
        "load_average": (load1, {"load5": load5, "load15": load15}),
        "database_size_bytes": (float(row[0]), {}),
        "database_connections": (float(row[1]), {}),
        "redis_memory_bytes": (redis_memory, {"reachable": redis_ok}),
        "stream_backlog": (float(backlog), {"pending": pending, "unit": "stream entries"}),
    }


def update_system_metrics(context: TaskContext) -> dict[str, Any]:
    """Write one sample per metric in the current quarter-hour slot (a rerun replaces the slot's sample)."""
    slot = quarter_hour(context.now)
    values = sample(context)
    with context.conn.transaction():
        context.conn.execute(
            "DELETE FROM system_metrics WHERE recorded_at = %s AND metric_type = ANY(%s)", (slot, list(values))
        )
        context.conn.cursor().executemany(
            "INSERT INTO system_metrics (metric_type, value, additional_data, recorded_at) VALUES (%s, %s, %s, %s)",
            [(name, value, Jsonb(extra), slot) for name, (value, extra) in values.items()],
        )
        record_invalidation(context.conn, "system_metrics", [slot])
    for name, (value, _) in values.items():
        SYSTEM_METRIC.labels(name).set(value)
    return {"slot": slot.isoformat(), **{name: value for name, (value, _) in values.items()}}

"""The periodic task `cleanup_old_analytics`: the retention periods applied on both engines.

Raw events and metrics are kept RETENTION_RAW_DAYS, rollups, sessions and presence RETENTION_ROLLUP_DAYS.
On timescaledb the hypertables and continuous aggregates get retention policies (chunks are dropped by
TimescaleDB's scheduler; raw chunks are kept at least 36 days there, beyond the aggregates' refresh window); on
postgres, and for the plain tables of both engines, old rows are deleted here in
bounded batches, each its own transaction, so the task never holds long locks or a huge transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import sql

from service.core.task_context import TaskContext

BATCH = 10_000
TIMESCALE_MIN_RAW_DAYS = 36  # one day beyond the refresh policies' start_offset in db/continuous_aggregates/

# (table, time column): raw data, kept RETENTION_RAW_DAYS.
RAW = [("activity_events", "time"), ("geo_access_events", "time"), ("system_metrics", "recorded_at")]
# Derived data, kept RETENTION_ROLLUP_DAYS. The *_mat tables exist on the postgres engine only.
ROLLUP_TABLES = [
    ("activity_hourly_mat", "bucket"), ("activity_daily_mat", "bucket"), ("community_members_daily_mat", "bucket"),
    ("geo_hourly_mat", "bucket"), ("geo_daily_mat", "bucket"), ("system_metrics_hourly_mat", "bucket"),
]  # fmt: skip
PLAIN = [
    ("sessions", "started_at"), ("community_presence_samples", "slot"), ("task_runs", "started_at"),
    ("rollup_invalidations", "created_at"),
]  # fmt: skip
CONTINUOUS_AGGREGATES = [
    "activity_hourly", "activity_daily", "community_members_daily", "geo_hourly", "geo_daily", "system_metrics_hourly",
]  # fmt: skip

_DELETE_BATCH = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s))
"""
_POLICY = """
SELECT config->>'drop_after' FROM timescaledb_information.jobs
WHERE proc_name = 'policy_retention' AND hypertable_name = %s
"""


def delete_before(context: TaskContext, table: str, column: str, cutoff: Any) -> int:
    """Delete the rows of `table` older than `cutoff`, BATCH rows per transaction; how many went."""
    statement = sql.SQL(_DELETE_BATCH).format(table=sql.Identifier(table), column=sql.Identifier(column))
    deleted = 0
    while True:
        with context.conn.transaction():
            count = context.conn.execute(statement, (cutoff, BATCH)).rowcount
        deleted += count
        if count < BATCH:
            return deleted


def ensure_policy(context: TaskContext, relation: str, days: int) -> str:
    """A retention policy dropping `relation`'s chunks older than `days` (replaced when the period changed)."""
    interval = timedelta(days=days)
    row = context.conn.execute(_POLICY, (relation,)).fetchone()
    if row is not None and row[0] in (f"{days} days", str(interval)):
        return "kept"
    with context.conn.transaction():
        if row is not None:
            context.conn.execute("SELECT remove_retention_policy(%s)", (relation,))
        context.conn.execute("SELECT add_retention_policy(%s, drop_after => %s)", (relation, interval))
    return "set"


def cleanup_old_analytics(context: TaskContext) -> dict[str, Any]:
    """Apply the retention periods; the summary says what was deleted or which policies were set."""
    raw_cutoff = context.now - timedelta(days=context.settings.retention_raw_days)
    rollup_cutoff = context.now - timedelta(days=context.settings.retention_rollup_days)
    summary: dict[str, Any] = {"raw_before": raw_cutoff.isoformat(), "rollups_before": rollup_cutoff.isoformat()}
    if context.engine == "timescaledb":
        # Raw chunks outlive the continuous aggregates' refresh window (35 days): a refresh over dropped chunks
        # would empty those buckets.
        raw_days = max(context.settings.retention_raw_days, TIMESCALE_MIN_RAW_DAYS)
        for table, _ in RAW:
            summary[table] = ensure_policy(context, table, raw_days)
        for view in CONTINUOUS_AGGREGATES:
            summary[view] = ensure_policy(context, view, context.settings.retention_rollup_days)
    else:
        for table, column in RAW:
            summary[table] = delete_before(context, table, column, raw_cutoff)
        for table, column in ROLLUP_TABLES:
            summary[table] = delete_before(context, table, column, rollup_cutoff)
    for table, column in PLAIN:
        summary[table] = delete_before(context, table, column, rollup_cutoff)
    for table in ("community_presence_daily", "sessions_daily"):
        summary[table] = delete_before(context, table, "day", rollup_cutoff.date())
    return summary

"""Refreshing what is derived from the raw tables: sessions (both engines) and the rollup twins (postgres).

Writers of raw rows record the time range of each batch in `rollup_invalidations` (`record_invalidation`).
A refresh consumes those ranges: it rebuilds the sessions of every member active in them (and the per-day sums
of the days they changed, `sessions_daily`); on the postgres engine it recomputes the rollup buckets they touch,
then materializes every rollup up to its last complete bucket and moves its watermark; then it brings today's
community figures up to date (`storage/today.py`). On timescaledb the continuous aggregates refresh themselves
(policies); only sessions and today's figures are built here. Refreshing twice changes nothing; concurrent
refreshes skip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from service.core.db import Engine
from service.core.errors import first_line
from service.core.task_context import TaskContext
from service.storage.buckets import Range, floor, merge
from service.storage.today import refresh_today

log = logging.getLogger(__name__)

SESSION_GAP = timedelta(minutes=30)  # a member's visit ends after 30 minutes without activity
_LOCK_ID = 0x726F6C6C7570  # "rollup"

# Rebuild the sessions of the members active in [lo, hi]: delete their sessions that come within the gap of that
# range, then split all their events over the range and those sessions again on gaps longer than the limit.
# Sessions further away are untouched by the new events, so the result equals a full recomputation. Returns the
# (community, day) pairs whose visits changed: the days of the visits deleted and of those written.
_SESSIONS = """
WITH members AS (
    SELECT DISTINCT user_id, community_id
    FROM activity_events
    WHERE time >= %(lo)s AND time <= %(hi)s AND user_id IS NOT NULL
), old AS (
    DELETE FROM sessions s
    USING members m
    WHERE s.user_id = m.user_id AND s.community_id IS NOT DISTINCT FROM m.community_id
      AND s.ended_at >= %(lo)s - %(gap)s AND s.started_at <= %(hi)s + %(gap)s
    RETURNING s.user_id, s.community_id, s.started_at, s.ended_at
), spans AS (
    SELECT m.user_id, m.community_id,
           least(%(lo)s, min(o.started_at)) AS lo, greatest(%(hi)s, max(o.ended_at)) AS hi
    FROM members m
    LEFT JOIN old o ON o.user_id = m.user_id AND o.community_id IS NOT DISTINCT FROM m.community_id
    GROUP BY m.user_id, m.community_id
), marked AS (
    SELECT e.user_id, e.community_id, e.time,
           CASE WHEN e.time - lag(e.time) OVER w > %(gap)s THEN 1 ELSE 0 END AS starts_new
    FROM spans x
    JOIN activity_events e
      ON e.user_id = x.user_id AND e.community_id IS NOT DISTINCT FROM x.community_id
     AND e.time >= x.lo AND e.time <= x.hi
    WINDOW w AS (PARTITION BY e.user_id, e.community_id ORDER BY e.time)
), numbered AS (
    SELECT user_id, community_id, time,
           sum(starts_new) OVER (PARTITION BY user_id, community_id ORDER BY time) AS visit
    FROM marked
), inserted AS (
    INSERT INTO sessions (user_id, community_id, started_at, ended_at, events)
    SELECT user_id, community_id, min(time), max(time), count(*)
    FROM numbered
    GROUP BY user_id, community_id, visit
    RETURNING community_id, started_at
)
SELECT community_id, (started_at AT TIME ZONE 'UTC')::date FROM inserted WHERE community_id IS NOT NULL
UNION
SELECT community_id, (started_at AT TIME ZONE 'UTC')::date FROM old WHERE community_id IS NOT NULL
"""

# The visits of these (community, day) pairs changed: their sums in sessions_daily are made again from `sessions`
# (a pair left without visits loses its row).
_DAYS_GONE = """
DELETE FROM sessions_daily d
USING unnest(%(communities)s::bigint[], %(days)s::date[]) AS t(community_id, day)
WHERE d.community_id = t.community_id AND d.day = t.day
"""
_DAYS = """
INSERT INTO sessions_daily (community_id, day, sessions, duration_seconds)
SELECT t.community_id, t.day, count(*), sum(extract(epoch FROM s.ended_at - s.started_at))
FROM unnest(%(communities)s::bigint[], %(days)s::date[]) AS t(community_id, day)
JOIN sessions s
  ON s.community_id = t.community_id
 AND s.started_at >= t.day::timestamp AT TIME ZONE 'UTC' AND s.started_at < (t.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY t.community_id, t.day
"""


@dataclass
class Refreshed:
    """What one refresh did, for logs and task-run details."""

    skipped: bool = False
    invalidations: int = 0
    session_ranges: int = 0
    buckets: dict[str, int] = field(default_factory=dict)  # rollup -> buckets rewritten
    failed: dict[str, str] = field(default_factory=dict)  # sessions or rollup -> why its refresh failed


class RefreshFailed(Exception):
    """Some rollups could not be refreshed (the others were); the task run is recorded as a failure."""


def record_invalidation(conn: psycopg.Connection[Any], source: str, times: Iterable[datetime]) -> None:
    """Note that raw rows of `source` were written at `times`, in the writer's transaction: one range per run of
    consecutive hours, so one back-dated event does not make the refresh recompute everything in between."""
    # Hours since the epoch: the hour buckets (ORIGIN is a whole hour), for a few hundred ns an event.
    hours = sorted({int(t.timestamp() // 3600) for t in times})
    if not hours:
        return
    runs: list[list[int]] = []
    for hour in hours:
        if runs and hour - runs[-1][-1] <= 1:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    conn.cursor().executemany(
        "INSERT INTO rollup_invalidations (source, lo, hi) VALUES (%s, %s, %s)",
        [
            (source, datetime.fromtimestamp(run[0] * 3600, UTC),
             datetime.fromtimestamp((run[-1] + 1) * 3600, UTC) - timedelta(microseconds=1))
            for run in runs
        ],
    )  # fmt: skip


def refresh(conn: psycopg.Connection[Any], engine: Engine, now: datetime | None = None) -> Refreshed:
    """Consume the invalidation log and bring sessions (and, on postgres, the rollups) up to date.

    Sessions and each rollup refresh in a transaction of their own, so that one failing (a bad value, a lock
    timeout) cannot hold back the others: its watermark stays, the invalidations of its source stay in the log for
    the next run, and `failed` names it. The others move on.
    """
    now = now or datetime.now(UTC)
    done = Refreshed()
    locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()
    if not locked or not locked[0]:
        done.skipped = True
        return done
    try:
        invalidations = conn.execute("SELECT id, source, lo, hi FROM rollup_invalidations").fetchall()
        by_source: dict[str, list[Range]] = {}
        for _, source, lo, hi in invalidations:
            by_source.setdefault(source, []).append((lo, hi))
        failed_sources: set[str] = set()
        activity = merge(by_source.get("activity", []), slack=SESSION_GAP)
        try:
            with conn.transaction():
                days: set[tuple[int, date]] = set()
                for lo, hi in activity:
                    days.update(conn.execute(_SESSIONS, {"lo": lo, "hi": hi, "gap": SESSION_GAP}).fetchall())
                params = {"communities": [c for c, _ in days], "days": [d for _, d in days]}
                conn.execute(_DAYS_GONE, params)
                conn.execute(_DAYS, params)
            done.session_ranges = len(activity)
        except psycopg.Error as exc:
            log.error("refreshing sessions failed: %s", first_line(exc))
            done.failed["sessions"] = first_line(exc)
            failed_sources.add("activity")
        if engine == "postgres":
            registry = conn.execute("SELECT name, width, source FROM rollup_registry ORDER BY position").fetchall()
            for name, width, source in registry:
                try:
                    with conn.transaction():
                        done.buckets[name] = _refresh_twin(conn, name, width, by_source.get(source, []), now)
                except psycopg.Error as exc:
                    log.error("refreshing %s failed: %s", name, first_line(exc))
                    done.failed[name] = first_line(exc)
                    failed_sources.add(source)
        try:  # after the hourly rollup, which it reads
            with conn.transaction():
                refresh_today(conn, now, by_source.get("activity", []))
        except psycopg.Error as exc:
            log.error("refreshing today's community figures failed: %s", first_line(exc))
            done.failed["community_today"] = first_line(exc)
            failed_sources.add("activity")  # their members are added again at the next run
        consumed = [row_id for row_id, source, _, _ in invalidations if source not in failed_sources]
        with conn.transaction():
            conn.execute("DELETE FROM rollup_invalidations WHERE id = ANY(%s)", (consumed,))
        done.invalidations = len(consumed)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return done


def _refresh_twin(
    conn: psycopg.Connection[Any], name: str, width: timedelta, changed: list[Range], now: datetime
) -> int:
    """Recompute the invalidated buckets below the watermark, then materialize up to the last complete bucket."""
    mat, between = sql.Identifier(f"{name}_mat"), sql.Identifier(f"{name}_between")
    row = conn.execute("SELECT watermark FROM rollup_watermarks WHERE name = %s", (name,)).fetchone()
    watermark: datetime | None = row[0] if row else None
    new_watermark = floor(now, width) if watermark is None else max(floor(now, width), watermark)
    rewritten = 0
    if watermark is None:  # never materialized (or redefined): everything below the new watermark
        conn.execute(sql.SQL("DELETE FROM {}").format(mat))
        cur = conn.execute(
            # In bucket order: queries read one time range, which then sits on few pages.
            sql.SQL("INSERT INTO {} SELECT * FROM {}('-infinity', %s) ORDER BY 1").format(mat, between),
            (new_watermark,),
        )
        rewritten = cur.rowcount
    else:
        ranges = [(floor(lo, width), min(floor(hi, width) + width, watermark)) for lo, hi in changed]
        if new_watermark > watermark:
            ranges.append((watermark, new_watermark))
        for lo, hi in merge(r for r in ranges if r[0] < r[1]):
            conn.execute(sql.SQL("DELETE FROM {} WHERE bucket >= %s AND bucket < %s").format(mat), (lo, hi))
            cur = conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}(%s, %s) ORDER BY 1").format(mat, between), (lo, hi)
            )
            rewritten += cur.rowcount
    conn.execute(
        "INSERT INTO rollup_watermarks (name, watermark) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark",
        (name, new_watermark),
    )
    return rewritten


def refresh_task(context: TaskContext) -> dict[str, Any]:
    """The periodic task `refresh_rollups`."""
    done = refresh(context.conn, context.engine, context.now)
    if done.failed:
        # A failed run: counted in analytics_task_runs_total{status="failure"}, alerted by AnalyticsTaskFailing.
        raise RefreshFailed("; ".join(f"{name}: {why}" for name, why in done.failed.items()))
    return {"skipped": done.skipped, "invalidations": done.invalidations, "session_ranges": done.session_ranges,
            "buckets": done.buckets}  # fmt: skip

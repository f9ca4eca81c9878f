"""Annotations written and read: the API's rows, and the ones the service writes itself (a task's schedule
changed through the API; the rollup refresh failing). Dashboards read the table through their datasource."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from service.annotations.schemas import Annotation
from service.core.listing import columns
from service.core.rows import check_failed, fetch_one, insert_statement

RETURNING = columns(Annotation)
SELECT = sql.SQL("SELECT {} FROM annotations").format(RETURNING)
ONE = sql.SQL("SELECT {} FROM annotations WHERE id = %(id)s").format(RETURNING)
DELETE = "DELETE FROM annotations WHERE id = %(id)s RETURNING id"

# Failures of the rollup refresh (it runs every minute) less than an hour apart extend one region ("failing from
# .. to ..") instead of adding a mark per failed run.
_EXTEND_REFRESH_FAILURE = """
UPDATE annotations SET time_end = greatest(time_end, now()), text = %(text)s
WHERE id = (SELECT id FROM annotations WHERE source = 'rollup-refresh' AND time_end >= now() - interval '1 hour'
            ORDER BY time DESC LIMIT 1)
RETURNING id
"""
_START_REFRESH_FAILURE = """
INSERT INTO annotations (time, time_end, text, tags, source)
VALUES (now(), now(), %(text)s, ARRAY['rollup-refresh', 'failure'], 'rollup-refresh')
"""
_SCHEDULE_CHANGED = """
INSERT INTO annotations (time, text, tags, source, created_by)
VALUES (now(), %(text)s, ARRAY['task-schedule', %(task)s], 'task-schedule', %(by)s)
"""


async def insert(conn: AsyncConnection[Any], values: dict[str, Any]) -> Annotation:
    """Store an annotation written through the API and return it."""
    try:
        row = await fetch_one(conn, Annotation, insert_statement("annotations", list(values), RETURNING), values)
    except psycopg.errors.CheckViolation as exc:
        raise check_failed(exc, "annotations") from None
    assert row is not None
    return row


async def note_schedule_change(conn: AsyncConnection[Any], task: str, change: dict[str, Any], by: str) -> None:
    """Mark a change of a task's schedule or switch (the PATCH's fields; null: back to the configuration)."""
    said = []
    if "schedule" in change:
        schedule = change["schedule"]
        said.append("schedule back to the configuration" if schedule is None else f"schedule {schedule!r}")
    if "enabled" in change:
        said.append(
            {None: "on/off back to the configuration", True: "switched on", False: "switched off"}[change["enabled"]]
        )
    text = f"Task {task}: {', '.join(said)} (changed by {by})"
    await conn.execute(_SCHEDULE_CHANGED, {"text": text[:2000], "task": task, "by": by})


def note_refresh_failure(conn: psycopg.Connection[Any], error: str) -> None:
    """Mark a failed rollup refresh: a region from the first failure of a run of them to the latest one."""
    text = f"Rollup refresh failing: {error}"[:2000]
    with conn.transaction():
        if conn.execute(_EXTEND_REFRESH_FAILURE, {"text": text}).fetchone() is None:
            conn.execute(_START_REFRESH_FAILURE, {"text": text})

"""Funnels: members of a community who did step 1, then step 2 after it, then step 3..., each within `within`
seconds of the step before (`GET /api/community-analytics/{id}/funnel/`).

Exact, from the raw events (a sequence cannot be pre-aggregated): one statement reads the community's events of
the steps' types in the window (the `(community_id, time)` index) and keeps, step by step, every event that
continues the funnel, so that a later start that fits the time limit counts when an earlier one does not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, LiteralString, get_args

from psycopg import AsyncConnection, sql

from service.core.errors import FieldError, InvalidInput
from service.core.windows import Window
from service.ingest.schemas import ActivityType

STEP_TYPES: tuple[str, ...] = get_args(ActivityType)
MIN_STEPS, MAX_STEPS = 2, 6
MAX_WITHIN = 365 * 86_400  # the longest report window, in seconds

# Step 1: every event of its type. Step k: each event of its type that some event kept at step k-1 precedes, by
# at most `within`: over the member's kept events of step k-1 and candidates of step k in time order, the latest
# kept time before the candidate (a kept event at the same instant sorts after it: strictly before).
_EVENTS: LiteralString = """
events AS MATERIALIZED (
    SELECT user_id, activity_type, time FROM activity_events
    WHERE community_id = %(community)s AND time >= %(start)s AND time < %(end)s AND user_id IS NOT NULL
      AND activity_type = ANY(%(types)s)
),
step_1 AS (SELECT user_id, time FROM events WHERE activity_type = %(step_1)s)"""
_STEP: LiteralString = """,
{step} AS (
    SELECT user_id, time FROM (
        SELECT user_id, time, kept,
               max(time) FILTER (WHERE kept) OVER (PARTITION BY user_id ORDER BY time, kept
                                                   ROWS UNBOUNDED PRECEDING) AS previous
        FROM (SELECT user_id, time, true AS kept FROM {before}
              UNION ALL
              SELECT user_id, time, false FROM events WHERE activity_type = {kind}) AS candidates
    ) AS ordered
    WHERE NOT kept AND previous >= time - %(within)s
)"""


def parse_steps(text: str) -> list[str]:
    """`view,join,post` as a list of activity types (2 to 6 of them; a type may come back), or a 400 naming
    `steps` and what is wrong."""
    steps = [part.strip() for part in text.split(",")]
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise InvalidInput(
            [FieldError("steps", f"expected {MIN_STEPS} to {MAX_STEPS} activity types, comma-separated")]
        )
    unknown = [step for step in steps if step not in STEP_TYPES]
    if unknown:
        raise InvalidInput(
            [FieldError("steps", f"unknown activity type {unknown[0]!r}; one of {', '.join(STEP_TYPES)}")]
        )
    return steps


def funnel_query(steps: int) -> sql.Composed:
    """The statement counting the members at each of `steps` steps (its text depends only on the number)."""
    ctes: list[sql.Composable] = [sql.SQL(_EVENTS)]
    for k in range(2, steps + 1):
        ctes.append(
            sql.SQL(_STEP).format(
                step=sql.Identifier(f"step_{k}"),
                before=sql.Identifier(f"step_{k - 1}"),
                kind=sql.Placeholder(f"step_{k}"),
            )
        )
    counts = sql.SQL(", ").join(
        sql.SQL("(SELECT count(DISTINCT user_id) FROM {})").format(sql.Identifier(f"step_{k}"))
        for k in range(1, steps + 1)
    )
    return sql.SQL("WITH {ctes} SELECT {counts}").format(ctes=sql.Composed(ctes), counts=counts)


async def funnel_members(
    conn: AsyncConnection[Any], community_id: int, steps: list[str], window: Window, within: int
) -> list[int]:
    """How many members reached each step, in the window."""
    params: dict[str, Any] = {
        "community": community_id, "start": window.start, "end": window.end, "types": sorted(set(steps)),
        "within": timedelta(seconds=within), **{f"step_{k}": step for k, step in enumerate(steps, start=1)},
    }  # fmt: skip
    cur = await conn.execute(funnel_query(len(steps)), params)
    row = await cur.fetchone()
    assert row is not None
    return [int(count) for count in row]

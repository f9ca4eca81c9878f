"""Fingerprints of error logs and the periodic tasks that group them and clean resolved ones up.

A fingerprint is the SHA-1 of the message with its variable parts replaced (numbers, UUIDs, hex values,
quoted strings, e-mail addresses, URLs) and the top stack frame (file and function, without the line number,
which moves with every deploy). Logs with the same fingerprint form one group; a group resolved and seen
again is marked regressed.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from service.scheduling import TaskContext

LEVELS = ["debug", "info", "warning", "error", "critical"]  # by severity
BATCH = 5_000

_VARIABLE_PARTS = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\bhttps?://\S+"), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<n>"),
]
_PYTHON_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_JS_FRAME = re.compile(r"^\s*at (\S+)(?: \(([^:)]+))?", re.M)


def template(message: str) -> str:
    """The message with its variable parts replaced: `User 42 not found` -> `User <n> not found`."""
    for pattern, replacement in _VARIABLE_PARTS:
        message = pattern.sub(replacement, message)
    return " ".join(message.split())


def top_frame(stack_trace: str | None) -> str | None:
    """Where the error was raised: the innermost Python frame, or the first JavaScript one."""
    if not stack_trace:
        return None
    python = _PYTHON_FRAME.findall(stack_trace)
    if python:
        path, function = python[-1]
        return f"{path}:{function}"
    js = _JS_FRAME.search(stack_trace)
    if js:
        return f"{js.group(2)}:{js.group(1)}" if js.group(2) else js.group(1)
    return None


def fingerprint(message: str, stack_trace: str | None) -> str:
    """The group key of an error log."""
    return hashlib.sha1(f"{template(message)}\n{top_frame(stack_trace) or ''}".encode()).hexdigest()  # noqa: S324


_UPSERT_GROUP = """
INSERT INTO error_groups (fingerprint, level, sample_message, top_frame, occurrences, first_seen, last_seen)
VALUES (%(fingerprint)s, %(level)s, %(message)s, %(frame)s, %(count)s, %(first)s, %(last)s)
ON CONFLICT (fingerprint) DO UPDATE SET
    occurrences = error_groups.occurrences + excluded.occurrences,
    first_seen = least(error_groups.first_seen, excluded.first_seen),
    last_seen = greatest(error_groups.last_seen, excluded.last_seen),
    level = CASE WHEN array_position(%(levels)s::text[], excluded.level)
                      > array_position(%(levels)s::text[], error_groups.level)
                 THEN excluded.level ELSE error_groups.level END,
    status = CASE WHEN error_groups.status = 'resolved' AND excluded.last_seen > error_groups.resolved_at
                  THEN 'regressed' ELSE error_groups.status END
RETURNING id
"""
_USERS_AFFECTED = """
UPDATE error_groups g
SET users_affected = (SELECT count(DISTINCT user_id) FROM error_logs l WHERE l.group_id = g.id)
WHERE g.id = ANY(%s)
"""


def process_error_logs(context: TaskContext) -> dict[str, Any]:
    """Group every error log not grouped yet: fingerprint it, add it to its group (created when new), update
    the group's counts, severity and last seen, and mark a resolved group seen again as regressed."""
    grouped, touched = 0, set()
    while True:
        with context.conn.transaction():
            logs = context.conn.execute(
                "SELECT id, level, message, stack_trace, created_at FROM error_logs WHERE group_id IS NULL "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (BATCH,),
            ).fetchall()
            if not logs:
                break
            by_print: dict[str, list[tuple[int, str, str, str | None, datetime]]] = defaultdict(list)
            for log in logs:
                by_print[fingerprint(log[2], log[3])].append(log)
            for key, members in by_print.items():
                level = max((m[1] for m in members), key=LEVELS.index)
                row = context.conn.execute(
                    _UPSERT_GROUP,
                    {
                        "fingerprint": key, "level": level, "message": members[0][2][:2000],
                        "frame": top_frame(members[0][3]), "count": len(members), "levels": LEVELS,
                        "first": min(m[4] for m in members), "last": max(m[4] for m in members),
                    },
                ).fetchone()  # fmt: skip
                assert row is not None
                context.conn.execute(
                    "UPDATE error_logs SET fingerprint = %s, group_id = %s WHERE id = ANY(%s)",
                    (key, row[0], [m[0] for m in members]),
                )
                touched.add(row[0])
            grouped += len(logs)
    if touched:
        context.conn.execute(_USERS_AFFECTED, (list(touched),))
    return {"logs_grouped": grouped, "groups_touched": len(touched)}


def cleanup_resolved_error_logs(context: TaskContext) -> dict[str, Any]:
    """Delete resolved error logs older than RETENTION_RESOLVED_ERRORS_DAYS (the groups keep their counts)."""
    cutoff = context.now - timedelta(days=context.settings.retention_resolved_errors_days)
    deleted = 0
    while True:
        with context.conn.transaction():
            count = context.conn.execute(
                "DELETE FROM error_logs WHERE ctid = ANY(ARRAY(SELECT ctid FROM error_logs "
                "WHERE is_resolved AND resolved_at < %s LIMIT %s))",
                (cutoff, BATCH),
            ).rowcount
        deleted += count
        if count < BATCH:
            break
    return {"deleted": deleted, "resolved_before": cutoff.isoformat()}

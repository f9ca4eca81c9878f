"""Fingerprints of error logs and the periodic tasks that group them and clean resolved ones up.

A fingerprint is the SHA-1 of the message with its variable parts replaced (numbers, UUIDs, hex values,
quoted strings, e-mail addresses, URLs) and the top stack frame (file and function, without the line number,
which moves with every deploy). Logs with the same fingerprint form one group; a group resolved and seen
again is marked regressed. Logs written through `records.record_error` are grouped as they are written, with the
same SQL; `process_error_logs` groups those inserted without a group.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from service.core.task_context import TaskContext

LEVELS = ["debug", "info", "warning", "error", "critical"]  # by severity
BATCH = 5_000
SAMPLE_LENGTH = 2_000  # characters of the first message kept as the group's sample

_VARIABLE_PARTS = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\bhttps?://\S+"), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    # Numbers (`42`, `2.5`, `10.0.0.1`), also with a unit or an id prefix (`30s`, `user_42`), but not inside a
    # word (`utf8`, `x86`, `v1.2`).
    (re.compile(r"(?<![A-Za-z0-9.])\d+(?:\.\d+)*"), "<n>"),
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


# Adds `count` occurrences to the group of `fingerprint` (created on the first): counts, first and last seen, the
# most severe level seen. A resolved group regresses when an unresolved log newer than its resolution joins it:
# `unresolved` says whether any of the logs added is unresolved, `unresolved_last` is the newest of those (NULL:
# now(), for a log stamped with the transaction's time). Used by `process_error_logs` and `records.record_error`.
UPSERT_GROUP = """
INSERT INTO error_groups (fingerprint, level, sample_message, top_frame, occurrences, first_seen, last_seen)
VALUES (%(fingerprint)s, %(level)s, %(message)s, %(frame)s, %(count)s,
        coalesce(%(first)s::timestamptz, now()), coalesce(%(last)s::timestamptz, now()))
ON CONFLICT (fingerprint) DO UPDATE SET
    occurrences = error_groups.occurrences + excluded.occurrences,
    first_seen = least(error_groups.first_seen, excluded.first_seen),
    last_seen = greatest(error_groups.last_seen, excluded.last_seen),
    level = CASE WHEN array_position(%(levels)s::text[], excluded.level)
                      > array_position(%(levels)s::text[], error_groups.level)
                 THEN excluded.level ELSE error_groups.level END,
    status = CASE WHEN error_groups.status = 'resolved' AND %(unresolved)s
                       AND coalesce(%(unresolved_last)s::timestamptz, now()) > error_groups.resolved_at
                  THEN 'regressed' ELSE error_groups.status END
RETURNING id
"""

# Writers that change several groups lock the existing ones first, in id order (a group is locked before its
# logs, as resolving it does), so two writers never wait on each other in a circle.
LOCK_GROUPS = """
SELECT id FROM error_groups WHERE id = ANY(%(ids)s::bigint[]) OR fingerprint = ANY(%(fingerprints)s::text[])
ORDER BY id FOR UPDATE
"""

# After the logs `logs` joined group `group` (sign 1; the upsert counted their occurrences, so `occurrences` is 0)
# or before they leave it (sign -1, `occurrences` minus their number): users_affected moves by the users of those
# logs who have no other log in the group. Run after the group row is locked (the upsert, or an earlier UPDATE of
# it), so concurrent writers of one group take turns and each sees the logs the previous one committed.
ADJUST_GROUP = """
UPDATE error_groups SET
    occurrences = greatest(occurrences + %(occurrences)s, 0),
    users_affected = greatest(users_affected + %(sign)s * (
        SELECT count(DISTINCT l.user_id) FROM error_logs l
        WHERE l.id = ANY(%(logs)s) AND l.user_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM error_logs o
                          WHERE o.group_id = %(group)s AND o.user_id = l.user_id AND o.id <> ALL(%(logs)s))
    ), 0)
WHERE id = %(group)s
"""


def group_params(
    key: str,
    level: str,
    message: str,
    stack_trace: str | None,
    count: int,
    first: datetime | None,
    last: datetime | None,
    unresolved: bool,
    unresolved_last: datetime | None,
) -> dict[str, Any]:
    """The parameters of UPSERT_GROUP (`first`/`last`/`unresolved_last` None: the transaction's time)."""
    return {
        "fingerprint": key, "level": level, "message": message[:SAMPLE_LENGTH], "frame": top_frame(stack_trace),
        "count": count, "first": first, "last": last, "levels": LEVELS, "unresolved": unresolved,
        "unresolved_last": unresolved_last,
    }  # fmt: skip


def joined(group_id: int, log_ids: list[int]) -> dict[str, Any]:
    """ADJUST_GROUP's parameters once `log_ids` are in the group (the upsert has counted their occurrences)."""
    return {"group": group_id, "logs": log_ids, "sign": 1, "occurrences": 0}


def leaving(group_id: int, log_ids: list[int]) -> dict[str, Any]:
    """ADJUST_GROUP's parameters for `log_ids` about to leave the group (moved elsewhere or deleted)."""
    return {"group": group_id, "logs": log_ids, "sign": -1, "occurrences": -len(log_ids)}


def process_error_logs(context: TaskContext) -> dict[str, Any]:
    """Group every error log not grouped yet: fingerprint it, add it to its group (created when new), update
    the group's counts, severity and last seen, and mark a resolved group seen again as regressed."""
    grouped, touched = 0, set()
    while True:
        with context.conn.transaction():
            logs = context.conn.execute(
                "SELECT id, level, message, stack_trace, created_at, is_resolved FROM error_logs "
                "WHERE group_id IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (BATCH,),
            ).fetchall()
            if not logs:
                break
            by_print: dict[str, list[tuple[int, str, str, str | None, datetime, bool]]] = defaultdict(list)
            for log in logs:
                by_print[fingerprint(log[2], log[3])].append(log)
            context.conn.execute(LOCK_GROUPS, {"ids": [], "fingerprints": list(by_print)})
            for key, members in by_print.items():
                open_times = [m[4] for m in members if not m[5]]
                params = group_params(
                    key, max((m[1] for m in members), key=LEVELS.index), members[0][2], members[0][3], len(members),
                    min(m[4] for m in members), max(m[4] for m in members),
                    bool(open_times), max(open_times, default=None),
                )  # fmt: skip
                row = context.conn.execute(UPSERT_GROUP, params).fetchone()
                assert row is not None
                ids = [m[0] for m in members]
                context.conn.execute(
                    "UPDATE error_logs SET fingerprint = %s, group_id = %s WHERE id = ANY(%s)", (key, row[0], ids)
                )
                context.conn.execute(ADJUST_GROUP, joined(row[0], ids))
                touched.add(row[0])
            grouped += len(logs)
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

"""The error-log data layer: recording a log into its group, editing and deleting logs with the groups' counts kept
right, and resolving logs and groups.

Every write runs in one transaction that locks the group rows it changes before counting, and before the log
rows (in id order, as resolving a group does), so concurrent writers of one group take turns and none deadlocks.
A group's `occurrences` and `users_affected` count the logs recorded into it, less those deleted or moved out
through the API; `cleanup_resolved_error_logs` keeps the counts (history). Level, first and last seen record
what was seen and do not shrink when a log leaves.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, LiteralString

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from service.core.errors import FieldError, InvalidInput, NotFound
from service.core.listing import alias_columns
from service.core.rows import fetch_one, valid_id
from service.errorlog.grouping import (
    ADJUST_GROUP,
    LOCK_GROUPS,
    UPSERT_GROUP,
    fingerprint,
    group_params,
    joined,
    leaving,
)
from service.errorlog.schemas import ErrorGroup, ErrorGroupDetail, ErrorLog, Level
from service.observability.metrics import ERRORS_LOGGED

WRITABLE = (
    "user_id", "level", "message", "stack_trace", "url", "method", "ip_address", "user_agent", "extra_data",
    "is_resolved",
)  # fmt: skip


class NewErrorLog(msgspec.Struct, kw_only=True):
    """An error log to record (`created_at` None: the transaction's time)."""

    level: Level
    message: str
    user_id: int | None = None
    stack_trace: str | None = None
    url: str | None = None
    method: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    extra_data: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: datetime | None = None
    is_resolved: bool = False


_LOG_COLUMNS = sql.SQL(", ").join(
    [
        sql.SQL(
            "id, user_id, level, message, stack_trace, url, method, host(ip_address) AS ip_address, user_agent, "
            "extra_data, created_at, is_resolved, resolved_at, fingerprint, group_id"
        ),
        *alias_columns(ErrorLog),  # `user`: the documented name of user_id
    ]
)
_GROUP_COLUMNS = sql.SQL(
    "id, fingerprint, level, sample_message, top_frame, occurrences, users_affected, first_seen, last_seen, status, "
    "resolved_at"
)


def _with_columns(template: LiteralString, columns: sql.Composable = _LOG_COLUMNS) -> sql.Composed:
    """`template` with `{columns}` replaced by a table's select list (SQL text from this module only)."""
    return sql.SQL(template).format(columns=columns)


# The list query of `/api/errors/`: `severity` orders levels by rank (`ordering=level`), not alphabetically.
LOG_LIST = _with_columns(
    "SELECT {columns} FROM (SELECT *, array_position(ARRAY['debug', 'info', 'warning', 'error', 'critical'], level) "
    "AS severity FROM error_logs) AS error_logs"
)
GROUP_LIST = _with_columns("SELECT {columns} FROM error_groups", _GROUP_COLUMNS)

_INSERT_LOG = _with_columns(
    "INSERT INTO error_logs (user_id, level, message, stack_trace, url, method, ip_address, user_agent, "
    "extra_data, created_at, is_resolved, resolved_at, fingerprint, group_id) "
    "VALUES (%(user_id)s, %(level)s, %(message)s, %(stack_trace)s, %(url)s, %(method)s, %(ip_address)s::inet, "
    "%(user_agent)s, %(extra_data)s, coalesce(%(created_at)s::timestamptz, now()), %(is_resolved)s, "
    "CASE WHEN %(is_resolved)s THEN now() END, %(fingerprint)s, %(group_id)s) "
    "RETURNING {columns}"
)
_UPDATE_LOG = _with_columns(
    "UPDATE error_logs SET user_id = %(user_id)s, level = %(level)s, message = %(message)s, "
    "stack_trace = %(stack_trace)s, url = %(url)s, method = %(method)s, ip_address = %(ip_address)s::inet, "
    "user_agent = %(user_agent)s, extra_data = %(extra_data)s, is_resolved = %(is_resolved)s, "
    "resolved_at = CASE WHEN %(is_resolved)s THEN coalesce(resolved_at, now()) END, "
    "fingerprint = %(fingerprint)s, group_id = %(group_id)s WHERE id = %(id)s RETURNING {columns}"
)
_LOCK_LOG = _with_columns("SELECT {columns} FROM error_logs WHERE id = %s FOR UPDATE")
_GET_LOG = _with_columns("SELECT {columns} FROM error_logs WHERE id = %s")
# A group left without logs by the API (every occurrence deleted or moved away) goes too.
_DROP_IF_EMPTY = (
    "DELETE FROM error_groups WHERE id = %(group)s AND occurrences = 0 "
    "AND NOT EXISTS (SELECT 1 FROM error_logs WHERE group_id = %(group)s)"
)
_SET_LOG_RESOLVED = _with_columns(
    "UPDATE error_logs SET is_resolved = %(resolved)s, "
    "resolved_at = CASE WHEN %(resolved)s THEN coalesce(resolved_at, now()) END "
    "WHERE id = %(id)s RETURNING {columns}"
)
_GET_GROUP = _with_columns("SELECT {columns} FROM error_groups WHERE id = %s", _GROUP_COLUMNS)
_RECENT_LOGS = _with_columns(
    "SELECT {columns} FROM error_logs WHERE group_id = %s ORDER BY created_at DESC, id DESC LIMIT %s"
)
# Resolving twice keeps the first resolution's time: the second call changes nothing.
_RESOLVE_GROUP = _with_columns(
    "UPDATE error_groups SET status = 'resolved', "
    "resolved_at = CASE WHEN status = 'resolved' THEN resolved_at ELSE now() END "
    "WHERE id = %s RETURNING {columns}",
    _GROUP_COLUMNS,
)
_RESOLVE_GROUP_LOGS = (
    "UPDATE error_logs SET is_resolved = true, resolved_at = now() WHERE group_id = %s AND NOT is_resolved"
)
_UNRESOLVE_GROUP = _with_columns(
    "UPDATE error_groups SET status = 'unresolved', resolved_at = NULL WHERE id = %s RETURNING {columns}",
    _GROUP_COLUMNS,
)


def ip_address(value: str | None) -> str | None:
    """`value` as PostgreSQL's `inet` stores a host address, or InvalidInput naming `ip_address`."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidInput([FieldError("ip_address", f"not an IPv4 or IPv6 address: {value!r}")]) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:  # `fe80::1%eth0`: not inet
        raise InvalidInput([FieldError("ip_address", "an IPv6 zone (`%...`) is not accepted")])
    return str(address)


def _without_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000: it becomes U+FFFD, so the log is kept rather than refused."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _row_values(values: dict[str, Any]) -> dict[str, Any]:
    """The writable fields as bound parameters: text cleaned, the address checked, the JSON wrapped."""
    clean = {name: _without_nul(values[name]) for name in WRITABLE}
    clean["ip_address"] = ip_address(clean["ip_address"])
    clean["extra_data"] = Jsonb(clean["extra_data"])
    return clean


async def _group_id(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> int:
    cur = await conn.execute(UPSERT_GROUP, params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def record_error(conn: psycopg.AsyncConnection[Any], new: NewErrorLog) -> ErrorLog:
    """Insert a log into its group (created on the first occurrence; a resolved group regresses), in one
    transaction; `ERRORS_LOGGED` counts it once that transaction is over (a savepoint in a caller's transaction)."""
    values = _row_values(msgspec.structs.asdict(new))
    key = fingerprint(values["message"], values["stack_trace"])
    async with conn.transaction():
        # The group first: its row stays locked to the end, so the user count below sees every earlier log.
        group = await _group_id(
            conn,
            group_params(
                key, values["level"], values["message"], values["stack_trace"], 1, new.created_at, new.created_at,
                not new.is_resolved, new.created_at,
            ),
        )  # fmt: skip
        log = await fetch_one(
            conn, ErrorLog, _INSERT_LOG, {**values, "created_at": new.created_at, "fingerprint": key, "group_id": group}
        )
        assert log is not None
        if log.user_id is not None:
            await conn.execute(ADJUST_GROUP, joined(group, [log.id]))
    ERRORS_LOGGED.labels(log.level).inc()
    return log


async def get_log(conn: psycopg.AsyncConnection[Any], log_id: int) -> ErrorLog:
    """One log, or NotFound."""
    log = await fetch_one(conn, ErrorLog, _GET_LOG, (valid_id(log_id, "error log"),))
    if log is None:
        raise NotFound(f"No error log {log_id}")
    return log


async def _lock(
    conn: psycopg.AsyncConnection[Any], log_id: int, changes: dict[str, Any] | None = None
) -> tuple[ErrorLog, dict[str, Any], str]:
    """Lock the log's group and the group of its fingerprint after `changes`, then the log: groups before logs,
    as resolving a group does. Returns the log as locked, its values after `changes` and their fingerprint."""
    while True:
        seen = await get_log(conn, log_id)
        values = _row_values({name: getattr(seen, name) for name in WRITABLE} | (changes or {}))
        key = fingerprint(values["message"], values["stack_trace"])
        current = [] if seen.group_id is None else [seen.group_id]
        await conn.execute(LOCK_GROUPS, {"ids": current, "fingerprints": [key]})
        log = await fetch_one(conn, ErrorLog, _LOCK_LOG, (log_id,))
        if log is None:
            raise NotFound(f"No error log {log_id}")
        if log == seen:  # nobody changed it in between: the locks held are the right ones
            return log, values, key


async def update_log(conn: psycopg.AsyncConnection[Any], log_id: int, changes: dict[str, Any]) -> ErrorLog:
    """Change the writable fields in `changes` (PUT: all of them); the log is fingerprinted again and, when its
    group changes, moves there with both groups' counts fixed."""
    async with conn.transaction():
        old, values, key = await _lock(conn, log_id, changes)
        # Out of its group, then into the (possibly same) group of its new fingerprint: the counts stay exact
        # whatever changed (user, level, message), and the same SQL as for a new log decides level and status.
        if old.group_id is not None:
            await conn.execute(ADJUST_GROUP, leaving(old.group_id, [log_id]))
        group = await _group_id(
            conn,
            group_params(
                key, values["level"], values["message"], values["stack_trace"], 1, old.created_at, old.created_at,
                not values["is_resolved"], old.created_at,
            ),
        )  # fmt: skip
        log = await fetch_one(
            conn, ErrorLog, _UPDATE_LOG, {**values, "fingerprint": key, "group_id": group, "id": log_id}
        )
        assert log is not None
        await conn.execute(ADJUST_GROUP, joined(group, [log_id]))
        if old.group_id is not None and old.group_id != group:
            await conn.execute(_DROP_IF_EMPTY, {"group": old.group_id})
    return log


async def delete_log(conn: psycopg.AsyncConnection[Any], log_id: int) -> None:
    """Delete a log and take it out of its group's counts (the group goes when nothing is left of it)."""
    async with conn.transaction():
        old, _, _ = await _lock(conn, log_id)
        if old.group_id is not None:
            await conn.execute(ADJUST_GROUP, leaving(old.group_id, [log_id]))
        await conn.execute("DELETE FROM error_logs WHERE id = %s", (log_id,))
        if old.group_id is not None:
            await conn.execute(_DROP_IF_EMPTY, {"group": old.group_id})


async def set_log_resolved(conn: psycopg.AsyncConnection[Any], log_id: int, resolved: bool) -> ErrorLog:
    """Resolve one log (resolved_at kept when it already was) or unresolve it; the group's status is untouched."""
    log = await fetch_one(
        conn, ErrorLog, _SET_LOG_RESOLVED, {"id": valid_id(log_id, "error log"), "resolved": resolved}
    )
    if log is None:
        raise NotFound(f"No error log {log_id}")
    return log


async def get_group(conn: psycopg.AsyncConnection[Any], group_id: int, recent: int) -> ErrorGroupDetail:
    """One group with its `recent` most recent logs, newest first; NotFound when there is no such group."""
    group = await fetch_one(conn, ErrorGroup, _GET_GROUP, (valid_id(group_id, "error group"),))
    if group is None:
        raise NotFound(f"No error group {group_id}")
    async with conn.cursor(row_factory=class_row(ErrorLog)) as cur:
        await cur.execute(_RECENT_LOGS, (group_id, recent))
        logs = await cur.fetchall()
    return ErrorGroupDetail(**msgspec.structs.asdict(group), recent_logs=logs)


async def set_group_resolved(conn: psycopg.AsyncConnection[Any], group_id: int, resolved: bool) -> ErrorGroup:
    """Resolve a group and every unresolved log of it (idempotent), or mark it unresolved (its logs unchanged)."""
    async with conn.transaction():
        query = _RESOLVE_GROUP if resolved else _UNRESOLVE_GROUP
        group = await fetch_one(conn, ErrorGroup, query, (valid_id(group_id, "error group"),))
        if group is None:
            raise NotFound(f"No error group {group_id}")
        if resolved:
            await conn.execute(_RESOLVE_GROUP_LOGS, (group_id,))
    return group

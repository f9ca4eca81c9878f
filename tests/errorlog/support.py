"""Helpers of the error-log tests: stack traces, and recording logs straight through the data layer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from service.errorlog.records import NewErrorLog, record_error
from service.errorlog.schemas import ErrorLog

T = TypeVar("T")


def python_trace(function: str = "get_user", path: str = "app/users.py", line: int = 12) -> str:
    """A Python traceback whose innermost frame is `path:function` at `line`."""
    return (
        "Traceback (most recent call last):\n"
        '  File "app/main.py", line 3, in handle\n    get_user(42)\n'
        f'  File "{path}", line {line}, in {function}\n    raise LookupError\n'
        "LookupError: no such user"
    )


def on_db(database_url: str, action: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run `action` on a fresh async connection (committed at the end), as the API does on a pooled one."""

    async def go() -> T:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await action(conn)

    return asyncio.run(go())


def record(database_url: str, message: str, **fields: Any) -> ErrorLog:
    """Record a log as `record_error` does for the API and the request middleware (level `error` by default)."""
    fields.setdefault("level", "error")
    fields.setdefault("stack_trace", python_trace())
    return on_db(database_url, lambda conn: record_error(conn, NewErrorLog(message=message, **fields)))

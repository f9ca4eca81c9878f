"""What every table behind the CRUD endpoints shares: the id guard, typed rows, the INSERT statement, JSON
values bound for jsonb, a failed CHECK as a 400, and the bounds of a time filter.

Table and column names reach the statements only from the callers' constants and Structs, never from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, LiteralString, TypeVar

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from service.core.errors import FieldError, InvalidInput, NotFound
from service.core.listing import BIGINT_MAX

R = TypeVar("R")
Bound = TypeVar("Bound", date, datetime)


def valid_id(row_id: int, what: str) -> int:
    """`row_id` when a row can have it; otherwise NotFound at once (no such row can exist, and PostgreSQL would
    refuse to bind the value as a bigint)."""
    if not 1 <= row_id <= BIGINT_MAX:
        raise NotFound(f"No {what} {row_id}")
    return row_id


async def fetch_one(
    conn: AsyncConnection[Any], row_type: type[R], query: LiteralString | sql.Composed, params: Any
) -> R | None:
    """The first row of `query` as a `row_type`, or None."""
    async with conn.cursor(row_factory=class_row(row_type)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


def bound(values: dict[str, Any]) -> dict[str, Any]:
    """Values as psycopg binds them: JSON values (lists, objects, Structs) wrapped for jsonb columns."""
    return {
        name: Jsonb(msgspec.to_builtins(value)) if isinstance(value, list | dict | msgspec.Struct) else value
        for name, value in values.items()
    }


def check_failed(exc: psycopg.errors.CheckViolation, table: str) -> InvalidInput:
    """A CHECK the request's Structs let through (they mirror the checks, so this is the last line): a 400
    naming the column of `<table>_<column>_check`, or the body."""
    name = exc.diag.constraint_name or ""
    field = name.removeprefix(f"{table}_").removesuffix("_check") or "body"
    return InvalidInput([FieldError(field, f"violates the check {name}")])


def insert_statement(table: LiteralString, names: Sequence[str], returning: sql.Composable) -> sql.Composed:
    """INSERT of the columns `names` (each bound by name) into `table`, returning `returning`."""
    return sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING {returning}").format(
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, names)),
        values=sql.SQL(", ").join(map(sql.Placeholder, names)),
        returning=returning,
    )


def aware(value: datetime | None) -> datetime | None:
    """A time from a query string; one without an offset is UTC (psycopg would read it in the session's zone)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def disorder(start: Bound | None, end: Bound | None, start_name: str, end_name: str) -> FieldError | None:
    """What is wrong with a range filter whose end comes before its start, naming the end; None when nothing."""
    if start is not None and end is not None and start > end:
        return FieldError(end_name, f"must be on or after `{start_name}`")
    return None


def ordered(start: Bound | None, end: Bound | None, start_name: str, end_name: str) -> None:
    """A range filter whose end comes before its start is a 400 naming the end."""
    if (problem := disorder(start, end, start_name, end_name)) is not None:
        raise InvalidInput([problem])

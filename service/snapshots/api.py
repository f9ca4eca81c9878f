"""CRUD of the snapshot rows: `/api/daily/` (platform figures per day) and `/api/user-analytics/` (per user and day).

The periodic tasks (`service/snapshots/daily.py`, `users.py`) write these rows; the API lets staff read, correct,
backfill and remove them, and lets a user read their own user analytics. Every write runs in one transaction
and stamps the row (`updated_at`, `last_calculated`); a duplicate day (or user and day) is a 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, LiteralString

import msgspec
import psycopg
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from psycopg import AsyncConnection, sql

from service.auth.guards import own_user_scope, principal_of, require_self_or_staff, staff_only
from service.core.errors import Conflict, FieldError, InvalidInput, NotFound
from service.core.listing import (
    BIGINT_MAX,
    DEFAULT_PAGE_SIZE,
    Ordering,
    Page,
    PageNumber,
    PageSize,
    Where,
    build_page,
    columns,
    decode_body,
    fetch_page,
    sent_fields,
)
from service.core.openapi import json_body
from service.core.rows import bound, check_failed, fetch_one, insert_statement, ordered, valid_id
from service.snapshots.schemas import (
    DAILY_READ_ONLY,
    USER_READ_ONLY,
    DailyAnalytics,
    DailyAnalyticsCreate,
    DailyAnalyticsPatch,
    DailyAnalyticsWrite,
    UserAnalytics,
    UserAnalyticsCreate,
    UserAnalyticsPatch,
    UserAnalyticsWrite,
)
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]

# Table and column names below come from this module's constants and the Structs' field names, never from input.
_ONE = "SELECT {returning} FROM {table} WHERE id = %(id)s"
_ONE_FOR_UPDATE = _ONE + " FOR UPDATE"  # a PATCH reads the row it merges into, and holds it until the commit
_UPDATE = "UPDATE {table} SET {assignments} WHERE id = %(id)s RETURNING {returning}"
_DELETE = "DELETE FROM {table} WHERE id = %(id)s"


@dataclass(frozen=True)
class Table:
    """What the generic row statements need to know of one snapshot table."""

    name: LiteralString
    row: type[msgspec.Struct]
    stamp: LiteralString  # set to now() by every write
    unique: LiteralString  # the unique constraint on the natural key
    key: tuple[str, ...]  # its columns, in the order they are named in a 409
    what: str  # "daily analytics", in messages

    def statement(self, template: LiteralString, **parts: sql.Composable) -> sql.Composed:
        """`template` with this table and its row's columns filled in."""
        return sql.SQL(template).format(table=sql.Identifier(self.name), returning=columns(self.row), **parts)

    def conflict(self, values: dict[str, Any]) -> Conflict:
        """The 409 for a natural key that another row holds."""
        shown = ", ".join(f"{name} {values[name]}" for name in self.key)
        errors = []
        for name in self.key:
            others = ", ".join(f"{other} {values[other]}" for other in self.key if other != name)
            errors.append(FieldError(name, f"{values[name]} is taken" + (f" together with {others}" if others else "")))
        return Conflict(f"{self.what} for {shown} exists already", errors=errors)


DAILY = Table("daily_analytics", DailyAnalytics, "updated_at", "daily_analytics_date_key", ("date",), "daily analytics")
USERS = Table(
    "user_analytics", UserAnalytics, "last_calculated", "user_analytics_user_date_key", ("user_id", "date"),
    "user analytics",
)  # fmt: skip


async def _write(conn: AsyncConnection[Any], table: Table, query: sql.Composed, values: dict[str, Any]) -> Any:
    """Run an INSERT or UPDATE ... RETURNING; None when no row matched. A taken natural key is a 409."""
    try:
        return await fetch_one(conn, table.row, query, bound(values))
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == table.unique:
            raise table.conflict(values) from None
        raise
    except psycopg.errors.CheckViolation as exc:
        raise check_failed(exc, table.name) from None


async def load(conn: AsyncConnection[Any], table: Table, row_id: int, for_update: bool = False) -> Any:
    """The row with this id, or NotFound."""
    query = table.statement(_ONE_FOR_UPDATE if for_update else _ONE)
    row = await fetch_one(conn, table.row, query, {"id": valid_id(row_id, table.what)})
    if row is None:
        raise NotFound(f"No {table.what} {row_id}")
    return row


async def insert(conn: AsyncConnection[Any], table: Table, values: dict[str, Any]) -> Any:
    """Insert a row of `values` (columns not given take their default) and return it."""
    return await _write(conn, table, insert_statement(table.name, list(values), columns(table.row)), values)


async def update(conn: AsyncConnection[Any], table: Table, row_id: int, values: dict[str, Any]) -> Any:
    """Set `values` on the row with this id, stamp it, and return it; NotFound when there is none."""
    settings = [sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values]
    settings.append(sql.SQL("{} = now()").format(sql.Identifier(table.stamp)))
    query = table.statement(_UPDATE, assignments=sql.SQL(", ").join(settings))
    row = await _write(conn, table, query, {**values, "id": valid_id(row_id, table.what)})
    if row is None:
        raise NotFound(f"No {table.what} {row_id}")
    return row


async def remove(conn: AsyncConnection[Any], table: Table, row_id: int) -> None:
    """Delete the row with this id; NotFound when there is none."""
    cur = await conn.execute(table.statement(_DELETE), {"id": valid_id(row_id, table.what)})
    if not cur.rowcount:
        raise NotFound(f"No {table.what} {row_id}")


async def patch_row(conn: AsyncConnection[Any], table: Table, row_id: int, changes: dict[str, Any]) -> Any:
    """Apply the sent fields of a PATCH to the row (locked while merged, so a 409 names the key it would have)."""
    current = await load(conn, table, row_id, for_update=True)
    merged = {name: changes.get(name, getattr(current, name)) for name in table.key}
    return await update(conn, table, row_id, {**changes, **merged})


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    """A write's values, once its day is one that can have figures: not after tomorrow (UTC; a day ahead for
    clients east of UTC). `9999-12-31` was accepted."""
    day = values.get("date")
    if isinstance(day, date) and day > datetime.now(UTC).date() + timedelta(days=1):
        raise InvalidInput([FieldError("date", "must not be after tomorrow (UTC)")])
    return values


DateFrom = Annotated[date | None, QueryParameter(description="Days on or after this one (YYYY-MM-DD)")]
DateTo = Annotated[date | None, QueryParameter(description="Days on or before this one (YYYY-MM-DD)")]

DAILY_ORDERING = Ordering(
    ["date", "active_users", "total_users", "community_views", "api_requests", "error_count", "id"], default="-date"
)
DAILY_SELECT = sql.SQL("SELECT {} FROM daily_analytics").format(columns(DailyAnalytics))


class DailyAnalyticsController(Controller):
    """Platform-wide figures, one row per UTC day (staff only)."""

    path = "/api/daily"
    tags = ["daily analytics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [staff_only]  # noqa: RUF012

    @get("/", summary="Daily rows, newest day first; filter by day, order by a figure")
    async def list_days(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        ordering: Annotated[str | None, QueryParameter(description=DAILY_ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[DailyAnalytics]:
        ordered(date_from, date_to, "date_from", "date_to")
        order = DAILY_ORDERING.parse(ordering)
        where = Where()
        where.optional("date >= {}", date_from)
        where.optional("date <= {}", date_to)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, DAILY_SELECT, where, order, page, page_size, DailyAnalytics)
        )
        return build_page(request, page, page_size, count, rows)

    @post(
        "/",
        summary="Add a day's row (figures not sent are 0); 409 when the day has one",
        operation_class=json_body(DailyAnalyticsCreate, "`date` and any figures", DailyAnalytics.ALIASES),
    )
    async def create_day(self, request: AnyRequest, resources: NamedDependency[Resources]) -> DailyAnalytics:
        body = decode_body(await request.body(), DailyAnalyticsCreate, DAILY_READ_ONLY, DailyAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: DailyAnalytics = await insert(conn, DAILY, _checked(sent_fields(body)))
        return row

    @get("/{row_id:int}/", summary="One day's row")
    async def get_day(self, row_id: FromPath[int], resources: NamedDependency[Resources]) -> DailyAnalytics:
        row: DailyAnalytics = await resources.reads.run(lambda conn: load(conn, DAILY, row_id))
        return row

    @put(
        "/{row_id:int}/",
        summary="Replace a day's row (every writable field)",
        operation_class=json_body(DailyAnalyticsWrite, "Every writable field", DailyAnalytics.ALIASES),
    )
    async def replace_day(
        self, row_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> DailyAnalytics:
        body = decode_body(await request.body(), DailyAnalyticsWrite, DAILY_READ_ONLY, DailyAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: DailyAnalytics = await update(conn, DAILY, row_id, _checked(msgspec.structs.asdict(body)))
        return row

    @patch(
        "/{row_id:int}/",
        summary="Change some fields of a day's row",
        operation_class=json_body(DailyAnalyticsPatch, "The fields to change", DailyAnalytics.ALIASES),
    )
    async def patch_day(
        self, row_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> DailyAnalytics:
        body = decode_body(await request.body(), DailyAnalyticsPatch, DAILY_READ_ONLY, DailyAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: DailyAnalytics = await patch_row(conn, DAILY, row_id, _checked(sent_fields(body)))
        return row

    @delete("/{row_id:int}/", summary="Delete a day's row")
    async def delete_day(self, row_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            await remove(conn, DAILY, row_id)


USER_ORDERING = Ordering(
    ["date", "user_id", "page_views", "actions_performed", "total_time_spent", "id"], default="-date"
)
USER_SELECT = sql.SQL("SELECT {} FROM user_analytics").format(columns(UserAnalytics))


class UserAnalyticsController(Controller):
    """Per-user figures, one row per user and UTC day: staff read and write all; a user reads their own."""

    path = "/api/user-analytics"
    tags = ["user analytics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="User rows, newest day first; a user who is not staff sees only their own")
    async def list_user_days(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        user: Annotated[
            int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="Only this user's rows (user id)")
        ] = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        ordering: Annotated[str | None, QueryParameter(description=USER_ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[UserAnalytics]:
        user = own_user_scope(principal_of(request), user, "user analytics")
        ordered(date_from, date_to, "date_from", "date_to")
        order = USER_ORDERING.parse(ordering)
        where = Where()
        where.optional("user_id = {}", user)
        where.optional("date >= {}", date_from)
        where.optional("date <= {}", date_to)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, USER_SELECT, where, order, page, page_size, UserAnalytics)
        )
        return build_page(request, page, page_size, count, rows)

    @post(
        "/",
        summary="Add a user's day (figures not sent are 0); 409 when the user has that day",
        guards=[staff_only],
        operation_class=json_body(UserAnalyticsCreate, "`user_id`, `date` and any figures", UserAnalytics.ALIASES),
    )
    async def create_user_day(self, request: AnyRequest, resources: NamedDependency[Resources]) -> UserAnalytics:
        body = decode_body(await request.body(), UserAnalyticsCreate, USER_READ_ONLY, UserAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: UserAnalytics = await insert(conn, USERS, _checked(sent_fields(body)))
        return row

    @get("/{row_id:int}/", summary="One user's day (the user themself or staff)")
    async def get_user_day(
        self, row_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> UserAnalytics:
        row: UserAnalytics = await resources.reads.run(lambda conn: load(conn, USERS, row_id))
        require_self_or_staff(principal_of(request), row.user_id, "user analytics")
        return row

    @put(
        "/{row_id:int}/",
        summary="Replace a user's day (every writable field)",
        guards=[staff_only],
        operation_class=json_body(UserAnalyticsWrite, "Every writable field", UserAnalytics.ALIASES),
    )
    async def replace_user_day(
        self, row_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> UserAnalytics:
        body = decode_body(await request.body(), UserAnalyticsWrite, USER_READ_ONLY, UserAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: UserAnalytics = await update(conn, USERS, row_id, _checked(msgspec.structs.asdict(body)))
        return row

    @patch(
        "/{row_id:int}/",
        summary="Change some fields of a user's day",
        guards=[staff_only],
        operation_class=json_body(UserAnalyticsPatch, "The fields to change", UserAnalytics.ALIASES),
    )
    async def patch_user_day(
        self, row_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> UserAnalytics:
        body = decode_body(await request.body(), UserAnalyticsPatch, USER_READ_ONLY, UserAnalytics.ALIASES)
        async with resources.pool.connection() as conn:
            row: UserAnalytics = await patch_row(conn, USERS, row_id, _checked(sent_fields(body)))
        return row

    @delete("/{row_id:int}/", summary="Delete a user's day", guards=[staff_only])
    async def delete_user_day(self, row_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            await remove(conn, USERS, row_id)

"""CRUD of system metric samples: `/api/metrics/`. Staff read and write; backends (service tokens) may also POST.

`system_metrics` is a hypertable on the timescaledb engine, keyed by (id, recorded_at). A write that moves a
sample to another time deletes it and inserts it again with the same id (`OVERRIDING SYSTEM VALUE`) in one
transaction, since TimescaleDB may refuse an UPDATE that moves a row to another chunk; other writes are plain
UPDATEs. Every write notes the hours it touched in `rollup_invalidations`, so the hourly rollup follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from psycopg import AsyncConnection, sql

from service.auth.guards import staff_only, staff_or_service
from service.core import client_json
from service.core.errors import FieldError, InvalidInput, NotFound
from service.core.listing import (
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
from service.core.rows import aware, bound, check_failed, fetch_one, insert_statement, valid_id
from service.storage.buckets import HOUR, floor
from service.system_metrics.schemas import (
    MAX_CLOCK_SKEW,
    METRIC_READ_ONLY,
    METRIC_TYPE,
    SystemMetric,
    SystemMetricCreate,
    SystemMetricPatch,
    SystemMetricWrite,
)
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]
RETURNING = columns(SystemMetric)

_ONE = sql.SQL("SELECT {} FROM system_metrics WHERE id = %(id)s").format(RETURNING)
_ONE_FOR_UPDATE = sql.SQL("SELECT {} FROM system_metrics WHERE id = %(id)s FOR UPDATE").format(RETURNING)
_UPDATE = sql.SQL(
    "UPDATE system_metrics SET metric_type = %(metric_type)s, value = %(value)s, additional_data = %(additional_data)s "
    "WHERE id = %(id)s AND recorded_at = %(recorded_at)s RETURNING {}"
).format(RETURNING)
# Moving a sample in time: out of its chunk and into another, under the same id.
_MOVE_OUT = "DELETE FROM system_metrics WHERE id = %(id)s AND recorded_at = %(old_recorded_at)s"
_MOVE_IN = sql.SQL(
    "INSERT INTO system_metrics (id, metric_type, value, additional_data, recorded_at) OVERRIDING SYSTEM VALUE "
    "VALUES (%(id)s, %(metric_type)s, %(value)s, %(additional_data)s, %(recorded_at)s) RETURNING {}"
).format(RETURNING)
_DELETE = "DELETE FROM system_metrics WHERE id = %(id)s RETURNING recorded_at"
# The hourly rollup (postgres engine) recomputes the hours a write touched; see service/storage/rollups.py.
_INVALIDATE = """
INSERT INTO rollup_invalidations (source, lo, hi)
SELECT 'system_metrics', hour, hour + interval '1 hour' - interval '1 microsecond'
FROM unnest(%(hours)s::timestamptz[]) AS hour
"""


def _not_found(metric_id: int) -> NotFound:
    return NotFound(f"No system metric {metric_id}")


def _check(values: dict[str, Any]) -> None:
    """What the body's types cannot say: a sample may not come from the future (beyond the clock skew
    tolerated), and `additional_data` follows the rule for client JSON (service.core.client_json)."""
    recorded_at = values.get("recorded_at")
    if isinstance(recorded_at, datetime) and recorded_at > datetime.now(UTC) + MAX_CLOCK_SKEW:
        seconds = int(MAX_CLOCK_SKEW.total_seconds())
        raise InvalidInput([FieldError("recorded_at", f"must not be more than {seconds} seconds in the future")])
    if "additional_data" in values:
        client_json.check(values["additional_data"], "additional_data")


async def _invalidate(conn: AsyncConnection[Any], times: Iterable[datetime]) -> None:
    await conn.execute(_INVALIDATE, {"hours": sorted({floor(t, HOUR) for t in times})})


async def _run(conn: AsyncConnection[Any], query: sql.Composed, values: dict[str, Any]) -> SystemMetric | None:
    try:
        return await fetch_one(conn, SystemMetric, query, bound(values))
    except psycopg.errors.CheckViolation as exc:
        raise check_failed(exc, "system_metrics") from None


async def insert(conn: AsyncConnection[Any], values: dict[str, Any]) -> SystemMetric:
    """Insert a sample (fields not given take their default: {} and now) and return it."""
    row = await _run(conn, insert_statement("system_metrics", list(values), RETURNING), values)
    assert row is not None
    await _invalidate(conn, [row.recorded_at])
    return row


async def load(conn: AsyncConnection[Any], metric_id: int, for_update: bool = False) -> SystemMetric:
    """The sample with this id (locked until the commit when `for_update`), or NotFound."""
    query = _ONE_FOR_UPDATE if for_update else _ONE
    row = await fetch_one(conn, SystemMetric, query, {"id": valid_id(metric_id, "system metric")})
    if row is None:
        raise _not_found(metric_id)
    return row


async def change(conn: AsyncConnection[Any], metric_id: int, changes: dict[str, Any]) -> SystemMetric:
    """Apply `changes` (every field for a PUT, the sent ones for a PATCH) to the sample and return it."""
    current = await load(conn, metric_id, for_update=True)
    values = {**msgspec.structs.asdict(current), **changes, "id": metric_id}
    if values["recorded_at"] == current.recorded_at:
        row = await _run(conn, _UPDATE, values)
    else:
        await conn.execute(_MOVE_OUT, {"id": metric_id, "old_recorded_at": current.recorded_at})
        row = await _run(conn, _MOVE_IN, values)
    assert row is not None  # the row is locked: it cannot have gone
    await _invalidate(conn, [current.recorded_at, row.recorded_at])
    return row


async def remove(conn: AsyncConnection[Any], metric_id: int) -> None:
    """Delete the sample with this id; NotFound when there is none."""
    cur = await conn.execute(_DELETE, {"id": valid_id(metric_id, "system metric")})
    removed = [row[0] for row in await cur.fetchall()]
    if not removed:
        raise _not_found(metric_id)
    await _invalidate(conn, removed)


ORDERING = Ordering(["recorded_at", "value", "metric_type", "id"], default="-recorded_at")
SELECT = sql.SQL("SELECT {} FROM system_metrics").format(RETURNING)


class SystemMetricsController(Controller):
    """Samples of the host, the database, Redis and the stream (staff; backends may report samples)."""

    path = "/api/metrics"
    tags = ["system metrics"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Samples, newest first; filter by type and time", guards=[staff_only])
    async def list_metrics(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        metric_type: Annotated[
            str | None, QueryParameter(pattern=METRIC_TYPE, max_length=63, description="Only samples of this type")
        ] = None,
        recorded_since: Annotated[
            datetime | None, QueryParameter(description="Samples recorded at or after (RFC 3339; no zone: UTC)")
        ] = None,
        recorded_until: Annotated[
            datetime | None, QueryParameter(description="Samples recorded before (RFC 3339; no zone: UTC)")
        ] = None,
        ordering: Annotated[str | None, QueryParameter(description=ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[SystemMetric]:
        since, until = aware(recorded_since), aware(recorded_until)
        if since is not None and until is not None and since > until:
            raise InvalidInput([FieldError("recorded_until", "must be on or after `recorded_since`")])
        order = ORDERING.parse(ordering)
        where = Where()
        where.optional("metric_type = {}", metric_type)
        where.optional("recorded_at >= {}", since)
        where.optional("recorded_at < {}", until)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, SELECT, where, order, page, page_size, SystemMetric)
        )
        return build_page(request, page, page_size, count, rows)

    @post(
        "/",
        summary="Record a sample (staff and service tokens)",
        guards=[staff_or_service],
        operation_class=json_body(SystemMetricCreate, "`metric_type` and `value`; `additional_data`, `recorded_at`"),
    )
    async def create_metric(self, request: AnyRequest, resources: NamedDependency[Resources]) -> SystemMetric:
        body = decode_body(await request.body(), SystemMetricCreate, METRIC_READ_ONLY)
        values = sent_fields(body)
        _check(values)
        async with resources.pool.connection() as conn:
            return await insert(conn, values)

    @get("/{metric_id:int}/", summary="One sample", guards=[staff_only])
    async def get_metric(self, metric_id: FromPath[int], resources: NamedDependency[Resources]) -> SystemMetric:
        return await resources.reads.run(lambda conn: load(conn, metric_id))

    @put(
        "/{metric_id:int}/",
        summary="Replace a sample (every writable field)",
        guards=[staff_only],
        operation_class=json_body(SystemMetricWrite, "Every writable field"),
    )
    async def replace_metric(
        self, metric_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> SystemMetric:
        body = decode_body(await request.body(), SystemMetricWrite, METRIC_READ_ONLY)
        values = msgspec.structs.asdict(body)
        _check(values)
        async with resources.pool.connection() as conn:
            return await change(conn, metric_id, values)

    @patch(
        "/{metric_id:int}/",
        summary="Change some fields of a sample",
        guards=[staff_only],
        operation_class=json_body(SystemMetricPatch, "The fields to change"),
    )
    async def patch_metric(
        self, metric_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> SystemMetric:
        body = decode_body(await request.body(), SystemMetricPatch, METRIC_READ_ONLY)
        changes = sent_fields(body)
        _check(changes)
        async with resources.pool.connection() as conn:
            return await change(conn, metric_id, changes)

    @delete("/{metric_id:int}/", summary="Delete a sample", guards=[staff_only])
    async def delete_metric(self, metric_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            await remove(conn, metric_id)

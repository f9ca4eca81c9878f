"""What can be exported: each dataset's relation, columns (SQL expression and Parquet type), time column and
retention, and the rows of a range streamed out of PostgreSQL as CSV (`COPY ... TO STDOUT`) or as Parquet row
groups (a server-side cursor), so memory stays flat whatever the size.

Names of relations and columns come from this module's constants only; the range and the community are bound
as parameters.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection, sql

from service.core.settings import Settings
from service.core.windows import midnight

Format = Literal["csv", "parquet"]
ROW_GROUP = 50_000  # rows per Parquet row group (and per fetch of the server-side cursor)
CHUNK = 256 * 1024  # bytes of CSV sent at a time


@dataclass(frozen=True)
class Column:
    name: str
    expression: str  # SQL over the relation; JSON, UUIDs and addresses as text
    kind: str  # the Parquet type: timestamp, int64, float64, bool, string


@dataclass(frozen=True)
class Dataset:
    name: str
    relation: str
    time_column: str
    columns: tuple[Column, ...]
    raw: bool  # raw points (RETENTION_RAW_DAYS) or rollups (RETENTION_ROLLUP_DAYS)
    by_community: bool  # whether `community` filters it

    def kept_days(self, settings: Settings) -> int:
        return settings.retention_raw_days if self.raw else settings.retention_rollup_days

    def select(self, community: int | None) -> sql.Composed:
        """The rows of [start, end), oldest first, of one community when given."""
        columns = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(c.expression), sql.Identifier(c.name)) for c in self.columns
        )
        return sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            columns, sql.Identifier(self.relation), self._where(community), sql.Identifier(self.time_column)
        )

    def count(self, community: int | None) -> sql.Composed:
        """How many rows `select` gives (without its columns and its order)."""
        return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(self.relation), self._where(community))

    def _where(self, community: int | None) -> sql.Composed:
        where = sql.SQL("{t} >= %(start)s AND {t} < %(end)s").format(t=sql.Identifier(self.time_column))
        if community is not None:
            where = sql.SQL("{} AND community_id = %(community)s").format(where)
        return where


def _columns(*spec: str) -> tuple[Column, ...]:
    """`name:kind` or `name:kind:expression` each."""
    out = []
    for item in spec:
        name, kind, *expression = item.split(":", 2)
        out.append(Column(name, expression[0] if expression else name, kind))
    return tuple(out)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("activity", "activity_events", "time", _columns(
            "time:timestamp", "event_id:string:event_id::text", "community_id:int64", "user_id:int64",
            "activity_type:string", "session_id:string", "duration:float64", "section:string",
            "metadata:string:metadata::text",
        ), raw=True, by_community=True),
        Dataset("geo", "geo_access_events", "time", _columns(
            "time:timestamp", "event_id:string:event_id::text", "community_id:int64", "user_id:int64",
            "country:string", "country_code:string", "region:string", "city:string", "access_result:string",
            "restriction_scope:string", "is_traveler:bool", "restriction_bypass:bool",
        ), raw=True, by_community=True),
        Dataset("system-metrics", "system_metrics", "recorded_at", _columns(
            "id:int64", "recorded_at:timestamp", "metric_type:string", "value:float64",
            "additional_data:string:additional_data::text",
        ), raw=True, by_community=False),
        Dataset("errors", "error_logs", "created_at", _columns(
            "id:int64", "created_at:timestamp", "level:string", "message:string", "stack_trace:string",
            "url:string", "method:string", "ip_address:string:host(ip_address)", "user_agent:string",
            "user_id:int64", "extra_data:string:extra_data::text", "fingerprint:string", "group_id:int64",
            "is_resolved:bool", "resolved_at:timestamp",
        ), raw=True, by_community=False),
        Dataset("activity-daily", "activity_daily", "bucket", _columns(
            "bucket:timestamp", "community_id:int64", "activity_type:string", "events:int64",
            "duration_sum:float64", "duration_count:int64",
        ), raw=False, by_community=True),
        Dataset("geo-daily", "geo_daily", "bucket", _columns(
            "bucket:timestamp", "community_id:int64", "country:string", "country_code:string", "region:string",
            "city:string", "access_result:string", "restriction_scope:string", "is_traveler:bool",
            "attempts:int64", "bypasses:int64",
        ), raw=False, by_community=True),
        Dataset("members-daily", "community_members_daily", "bucket", _columns(
            "bucket:timestamp", "community_id:int64", "user_id:int64", "events:int64", "first_seen:timestamp",
            "last_seen:timestamp",
        ), raw=False, by_community=True),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Request:
    """One export: a dataset's days `date_from` to `date_to` inclusive (UTC), of one community or all."""

    dataset: Dataset
    date_from: date
    date_to: date
    community: int | None
    format: Format

    @property
    def params(self) -> dict[str, Any]:
        start = midnight(self.date_from)
        end = midnight(self.date_to + timedelta(days=1))
        return {"start": start, "end": end, "community": self.community}

    @property
    def filename(self) -> str:
        scope = f"_community-{self.community}" if self.community is not None else ""
        return f"{self.dataset.name}{scope}_{self.date_from}_{self.date_to}.{self.format}"

    @property
    def media_type(self) -> str:
        return "text/csv; charset=utf-8" if self.format == "csv" else "application/vnd.apache.parquet"


async def csv_chunks(conn: AsyncConnection[Any], request: Request) -> AsyncIterator[bytes]:
    """The rows as CSV with a header line, from PostgreSQL's COPY, in parts of about CHUNK bytes (COPY hands over
    a row at a time: sent as they come, each row would cost an HTTP chunk of its own)."""
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(
        request.dataset.select(request.community)
    )
    buffer = bytearray()
    async with conn.cursor() as cur, cur.copy(statement, request.params) as copy:
        async for row in copy:
            buffer += row
            if len(buffer) >= CHUNK:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


async def parquet_chunks(
    conn: AsyncConnection[Any], request: Request, progress: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    """The rows as a Parquet file, a row group of ROW_GROUP rows at a time (read by a server-side cursor in a
    transaction of its own), each sent as soon as it is written; `progress` hears the rows written so far."""
    import pyarrow as pa  # type: ignore[import-untyped]  # the optional `parquet` extra (no type hints)
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    dataset = request.dataset
    schema = pa.schema([(c.name, _arrow_type(pa, c.kind)) for c in dataset.columns])
    sink = _Sink()
    written = 0
    async with conn.transaction(), conn.cursor(name="export") as cur:
        await cur.execute(dataset.select(request.community), request.params)
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            while rows := await cur.fetchmany(ROW_GROUP):
                values = zip(*rows, strict=True)
                arrays = [pa.array(column, kind) for column, kind in zip(values, schema.types, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                written += len(rows)
                if progress is not None:
                    progress(written)
                if chunk := sink.take():
                    yield chunk
            if not written:  # no rows: an empty file of the right schema
                writer.write_table(schema.empty_table())
    if chunk := sink.take():
        yield chunk


def _arrow_type(pa: Any, kind: str) -> Any:
    return {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
    }[kind]


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until `take`n: Parquet out as it is written."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        part = bytes(data)
        self._parts.append(part)
        self._position += len(part)
        return len(part)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out

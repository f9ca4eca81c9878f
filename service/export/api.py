"""`GET /api/export/{dataset}/`: a dataset's rows of a range of days, streamed as CSV or Parquet (staff)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from service.auth.guards import staff_only
from service.core.errors import FieldError, InvalidInput
from service.core.listing import BIGINT_MAX
from service.core.rows import disorder
from service.core.settings import Settings
from service.export.datasets import DATASETS, Format, Request, csv_chunks, parquet_chunks
from service.web.resources import Resources

PARQUET = importlib.util.find_spec("pyarrow") is not None  # the optional `parquet` extra, looked for once
DatasetName = Literal["activity", "geo", "system-metrics", "errors", "activity-daily", "geo-daily", "members-daily"]


def export_request(
    settings: Settings,
    dataset: str,
    date_from: date | None,
    date_to: date | None,
    community: int | None,
    format: Format,
) -> Request:
    """The export asked for, checked: a known dataset, an ordered range (default the last 7 days) inside what
    retention keeps, `community` only where it filters, Parquet only with its writer installed."""
    today = datetime.now(UTC).date()
    found = DATASETS.get(dataset)
    if found is None:
        raise InvalidInput([FieldError("dataset", f"unknown; one of {', '.join(DATASETS)}")])
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(days=6)
    errors = [e for e in [disorder(date_from, date_to, "date_from", "date_to")] if e is not None]
    oldest = today - timedelta(days=found.kept_days(settings))
    if date_from < oldest:
        kind = "raw points" if found.raw else "rollups"
        setting = "RETENTION_RAW_DAYS" if found.raw else "RETENTION_ROLLUP_DAYS"
        errors.append(FieldError("date_from", f"before {oldest}, the oldest day {kind} are kept ({setting})"))
    if community is not None and not found.by_community:
        errors.append(FieldError("community", f"`{dataset}` is not kept per community"))
    if format == "parquet" and not PARQUET:
        errors.append(FieldError("format", "parquet needs the `parquet` extra (pyarrow) installed"))
    if errors:
        raise InvalidInput(errors)
    return Request(found, date_from, date_to, community, format)


class ExportController(Controller):
    path = "/api/export"
    tags = ["export"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get(
        "/{dataset:str}/",
        summary="A dataset's rows of a range of days, streamed as CSV or Parquet (staff)",
        guards=[staff_only],
    )
    async def export(
        self,
        dataset: FromPath[DatasetName],
        resources: NamedDependency[Resources],
        date_from: Annotated[
            date | None, QueryParameter(description="First day (UTC), default 6 days before `date_to`")
        ] = None,
        date_to: Annotated[date | None, QueryParameter(description="Last day (UTC), inclusive; default today")] = None,
        community: Annotated[int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="Only this community")] = None,
        format: Annotated[Format, QueryParameter(description="`csv` (default) or `parquet`")] = "csv",
    ) -> Stream:
        request = export_request(resources.settings, dataset, date_from, date_to, community, format)
        return Stream(
            _chunks(resources, request),
            media_type=request.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{request.filename}"',
                "Cache-Control": "no-store",
            },
        )


async def _chunks(resources: Resources, request: Request) -> AsyncIterator[bytes]:
    async with resources.pool.connection() as conn:
        chunks = csv_chunks(conn, request) if request.format == "csv" else parquet_chunks(conn, request)
        async for chunk in chunks:
            yield chunk

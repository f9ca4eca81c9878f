"""`analytics export`: a dataset's rows of a range of days into a file, as the export endpoint streams them, with
a progress line (rows counted first, so the line knows the end)."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from psycopg import AsyncConnection

from service.core.errors import InvalidInput
from service.core.progress import Progress
from service.core.settings import Settings
from service.export.api import export_request
from service.export.datasets import Format, Request, csv_chunks, parquet_chunks


def run(
    settings: Settings,
    dataset: str,
    date_from: date | None,
    date_to: date | None,
    community: int | None,
    format: Format,
    out: Path,
    err: TextIO | None = None,
) -> int:
    """Write the export to `out`; the exit code (2 for a request the endpoint would refuse)."""
    err = err or sys.stderr
    try:
        request = export_request(settings, dataset, date_from, date_to, community, format)
    except InvalidInput as exc:
        for error in exc.errors:
            err.write(f"analytics export: {error.field}: {error.message}\n")
        return 2
    assert settings.database_url is not None
    written = asyncio.run(_write(settings.database_url, request, out, Progress(err, "export")))
    err.write(f"{out}: {written:,} rows, {out.stat().st_size:,} bytes\n")
    return 0


async def _write(database_url: str, request: Request, out: Path, progress: Progress) -> int:
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        total = await _count(conn, request)
        rows = 0

        def seen(done: int) -> None:
            progress.update(done / total if total else 1.0, f"{done:,} of {total:,} rows")

        with out.open("wb") as file:
            if request.format == "parquet":
                async for chunk in parquet_chunks(conn, request, progress=seen):
                    file.write(chunk)
            else:
                async for chunk in csv_chunks(conn, request):
                    file.write(chunk)
                    rows += chunk.count(b"\n")  # a line per row (text holding a line break counts twice)
                    seen(min(rows, total))
        progress.done(f"{total:,} rows")
        return total


async def _count(conn: AsyncConnection[Any], request: Request) -> int:
    cur = await conn.execute(request.dataset.count(request.community), request.params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0

"""`analytics bench export`: the export endpoint against a bare `COPY ... TO STDOUT` of the same rows.

The data set of `analytics bench queries` (`--events` activity events, 10 M by default, over `--days`), then,
in one run: the rows of the whole range as CSV straight from PostgreSQL by COPY (the baseline), and the same
rows through `GET /api/export/activity/` as CSV and as Parquet, read by an HTTP client as fast as it can. Each
row of the table gives rows/s, the ratio to the baseline and the API process's peak resident memory while it
answered (sampled every 50 ms).
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil
from psycopg import sql

from service.core.db import connect, detect_engine
from service.core.settings import Settings
from service.export.datasets import DATASETS
from service.storage.migrations import migrate
from service.tools.bench.harness import (
    Bench,
    BenchError,
    credentials,
    flush_redis,
    machine,
    render_table,
    run_bench,
    start_service,
)
from service.tools.bench.options import Options
from service.tools.bench.queries import POSTGRES_OPTIONS, clean_external, load, reset_database

READ = 1 << 20  # bytes the client reads at a time


@dataclass(frozen=True)
class Transfer:
    label: str
    rows: int
    seconds: float
    size: int  # bytes
    peak_rss: int | None  # the API process's, bytes; None for the baseline (no API involved)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def run(settings: Settings, options: Options) -> int:
    """Run the export benchmark, print its table; 0 when every transfer carried every row."""

    def body(bench: Bench) -> int:
        idle = bench.check_idle()
        urls = bench.start_servers(
            "using DATABASE_URL: the bench empties the raw tables there (before and after)",
            "using REDIS_URL: the bench FLUSHes that Redis database",
            POSTGRES_OPTIONS,
        )
        return _benchmark(bench, options, urls, idle)

    return run_bench(settings, body, clean_external)  # the same data set as `bench queries`


def _benchmark(bench: Bench, options: Options, urls: tuple[str, str], idle: float | None) -> int:
    progress = bench.progress
    database_url, redis_url = urls
    now = datetime.now(UTC)
    with connect(database_url, wait=bench.settings.db_wait) as conn:
        with progress.step("migrating"):
            engine = detect_engine(conn)
            migrate(conn, engine)
        reset_database(conn, engine)
        flush_redis(redis_url)
        load(database_url, options, progress, now)
        with progress.step("VACUUM (ANALYZE) activity_events"):
            conn.execute("VACUUM (ANALYZE) activity_events")
        row = conn.execute("SELECT count(*) FROM activity_events").fetchone()
    rows = int(row[0]) if row else 0
    first, last = (now - timedelta(days=options.days + 1)).date(), now.date()
    params = {"start": datetime.combine(first, datetime.min.time(), UTC), "end": now + timedelta(days=1)}
    with progress.step(f"bare COPY TO STDOUT of {rows:,} rows (CSV)"):
        baseline = _copy(database_url, params, rows)
    auth = credentials(bench.settings)
    api = start_service(bench, urls, auth, RETENTION_RAW_DAYS=str(options.days + 2))
    port = api.port
    assert api.child.process is not None
    pid = api.child.process.pid
    transfers = [baseline]
    for format in ("csv", "parquet"):
        path = f"/api/export/activity/?date_from={first}&date_to={last}&format={format}"
        with progress.step(f"GET {path}"):
            transfers.append(_download(port, path, auth.header, pid, f"export endpoint, {format}", rows))
    lines = [["", "rows/s", "vs bare COPY", "size", "API peak RSS"]]
    for t in transfers:
        ratio = f"{t.rate / baseline.rate:.2f}x" if t is not baseline else "baseline"
        peak = "-" if t.peak_rss is None else f"{t.peak_rss / 2**20:,.0f} MB"
        lines.append([t.label, f"{t.rate:,.0f}", ratio, f"{t.size / 2**20:,.0f} MB", peak])
    print(render_table(f"export benchmark ({rows:,} activity events, engine {engine})", lines, {1, 2, 3, 4}))
    print(
        "\n".join([
            "each transfer reads every row of the range once; the endpoint's figures include HTTP and the client "
            f"reading {READ >> 20} MB at a time on the same machine; Parquet: zstd, row groups of 50,000 rows",
            machine(database_url, redis_url),
            f"wall time: {time.monotonic() - bench.wall:.0f} s; CPU idle before the run: "
            + ("unknown" if idle is None else f"{idle:.0%}"),
        ]),
        flush=True,
    )  # fmt: skip
    return 0


def _copy(database_url: str, params: dict[str, datetime], rows: int) -> Transfer:
    """The baseline: the same SELECT as the endpoint's, by COPY TO STDOUT, every chunk read and dropped."""
    select = DATASETS["activity"].select(None)
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(select)
    size = 0
    with connect(database_url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(statement, params) as copy:
            for chunk in copy:
                size += len(chunk)
        seconds = time.perf_counter() - started
    return Transfer("bare COPY TO STDOUT, csv", rows, seconds, size, None)


def _download(port: int, path: str, headers: dict[str, str], pid: int, label: str, rows: int) -> Transfer:
    """GET `path`, reading the body as fast as it comes, while a thread samples the API process's memory."""
    peak = 0
    done = threading.Event()
    process = psutil.Process(pid)

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    size = lines = 0
    try:
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise BenchError(f"GET {path} answered {response.status}: {response.read(500)!r}")
        while chunk := response.read(READ):
            size += len(chunk)
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    finally:
        connection.close()
        done.set()
        sampler.join()
    if path.endswith("format=csv") and lines != rows + 1:  # the data set's text holds no line breaks
        raise BenchError(f"GET {path}: {lines - 1:,} rows, expected {rows:,}")
    return Transfer(label, rows, seconds, size, peak)

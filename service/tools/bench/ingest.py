"""`analytics bench ingest`: tracking and ingest throughput, each beside a baseline measured in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import redis
from psycopg import sql
from psycopg.types.json import Jsonb

from service.core.db import connect, detect_engine, sync_pool
from service.core.settings import Settings
from service.ingest.records import activity_record
from service.ingest.schemas import TrackActivity
from service.ingest.worker import IngestWorker
from service.ingest.writer import ACTIVITY_COLUMNS
from service.ingest.writer import ACTIVITY_TYPES as COLUMN_TYPES
from service.live.client import async_client, layout, prepare, sync_client
from service.live.records import ActivityRecord
from service.live.stream import stream_events
from service.live.writer import LiveWriter
from service.storage.migrations import migrate
from service.tools.bench.harness import (
    BENCH_RATE_LIMIT,
    Bench,
    BenchError,
    Credentials,
    HttpApp,
    OtherLoad,
    Progress,
    cores,
    credentials,
    flush_live,
    flush_redis,
    machine,
    render_table,
    run_bench,
    settle_live,
)
from service.tools.bench.options import Options
from service.tools.localstack import RedisClusterNodes, free_port

HTTP_WORKERS = 2
WRK_THREADS = 2
WARMUP_SECONDS = 2
TRACK_PATH = "/api/community-analytics/track/"
BATCH_PATH = "/api/community-analytics/track/batch/"
BATCH_SIZE = 100  # events per batch request
BATCH_LABEL = f"batch tracking ({BATCH_SIZE}/req)"
SINGLE_BODIES = 500  # distinct single-event bodies the wrk script cycles through
BATCH_BODIES = 40  # distinct batch bodies
COMMUNITIES = 100
USERS = 10_000
ACTIVITY_TYPES = ("view", "like", "post")
SECTIONS = ("feed", "events", "members", "chat", "about")
CLIENTS = ("web", "ios", "android")
CHUNK = 1_000  # records per LiveWriter.write() call when filling the stream
MAX_BACKLOG = 100_000_000  # INGEST_MAX_BACKLOG of the served app: the stream grows during the HTTP runs
SINGLE_GOAL = 0.65  # single-event tracking's throughput, at least this share of the minimal route's
P99_GOAL = 2.0  # single-event tracking's p99 latency, at most this many times the minimal route's
INGEST_GOAL = 0.70  # stream -> table, at least this share of a raw COPY's rate
WRK_INSTALL = "apt-get install -y wrk"
TABLE = "activity_events"

_WRK_SCRIPT = """\
-- written by `analytics bench ingest`: POSTs the bodies below in turn, prints one BENCH line when done
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local bodies = {
%(bodies)s
}
local requests = {}
local count = #bodies
local counter = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("first", threads * 97)
end

init = function(args)
  counter = first or 0
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format(nil, nil, nil, body)
  end
end

request = function()
  counter = counter + 1
  return requests[counter %% count + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%d duration_us=%%d status=%%d connect=%%d read=%%d write=%%d timeout=%%d" ..
    " p50_us=%%.0f p99_us=%%.0f\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# --- load generator -------------------------------------------------------------------------------------------


def ensure_wrk(progress: Progress) -> str:
    """The path of wrk; installs the Debian package when missing and allowed (root, apt-get), else says how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get") and Path("/etc/debian_version").exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with progress.step(f"installing the load generator: {WRK_INSTALL}"):
            install = ["apt-get", "install", "-y", "wrk"]
            if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "update"], env=env, check=False, capture_output=True)
                subprocess.run(install, env=env, check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(f"the load generator wrk is needed; install it with: sudo {WRK_INSTALL}")


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reports."""

    requests: int
    seconds: float
    status_errors: int  # answers that were not 2xx or 3xx
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        """Failed answers and socket errors together."""
        return self.status_errors + self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def problems(self) -> str:
        """The errors in words, empty when there are none."""
        if not self.errors:
            return ""
        return (
            f"{self.status_errors:,} non-2xx/3xx responses; socket errors: connect {self.connect_errors:,}, "
            f"read {self.read_errors:,}, write {self.write_errors:,}, timeout {self.timeouts:,}"
        )


_BENCH_LINE = re.compile(r"^BENCH (.*)$", re.MULTILINE)


def _lua_string(text: str) -> str:
    if "]==]" in text or "\n" in text:
        raise ValueError(f"{text[:40]!r}... cannot be written as a one-line Lua long string")
    return f"[==[{text}]==]"


def write_script(path: Path, bodies: Sequence[bytes], headers: Mapping[str, str]) -> Path:
    """Write a wrk Lua script that POSTs `bodies` in turn (each thread starting elsewhere in the list), every
    request with `headers`."""
    literals = "\n".join(f"  {_lua_string(body.decode())}," for body in bodies)
    # A space after `[`: `[[` would open a Lua long string.
    lines = "\n".join(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}" for name, value in headers.items())
    path.write_text(_WRK_SCRIPT % {"bodies": literals, "headers": lines})
    return path


def run_wrk(wrk: str, url: str, script: Path, seconds: int, connections: int) -> WrkResult:
    """Run wrk against `url` for `seconds` and read the figures its `done()` hook prints."""
    threads = min(WRK_THREADS, connections)
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    match = _BENCH_LINE.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise BenchError(f"wrk failed (exit code {result.returncode}):\n{result.stdout}{result.stderr}".strip())
    values = {key: float(value) for key, value in (part.split("=", 1) for part in match.group(1).split())}
    return WrkResult(
        requests=int(values["requests"]),
        seconds=values["duration_us"] / 1e6,
        status_errors=int(values["status"]),
        connect_errors=int(values["connect"]),
        read_errors=int(values["read"]),
        write_errors=int(values["write"]),
        timeouts=int(values["timeout"]),
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
    )


# --- request bodies and records -------------------------------------------------------------------------------


def seeded(seed: int) -> random.Random:
    """A reproducible generator of benchmark data (not of secrets)."""
    return random.Random(seed)  # noqa: S311 - test data, nothing secret


def activity_event(rng: random.Random) -> dict[str, Any]:
    """One realistic tracking body: ~100 communities, ~10,000 users, view/like/post, a small metadata dict."""
    kind = rng.choice(ACTIVITY_TYPES)
    metadata: dict[str, Any] = {"section": rng.choice(SECTIONS), "client": rng.choice(CLIENTS)}
    if kind == "view":
        metadata["duration"] = round(rng.uniform(1, 300), 1)
    elif kind == "post":
        metadata["post_id"] = rng.randint(1, 10_000_000)
    return {
        "community_id": rng.randint(1, COMMUNITIES),
        "user_id": rng.randint(1, USERS),
        "activity_type": kind,
        "metadata": metadata,
    }


def single_bodies(rng: random.Random, count: int = SINGLE_BODIES) -> list[bytes]:
    """Bodies of single-event tracking requests."""
    return [msgspec.json.encode(activity_event(rng)) for _ in range(count)]


def batch_bodies(rng: random.Random, count: int = BATCH_BODIES, size: int = BATCH_SIZE) -> list[bytes]:
    """Bodies of batch tracking requests, `size` events each."""
    return [msgspec.json.encode([activity_event(rng) for _ in range(size)]) for _ in range(count)]


def stream_records(settings: Settings, rng: random.Random, count: int) -> list[ActivityRecord]:
    """`count` records as the API makes them from tracking bodies, received 50 us apart ending now."""
    start = datetime.now(UTC) - timedelta(microseconds=50 * count)
    return [
        activity_record(
            msgspec.convert(activity_event(rng), TrackActivity), start + timedelta(microseconds=50 * i), settings
        )
        for i in range(count)
    ]


# --- measuring ------------------------------------------------------------------------------------------------


def measure(
    progress: Progress,
    load: OtherLoad,
    wrk: str,
    app: HttpApp,
    path: str,
    script: Path,
    label: str,
    options: Options,
) -> tuple[WrkResult, WrkResult]:
    """A warm-up run, then the measured one; both results (warm-up first)."""
    url = app.url(path)
    with progress.step(f"{label}: warm-up {WARMUP_SECONDS} s"):
        warmup = run_wrk(wrk, url, script, WARMUP_SECONDS, options.connections)
    if warmup.errors:
        progress.warn(f"{label} warm-up: {warmup.problems()}")
    with progress.step(f"{label}: measuring {options.duration} s"), load.watch(label, progress):
        result = run_wrk(wrk, url, script, options.duration, options.connections)
    progress.note(f"{label}: {result.rate:,.0f} req/s, latency p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms")
    if result.errors:
        progress.warn(f"{label}: {result.problems()} -- the figures of this run are NOT valid")
    return warmup, result


# --- stream -> table ------------------------------------------------------------------------------------------


def reset_table(database_url: str) -> None:
    """Empty the events table and checkpoint, so that each write run starts from the same state."""
    with connect(database_url) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(TABLE)))
        # On a managed database without the privilege, the run starts with whatever dirty buffers there are.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def count_rows(database_url: str) -> int:
    """Rows in the events table."""
    with connect(database_url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE))).fetchone()
    assert row is not None
    return int(row[0])


def fill_stream(settings: Settings, records: Sequence[ActivityRecord]) -> float:
    """Put `records` into the streams through the service's LiveWriter, CHUNK per call; the seconds it took."""

    async def fill() -> float:
        client = async_client(settings)
        try:
            await prepare(client)
            writer = LiveWriter(client, layout(settings), MAX_BACKLOG)
            start = time.perf_counter()
            for i in range(0, len(records), CHUNK):
                await writer.write(records[i : i + CHUNK])
            return time.perf_counter() - start
        finally:
            await client.aclose()

    return asyncio.run(fill())


def raw_copy(database_url: str, records: Sequence[ActivityRecord]) -> float:
    """The baseline: one `COPY ... FROM STDIN` of the records' rows in one transaction; the seconds it took."""
    rows = [
        (r.time, r.event_id, r.community_id, r.user_id, r.activity_type, r.session_id, r.duration, r.section,
         Jsonb(r.metadata))
        for r in records
    ]  # fmt: skip
    # The format the ingest worker writes in: binary.
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(TABLE), ACTIVITY_COLUMNS)
    with psycopg.connect(database_url) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(COLUMN_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - start


def drain_stream(settings: Settings, expected: int) -> float:
    """Time an IngestWorker's own loop (`run()`, reading ahead while it writes) until it stored `expected`
    events; the seconds it took."""
    assert settings.database_url is not None and settings.redis_url is not None
    pool = sync_pool(settings, settings.database_url)
    pool.open(wait=True)
    client = sync_client(settings)
    worker = IngestWorker(settings, pool, client, "bench", threading.Event())
    runner = threading.Thread(target=worker.run, name="bench-ingest")
    try:
        start = time.perf_counter()
        runner.start()
        last, last_change = 0, start
        while worker.ingested < expected:
            time.sleep(0.005)
            if worker.ingested != last:
                last, last_change = worker.ingested, time.perf_counter()
            elif time.perf_counter() - last_change > 5 or not runner.is_alive():
                raise BenchError(f"the stream ran dry after {worker.ingested:,} of {expected:,} events were stored")
        return time.perf_counter() - start
    finally:
        worker.stop.set()
        runner.join(30)
        pool.close()
        client.close()


# --- report ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    measured: str
    baseline: str
    ratio: float
    goal: float | None
    valid: bool
    disturbed: bool = False  # other processes took CPU during one of the spans behind it
    at_most: bool = False  # the goal is a ceiling of the ratio (a latency), not a floor (a rate)

    def cells(self) -> list[str]:
        """The row's text, column by column."""
        if self.at_most:
            ratio, goal = f"{self.ratio:.1f}x", f"<= {self.goal:.1f}x" if self.goal is not None else "-"
        else:
            ratio = f"{self.ratio:.0%}".replace("%", " %")
            goal = f">= {self.goal:.0%}".replace("%", " %") if self.goal is not None else "-"
        if not self.valid:
            verdict = "INVALID (errors)"
        elif self.goal is None:
            verdict = ""
        else:
            met = self.ratio <= self.goal if self.at_most else self.ratio >= self.goal
            verdict = "met" if met else "MISSED"
        if self.disturbed:
            verdict = f"{verdict} (disturbed)".lstrip()
        return [self.name, self.measured, self.baseline, ratio, goal, verdict]


# --- the run --------------------------------------------------------------------------------------------------


def run(settings: Settings, options: Options) -> int:
    """Run the ingest benchmark, print the table; 0 when every run was free of errors, else 1 (130: stopped)."""

    def body(bench: Bench) -> int:
        wrk = ensure_wrk(bench.progress)
        idle = bench.check_idle()
        urls = bench.start_servers(
            f"using DATABASE_URL: the bench TRUNCATEs {TABLE} there (before, between runs and after)",
            "using REDIS_URL: the bench FLUSHes that Redis database (before, between runs and after)",
        )
        return _benchmark(settings, options, bench, wrk, urls, idle)

    return run_bench(settings, body, _clean_external)


def _clean_external(bench: Bench) -> None:
    """Leave a database or Redis the user gave us without the bench's events."""
    assert bench.urls is not None
    try:
        if bench.external_database:
            with connect(bench.urls[0]) as conn:
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(TABLE)))
        if bench.external_redis:
            flush_redis(bench.urls[1])
    except (psycopg.Error, redis.RedisError) as exc:
        print(f"analytics bench: could not clean up after the run: {exc}", file=sys.stderr)


@dataclass(frozen=True)
class StreamFigures:
    """The stream -> table measurement: seconds to fill the streams, to COPY the rows, to drain the streams."""

    fill_seconds: float
    copy_seconds: float
    drain_seconds: float
    disturbed: bool


@dataclass
class Run:
    """The service's measurements on one kind of Redis."""

    where: str  # "a single Redis" or "a Redis Cluster"
    shards: int  # ingest streams
    single: WrkResult
    batch: WrkResult
    missing: int  # events answered 202 that the streams do not hold
    single_disturbed: bool
    batch_disturbed: bool
    stream: StreamFigures | None = None


def _benchmark(
    settings: Settings,
    options: Options,
    bench: Bench,
    wrk: str,
    urls: tuple[str, str],
    idle: float | None,
) -> int:
    """The measurements (on a Redis Cluster too with --redis-cluster) and the report, on servers that are up;
    the exit code."""
    database_url, redis_url = urls
    progress = bench.progress
    with progress.step("migrating"), connect(database_url, wait=settings.db_wait) as conn:
        engine = detect_engine(conn)
        migrate(conn, engine)
    reset_table(database_url)
    flush_redis(redis_url)
    settings = msgspec.structs.replace(
        settings, database_url=database_url, redis_url=redis_url, ingest_max_backlog=MAX_BACKLOG
    )
    rng = seeded(20260101)
    load = OtherLoad()
    auth = credentials(settings)
    scripts = {
        path: write_script(bench.directory / f"{name}.lua", bodies, auth.header)
        for path, name, bodies in ((TRACK_PATH, "single", single_bodies(rng)), (BATCH_PATH, "batch", batch_bodies(rng)))
    }
    base = _measure_minimal(options, progress, load, wrk, bench, auth, scripts)
    runs = [_measure_service(settings, options, progress, load, wrk, bench, auth, scripts, base)]
    runs[0].stream = _measure_stream(settings, options, progress, load, rng)
    if options.redis_cluster:
        with progress.step(f"starting a Redis Cluster of {options.redis_cluster} masters"):
            cluster = RedisClusterNodes(bench.directory, options.redis_cluster)
            bench.servers.extend(cluster.nodes)
            cluster.start()
        on_cluster = msgspec.structs.replace(
            settings, redis_url=cluster.url, redis_cluster=True, task_redis_url_raw=redis_url
        )
        runs.append(_measure_service(on_cluster, options, progress, load, wrk, bench, auth, scripts, base))
        runs[1].stream = _measure_stream(on_cluster, options, progress, load, rng)
    return _report(settings, options, engine, load, base, runs, bench.wall, idle)


def _measure_minimal(
    options: Options,
    progress: Progress,
    load: OtherLoad,
    wrk: str,
    bench: Bench,
    auth: Credentials,
    scripts: Mapping[str, Path],
) -> WrkResult:
    """The baseline: a minimal Litestar POST route on the same uvicorn, same worker count, answering the same
    requests (Authorization header included: it reads no header)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "service.tools.bench.minimal:app", "--workers", str(HTTP_WORKERS),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-proxy-headers",
            "--no-server-header"]  # fmt: skip
    minimal = HttpApp(bench.directory, "minimal", argv, dict(os.environ), port, auth.header)
    bench.apps.append(minimal)
    with progress.step(f"starting the minimal app ({HTTP_WORKERS} uvicorn workers)"):
        minimal.start()
    minimal.expect(TRACK_PATH, single_bodies(seeded(1), 1)[0])
    _, base = measure(progress, load, wrk, minimal, TRACK_PATH, scripts[TRACK_PATH], "minimal POST", options)
    minimal.stop()
    return base


def _measure_service(
    settings: Settings,
    options: Options,
    progress: Progress,
    load: OtherLoad,
    wrk: str,
    bench: Bench,
    auth: Credentials,
    scripts: Mapping[str, Path],
    base: WrkResult,
) -> Run:
    """The service's single-event and batch tracking on the settings' Redis (single or cluster); no ingest
    worker runs, the streams grow. The service authenticates every request and rate-limits tracking."""
    assert settings.database_url is not None and settings.redis_url is not None
    where = "a Redis Cluster" if settings.redis_cluster else "a single Redis"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
        "TASK_REDIS_URL": settings.task_redis_url or settings.redis_url,
        "ANALYTICS_HOST": "127.0.0.1",
        "ANALYTICS_PORT": str(port),
        "ANALYTICS_WORKERS": str(HTTP_WORKERS),
        "ANALYTICS_LOG_LEVEL": "WARNING",
        "INGEST_MAX_BACKLOG": str(MAX_BACKLOG),
        **auth.env,
    }
    service = HttpApp(bench.directory, "service", [sys.executable, "-m", "service", "serve"], env, port, auth.header)
    bench.apps.append(service)
    with progress.step(f"starting the service on {where} (`analytics serve`, {HTTP_WORKERS} uvicorn workers)"):
        service.start()
    service.expect(TRACK_PATH, single_bodies(seeded(1), 1)[0])
    service.expect(BATCH_PATH, batch_bodies(seeded(2), 1)[0], accepted=BATCH_SIZE)
    single_warmup, single = measure(
        progress, load, wrk, service, TRACK_PATH, scripts[TRACK_PATH], f"single-event tracking, {where}", options
    )
    batch_warmup, batch = measure(
        progress, load, wrk, service, BATCH_PATH, scripts[BATCH_PATH], f"{BATCH_LABEL}, {where}", options
    )
    service.stop()
    # Every answered request must have put its events into the streams (requests still in flight when wrk
    # stopped may have added a few more).
    answered = 1 + BATCH_SIZE + single_warmup.requests + single.requests
    answered += BATCH_SIZE * (batch_warmup.requests + batch.requests)
    client = sync_client(settings)
    try:
        streamed = stream_events(client, layout(settings))
    finally:
        client.close()
    progress.note(f"the streams hold {streamed:,} events; wrk saw {answered:,} events answered")
    missing = max(0, answered - streamed)
    if missing:
        progress.warn(f"{missing:,} answered events are missing from the streams")
    return Run(
        where,
        layout(settings).count,
        single,
        batch,
        missing,
        load.disturbed("minimal POST", f"single-event tracking, {where}"),
        load.disturbed("minimal POST", f"{BATCH_LABEL}, {where}"),
    )


def _measure_stream(
    settings: Settings, options: Options, progress: Progress, load: OtherLoad, rng: random.Random
) -> StreamFigures:
    """Stream -> table: the ingest worker against a raw COPY of the same rows."""
    assert settings.database_url is not None and settings.redis_url is not None
    database_url = settings.database_url
    flush_live(settings)
    with progress.step(f"making {options.events:,} records"):
        records = stream_records(settings, rng, options.events)
    with progress.step(f"filling the stream through LiveWriter ({CHUNK:,} records per call)"):
        fill_seconds = fill_stream(settings, records)
    reset_table(database_url)
    settle_live(settings)
    where = "a Redis Cluster" if settings.redis_cluster else "a single Redis"
    with progress.step(f"raw COPY of {options.events:,} rows"), load.watch(f"raw COPY, {where}", progress):
        copy_seconds = raw_copy(database_url, records)
    copied = count_rows(database_url)
    reset_table(database_url)
    settle_live(settings)
    label = f"ingest worker, {where}"
    with (
        progress.step(f"IngestWorker.run() until {options.events:,} events are stored ({label})"),
        load.watch(label, progress),
    ):
        drain_seconds = drain_stream(settings, options.events)
    stored = count_rows(database_url)
    for what, count in (("raw COPY", copied), ("the ingest worker", stored)):
        if count != options.events:
            raise BenchError(f"{what} left {count:,} rows in {TABLE}, expected {options.events:,}")
    reset_table(database_url)
    return StreamFigures(fill_seconds, copy_seconds, drain_seconds, load.disturbed(f"raw COPY, {where}", label))


def _report(
    settings: Settings,
    options: Options,
    engine: str,
    load: OtherLoad,
    base: WrkResult,
    runs: list[Run],
    wall: float,
    idle: float | None,
) -> int:
    """The table of ratios (a block per kind of Redis) and the notes; the exit code (1 when a measurement is
    not valid)."""
    assert settings.database_url is not None and settings.redis_url is not None
    base_text = f"minimal POST {base.rate:,.0f} req/s"
    rows: list[Row] = []
    notes = [""]
    for run in runs:
        assert run.stream is not None
        suffix = "" if len(runs) == 1 else f" ({run.where.removeprefix('a ')})"
        copy_rate = options.events / run.stream.copy_seconds
        drain_rate = options.events / run.stream.drain_seconds
        batch_events = run.batch.rate * BATCH_SIZE
        rows += [
            Row(f"single-event tracking{suffix}", f"{run.single.rate:,.0f} req/s", base_text,
                run.single.rate / base.rate, SINGLE_GOAL, not (run.single.errors or base.errors), run.single_disturbed),
            Row(f"single-event p99{suffix}", f"{run.single.p99_ms:.1f} ms", f"minimal POST {base.p99_ms:.1f} ms",
                run.single.p99_ms / base.p99_ms, P99_GOAL, not (run.single.errors or base.errors),
                run.single_disturbed, at_most=True),
            Row(f"{BATCH_LABEL}{suffix}", f"{batch_events:,.0f} ev/s", base_text, batch_events / base.rate, None,
                not (run.batch.errors or base.errors), run.batch_disturbed),
            Row(f"stream -> table{suffix}", f"{drain_rate:,.0f} ev/s", f"raw COPY {copy_rate:,.0f} rows/s",
                drain_rate / copy_rate, INGEST_GOAL, True, run.stream.disturbed),
        ]  # fmt: skip
        notes += [
            f"latency p50 / p99 on {run.where}: single {run.single.p50_ms:.1f} / {run.single.p99_ms:.1f} ms, "
            f"batch {run.batch.p50_ms:.1f} / {run.batch.p99_ms:.1f} ms (minimal {base.p50_ms:.1f} / "
            f"{base.p99_ms:.1f} ms)",
            f"stream -> table on {run.where}: {options.events:,} events; IngestWorker.run() with INGEST_BATCH_SIZE "
            f"{settings.ingest_batch_size:,} until drained ({run.stream.drain_seconds:.2f} s) vs one COPY in one "
            f"transaction ({run.stream.copy_seconds:.2f} s); streams filled by LiveWriter at "
            f"{options.events / run.stream.fill_seconds:,.0f} ev/s (not part of the ratio)",
        ]
    if len(runs) > 1:
        single, cluster = runs
        assert single.stream is not None and cluster.stream is not None
        notes.append(
            f"the cluster ({options.redis_cluster} masters, {cluster.shards} shards) against the single Redis, "
            f"same run: single-event {cluster.single.rate / single.single.rate:.0%}, batch "
            f"{cluster.batch.rate / single.batch.rate:.0%}, stream -> table "
            f"{single.stream.drain_seconds / cluster.stream.drain_seconds:.0%}; every node on the same {cores()} cores"
        )
    threads = min(WRK_THREADS, options.connections)
    header = (
        f"ingest benchmark ({cores()} cores, wrk {threads} threads x {options.connections} connections, "
        f"{options.duration} s each after a {WARMUP_SECONDS} s warm-up; {HTTP_WORKERS} uvicorn workers; "
        f"engine {engine})"
    )
    notes += [
        "tracking measured with authentication and rate limiting: every request carries a service JWT (HS256) "
        "that the tracking handler verifies as the authentication middleware would (cached per process after the "
        "first request), and passes "
        f"the tracking rate limiter (counted per process, flushed to Redis; RATE_LIMIT_TRACK {BENCH_RATE_LIMIT:,} "
        "so the bench's one token is never refused); the minimal route gets the same requests and checks nothing",
        f"batch: events/s through the batch route ({BATCH_SIZE} events per request) compared with requests/s of "
        "the minimal route (one event per request)",
    ]
    measured = [
        (f"{label}, {run.where}", r) for run in runs for label, r in (("single", run.single), ("batch", run.batch))
    ]
    invalid = [(label, r) for label, r in measured if r.errors]
    if base.errors:
        invalid.append(("minimal POST", base))
    for label, r in invalid:
        notes.append(f"!!! {label}: {r.problems()} -- the figures of this run are NOT valid")
    missing = sum(run.missing for run in runs)
    if missing:
        notes.append(f"!!! {missing:,} events answered 202 are missing from the streams")
    notes.append(machine(settings.database_url, settings.redis_url))
    notes.append(load.summary())
    idle_text = "unknown" if idle is None else f"{idle:.0%}"
    notes.append(f"wall time: {time.monotonic() - wall:.0f} s; CPU idle in the second before the run: {idle_text}")
    print(
        render_table(
            header, [["", "measured", "baseline", "ratio", "goal", ""], *(row.cells() for row in rows)], {1, 3}
        )
    )
    print("\n".join(notes), flush=True)
    return 1 if invalid or missing else 0

"""`analytics bench ingest`: tracking and ingest throughput, each beside a baseline measured in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.util
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import redis
import redis.asyncio as aioredis
from psycopg import sql
from psycopg.types.json import Jsonb

from service.bench import Options
from service.db import connect, detect_engine, sync_pool
from service.ingest.records import activity_record
from service.ingest.schemas import ActivityRecord, TrackActivity
from service.ingest.worker import IngestWorker
from service.ingest.writer import ACTIVITY_COLUMNS
from service.live import LiveWriter, stream_events
from service.localstack import Child, PostgresServer, RedisServer, StackError, ensure_binaries, free_port
from service.migrations import migrate
from service.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

HTTP_WORKERS = 2
WRK_THREADS = 2
WARMUP_SECONDS = 2
TRACK_PATH = "/api/community-analytics/track/"
BATCH_PATH = "/api/community-analytics/track/batch/"
BATCH_SIZE = 100  # events per batch request
SINGLE_BODIES = 500  # distinct single-event bodies the wrk script cycles through
BATCH_BODIES = 40  # distinct batch bodies
COMMUNITIES = 100
USERS = 10_000
ACTIVITY_TYPES = ("view", "like", "post")
SECTIONS = ("feed", "events", "members", "chat", "about")
CLIENTS = ("web", "ios", "android")
CHUNK = 1_000  # records per LiveWriter.write() call when filling the stream
MAX_BACKLOG = 100_000_000  # INGEST_MAX_BACKLOG of the served app: the stream grows during the HTTP runs
SINGLE_GOAL = 0.60
INGEST_GOAL = 0.50
WRK_INSTALL = "apt-get install -y wrk"
TABLE = "activity_events"

_WRK_SCRIPT = """\
-- written by `analytics bench ingest`: POSTs the bodies below in turn, prints one BENCH line when done
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
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


class BenchError(Exception):
    """The benchmark cannot go on; the message says why (and what to do)."""


class _Interrupted(Exception):
    """SIGTERM arrived: unwind like Ctrl-C."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


class Progress:
    """Progress on stderr: a rich spinner when rich is installed, plain lines otherwise."""

    def __init__(self) -> None:
        self.console: Console | None = None
        if importlib.util.find_spec("rich") is not None:
            from rich.console import Console

            self.console = Console(stderr=True, soft_wrap=True)

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        """Show `message` while the block runs, then how long it took."""
        start = time.perf_counter()
        if self.console is None:
            print(f"{message} ...", file=sys.stderr, flush=True)
            yield
        else:
            from rich.text import Text

            with self.console.status(Text(message)):
                yield
        self.note(f"{message}: {time.perf_counter() - start:.1f} s")

    def note(self, message: str) -> None:
        """One line of progress."""
        if self.console is None:
            print(message, file=sys.stderr, flush=True)
        else:
            self.console.print(message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        """A line that must not be missed."""
        if self.console is None:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
        else:
            from rich.text import Text

            self.console.print(Text(f"WARNING: {message}", style="bold red"))


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


def write_script(path: Path, bodies: Sequence[bytes]) -> Path:
    """Write a wrk Lua script that POSTs `bodies` in turn (each thread starting elsewhere in the list)."""
    literals = []
    for body in bodies:
        text = body.decode()
        if "]==]" in text:
            raise ValueError("body cannot be written as a Lua long string")
        literals.append(f"  [==[{text}]==],")
    path.write_text(_WRK_SCRIPT % {"bodies": "\n".join(literals)})
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


# --- HTTP servers under test ----------------------------------------------------------------------------------


def http_request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request to 127.0.0.1:`port`; the status and the body of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class HttpApp:
    """An HTTP server under test: a child process logging into the bench directory, healthy once /health is."""

    def __init__(self, directory: Path, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.child = Child(directory, name)
        self.argv = argv
        self.env = env
        self.port = port

    def url(self, path: str) -> str:
        """The address of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers `GET /health` with 200."""
        self.child.spawn(self.argv, env=self.env)
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive():
                raise BenchError(f"{self.child.name} exited on start-up:\n{self.child.log_tail()}")
            try:
                if http_request(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.child.name} did not answer within {timeout:.0f}s:\n{self.child.log_tail()}")
            time.sleep(0.1)

    def expect(self, path: str, body: bytes, accepted: int | None = None) -> None:
        """POST `body` once and insist on 202 (and on `accepted` events accepted, for a batch)."""
        status, answer = http_request(self.port, "POST", path, body)
        ok = status == 202
        if ok and accepted is not None:
            ok = msgspec.json.decode(answer).get("accepted") == accepted
        if not ok:
            raise BenchError(f"{self.child.name}: POST {path} answered {status}: {answer[:500]!r}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        self.child.stop(timeout=15)


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


# --- other load on the machine ---------------------------------------------------------------------------------


def _cpu_sample() -> tuple[float, dict[int, int], int] | None:
    """(monotonic time, CPU ticks of every user-space process outside this process's tree -- its reaped
    children included --, steal ticks of the machine), or None without /proc."""
    try:
        steal = int(Path("/proc/stat").read_text().splitlines()[0].split()[8])
        parents: dict[int, int] = {}
        used: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry.name)] = int(stat[1])
            used[int(entry.name)] = sum(int(x) for x in stat[11:15])  # utime, stime, cutime, cstime
    except (OSError, ValueError, IndexError):
        return None
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    todo = [os.getpid()]
    while todo:  # this process and its descendants are the benchmark
        pid = todo.pop()
        used.pop(pid, None)
        todo += children.get(pid, [])
    others = {pid: ticks for pid, ticks in used.items() if pid != 2 and parents.get(pid) != 2}  # no kernel threads
    return time.monotonic(), others, steal


class OtherLoad:
    """CPU that other user-space processes and the hypervisor (steal time) took from the machine while we measured."""

    LIMIT = 0.05  # of the machine's capacity: above, the figure of that span is disturbed

    def __init__(self) -> None:
        self.shares: dict[str, float] = {}

    @contextmanager
    def watch(self, label: str, progress: Progress) -> Iterator[None]:
        """Record the share of the machine's CPU others took while the block ran."""
        start = _cpu_sample()
        yield
        end = _cpu_sample()
        if start is None or end is None or end[0] <= start[0]:
            return
        ticks = sum(max(0, used - start[1].get(pid, 0)) for pid, used in end[1].items()) + end[2] - start[2]
        share = ticks / os.sysconf("SC_CLK_TCK") / (cores() * (end[0] - start[0]))
        self.shares[label] = share
        if share > self.LIMIT:
            progress.warn(f"{label}: other processes took {share:.0%} of the CPU meanwhile; the figure is disturbed")

    def disturbed(self, *labels: str) -> bool:
        """Whether others took more than LIMIT during any of these spans."""
        return any(self.shares.get(label, 0.0) > self.LIMIT for label in labels)

    def summary(self) -> str:
        """One line naming each span's share."""
        if not self.shares:
            return "CPU taken by other processes during the measured spans: unknown (no /proc)"
        spans = ", ".join(f"{label} {share:.0%}".replace("%", " %") for label, share in self.shares.items())
        worst = max(self.shares.values())
        verdict = "ok" if worst <= self.LIMIT else f"!!! above {self.LIMIT:.0%}: those figures are disturbed"
        return f"CPU taken by other processes during the measured spans: {spans} ({verdict})"


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


def fill_stream(redis_url: str, records: Sequence[ActivityRecord]) -> float:
    """Put `records` into the stream through the service's LiveWriter, CHUNK per call; the seconds it took."""

    async def fill() -> float:
        client = aioredis.Redis.from_url(redis_url)
        try:
            writer = LiveWriter(client, MAX_BACKLOG)
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
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(TABLE), ACTIVITY_COLUMNS)
    with psycopg.connect(database_url) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
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
    client = redis.Redis.from_url(settings.redis_url)
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


# --- servers --------------------------------------------------------------------------------------------------


def start_servers(
    settings: Settings, directory: Path, servers: list[PostgresServer | RedisServer], progress: Progress
) -> tuple[str, str]:
    """The database and Redis URLs: from the settings, or of servers started in `directory`."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is not None:
        progress.warn(f"using DATABASE_URL: the bench TRUNCATEs {TABLE} there (before, between runs and after)")
    if redis_url is not None:
        progress.warn("using REDIS_URL: the bench FLUSHes that Redis database (before, between runs and after)")
    if database_url is None or redis_url is None:
        ensure_binaries()
    if database_url is None:
        with progress.step("starting PostgreSQL"):
            postgres = PostgresServer(directory)
            servers.append(postgres)
            postgres.start()
        database_url = postgres.url()
    if redis_url is None:
        with progress.step("starting Redis"):
            redis_server = RedisServer(directory)
            servers.append(redis_server)
            redis_server.start()
        redis_url = redis_server.url
    return database_url, redis_url


def flush_redis(redis_url: str) -> None:
    """Empty the Redis database of the bench."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def wait_for_redis_persistence(redis_url: str, timeout: float = 120.0) -> None:
    """Wait until Redis rewrites no append-only file and saves no snapshot, so that no fork of it competes
    with a timed run for the CPU and the disk."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            info: Any = client.info("persistence")
            busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")
            if not any(int(info.get(key, 0)) for key in busy):
                return
            time.sleep(0.1)
    finally:
        client.close()


def versions(database_url: str, redis_url: str) -> str:
    """PostgreSQL and Redis versions, for the report."""
    with connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(redis_url)
    try:
        info: Any = client.info("server")
    finally:
        client.close()
    pg = str(row[0]).split()[0] if row else "?"
    return f"PostgreSQL {pg}, Redis {info.get('redis_version', '?')}"


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

    def cells(self) -> list[str]:
        """The row's text, column by column."""
        goal = f">= {self.goal:.0%}".replace("%", " %") if self.goal is not None else "-"
        if not self.valid:
            verdict = "INVALID (errors)"
        elif self.goal is None:
            verdict = ""
        else:
            verdict = "met" if self.ratio >= self.goal else "MISSED"
        if self.disturbed:
            verdict = f"{verdict} (disturbed)".lstrip()
        return [self.name, self.measured, self.baseline, f"{self.ratio:.0%}".replace("%", " %"), goal, verdict]


def render_table(header: str, rows: Sequence[Row]) -> str:
    """The figures as an aligned text table."""
    lines = [["", "measured", "baseline", "ratio", "goal", ""], *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    right = {1, 3}
    text = [header]
    for line in lines:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
    return "\n".join(text)


def cpu_idle(seconds: float = 1.0) -> float | None:
    """The share of CPU time the machine spent idle over `seconds` (None where /proc/stat is missing)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- the run --------------------------------------------------------------------------------------------------


def run(settings: Settings, options: Options) -> int:
    """Run the ingest benchmark, print the table; 0 when every run was free of errors, else 1 (130: stopped)."""
    wall = time.monotonic()
    progress = Progress()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    directory = Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    directory.chmod(0o755)  # PostgreSQL runs as `postgres` under root: it must enter the directory
    servers: list[PostgresServer | RedisServer] = []
    apps: list[HttpApp] = []
    external = (settings.database_url is not None, settings.redis_url is not None)
    urls: tuple[str, str] | None = None
    try:
        wrk = ensure_wrk(progress)
        idle = cpu_idle()
        if idle is not None and idle < 0.9:
            progress.warn(f"the machine is busy ({1 - idle:.0%} CPU in use before the run): the figures will be noisy")
        urls = start_servers(settings, directory, servers, progress)
        return _benchmark(settings, options, progress, wrk, directory, urls, apps, wall, idle)
    except (BenchError, StackError) as exc:
        print(f"analytics bench: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Interrupted):
        print("analytics bench: interrupted; stopping", file=sys.stderr)
        return 130
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for app in reversed(apps):
                app.stop()
            if urls is not None:
                _clean_external(urls, external)
            for server in reversed(servers):
                server.stop()
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, interrupt)
            signal.signal(signal.SIGTERM, previous)


def _clean_external(urls: tuple[str, str], external: tuple[bool, bool]) -> None:
    """Leave a database or Redis the user gave us without the bench's events."""
    try:
        if external[0]:
            with connect(urls[0]) as conn:
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(TABLE)))
        if external[1]:
            flush_redis(urls[1])
    except (psycopg.Error, redis.RedisError) as exc:
        print(f"analytics bench: could not clean up after the run: {exc}", file=sys.stderr)


def _benchmark(
    settings: Settings,
    options: Options,
    progress: Progress,
    wrk: str,
    directory: Path,
    urls: tuple[str, str],
    apps: list[HttpApp],
    wall: float,
    idle: float | None,
) -> int:
    """The three measurements and the report, on servers that are up; the exit code."""
    database_url, redis_url = urls
    with progress.step("migrating"), connect(database_url, wait=settings.db_wait) as conn:
        engine = detect_engine(conn)
        migrate(conn, engine)
    reset_table(database_url)
    flush_redis(redis_url)
    settings = msgspec.structs.replace(
        settings, database_url=database_url, redis_url=redis_url, ingest_max_backlog=MAX_BACKLOG
    )
    rng = seeded(20260101)
    single_script = write_script(directory / "single.lua", single_bodies(rng))
    batch_script = write_script(directory / "batch.lua", batch_bodies(rng))
    probe_single = single_bodies(seeded(1), 1)[0]
    probe_batch = batch_bodies(seeded(2), 1)[0]

    # 1. the baseline: a minimal Litestar POST route on the same uvicorn, same worker count
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "service.bench.minimal:app", "--workers", str(HTTP_WORKERS),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-proxy-headers",
            "--no-server-header"]  # fmt: skip
    minimal = HttpApp(directory, "minimal", argv, dict(os.environ), port)
    apps.append(minimal)
    with progress.step(f"starting the minimal app ({HTTP_WORKERS} uvicorn workers)"):
        minimal.start()
    minimal.expect(TRACK_PATH, probe_single)
    load = OtherLoad()
    _, base = measure(progress, load, wrk, minimal, TRACK_PATH, single_script, "minimal POST", options)
    minimal.stop()

    # 2. the service: single-event and batch tracking; no ingest worker runs, the stream grows
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ANALYTICS_HOST": "127.0.0.1",
        "ANALYTICS_PORT": str(port),
        "ANALYTICS_WORKERS": str(HTTP_WORKERS),
        "ANALYTICS_LOG_LEVEL": "WARNING",
        "INGEST_MAX_BACKLOG": str(MAX_BACKLOG),
    }
    service = HttpApp(directory, "service", [sys.executable, "-m", "service", "serve"], env, port)
    apps.append(service)
    with progress.step(f"starting the service (`analytics serve`, {HTTP_WORKERS} uvicorn workers)"):
        service.start()
    service.expect(TRACK_PATH, probe_single)
    service.expect(BATCH_PATH, probe_batch, accepted=BATCH_SIZE)
    single_warmup, single = measure(
        progress, load, wrk, service, TRACK_PATH, single_script, "single-event tracking", options
    )
    batch_label = f"batch tracking ({BATCH_SIZE}/req)"
    batch_warmup, batch = measure(progress, load, wrk, service, BATCH_PATH, batch_script, batch_label, options)
    service.stop()
    # Every answered request must have put its events into the stream (requests still in flight when wrk
    # stopped may have added a few more).
    answered = 1 + BATCH_SIZE + single_warmup.requests + single.requests
    answered += BATCH_SIZE * (batch_warmup.requests + batch.requests)
    client = redis.Redis.from_url(redis_url)
    try:
        streamed = stream_events(client)
    finally:
        client.close()
    progress.note(f"the stream holds {streamed:,} events; wrk saw {answered:,} events answered")
    missing = max(0, answered - streamed)
    if missing:
        progress.warn(f"{missing:,} answered events are missing from the stream")

    # 3. stream -> table: the ingest worker against a raw COPY of the same rows
    flush_redis(redis_url)
    with progress.step(f"making {options.events:,} records"):
        records = stream_records(settings, rng, options.events)
    with progress.step(f"filling the stream through LiveWriter ({CHUNK:,} records per call)"):
        fill_seconds = fill_stream(redis_url, records)
    reset_table(database_url)
    wait_for_redis_persistence(redis_url)
    with progress.step(f"raw COPY of {options.events:,} rows"), load.watch("raw COPY", progress):
        copy_seconds = raw_copy(database_url, records)
    copied = count_rows(database_url)
    reset_table(database_url)
    wait_for_redis_persistence(redis_url)
    with (
        progress.step(f"IngestWorker.run() until {options.events:,} events are stored"),
        load.watch("ingest worker", progress),
    ):
        drain_seconds = drain_stream(settings, options.events)
    stored = count_rows(database_url)
    for label, count in (("raw COPY", copied), ("the ingest worker", stored)):
        if count != options.events:
            raise BenchError(f"{label} left {count:,} rows in {TABLE}, expected {options.events:,}")
    reset_table(database_url)

    copy_rate = options.events / copy_seconds
    drain_rate = options.events / drain_seconds
    batch_events = batch.rate * BATCH_SIZE
    base_text = f"minimal POST {base.rate:,.0f} req/s"
    rows = [
        Row("single-event tracking", f"{single.rate:,.0f} req/s", base_text, single.rate / base.rate, SINGLE_GOAL,
            not (single.errors or base.errors), load.disturbed("minimal POST", "single-event tracking")),
        Row(batch_label, f"{batch_events:,.0f} ev/s", base_text, batch_events / base.rate, None,
            not (batch.errors or base.errors), load.disturbed("minimal POST", batch_label)),
        Row("stream -> table", f"{drain_rate:,.0f} ev/s", f"raw COPY {copy_rate:,.0f} rows/s", drain_rate / copy_rate,
            INGEST_GOAL, True, load.disturbed("raw COPY", "ingest worker")),
    ]  # fmt: skip
    threads = min(WRK_THREADS, options.connections)
    header = (
        f"ingest benchmark ({cores()} cores, wrk {threads} threads x {options.connections} connections, "
        f"{options.duration} s each after a {WARMUP_SECONDS} s warm-up; {HTTP_WORKERS} uvicorn workers; "
        f"engine {engine})"
    )
    notes = [
        "",
        f"batch: events/s through the batch route ({batch.rate:,.0f} req/s x {BATCH_SIZE} events) compared with "
        "requests/s of the minimal route (one event per request)",
        f"latency p50 / p99: minimal {base.p50_ms:.1f} / {base.p99_ms:.1f} ms, single {single.p50_ms:.1f} / "
        f"{single.p99_ms:.1f} ms, batch {batch.p50_ms:.1f} / {batch.p99_ms:.1f} ms",
        f"stream -> table: {options.events:,} events; IngestWorker.run() with INGEST_BATCH_SIZE "
        f"{settings.ingest_batch_size:,} until drained ({drain_seconds:.2f} s) vs one COPY in one transaction "
        f"({copy_seconds:.2f} s); stream filled by LiveWriter at {options.events / fill_seconds:,.0f} ev/s "
        "(not part of the ratio)",
    ]
    invalid = [(label, r) for label, r in (("minimal POST", base), ("single", single), ("batch", batch)) if r.errors]
    for label, r in invalid:
        notes.append(f"!!! {label}: {r.problems()} -- the figures of this run are NOT valid")
    if missing:
        notes.append(f"!!! {missing:,} events answered 202 are missing from the stream")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes.append(
        f"machine: {cores()} cores ({os.cpu_count()} online), {platform.system()} {platform.release()} "
        f"{platform.machine()}, Python {platform.python_version()}, {versions(database_url, redis_url)}, {now}"
    )
    notes.append(load.summary())
    idle_text = "unknown" if idle is None else f"{idle:.0%}"
    notes.append(f"wall time: {time.monotonic() - wall:.0f} s; CPU idle in the second before the run: {idle_text}")
    print(render_table(header, rows))
    print("\n".join(notes), flush=True)
    return 1 if invalid or missing else 0

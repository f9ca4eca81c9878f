"""What every benchmark shares: progress output, servers, the app under test, other load on the machine, tables."""

from __future__ import annotations

import http.client
import importlib.util
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec
import redis
from redis.cluster import RedisCluster

from service.auth.tokens import issue_token
from service.core.db import connect
from service.core.settings import Settings
from service.live.client import sync_client
from service.tools.localstack import Child, PostgresServer, RedisServer, StackError, ensure_binaries, free_port

if TYPE_CHECKING:
    from rich.console import Console


class BenchError(Exception):
    """The benchmark cannot go on; the message says why (and what to do)."""


class Interrupted(Exception):
    """SIGTERM arrived: unwind like Ctrl-C."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# --- progress -------------------------------------------------------------------------------------------------


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

    @contextmanager
    def bar(self, message: str, total: int) -> Iterator[Callable[[int], None]]:
        """Show a progress bar of `total` units while the block runs (it calls the function it gets with the units
        done since its last call), then how long it took."""
        start = time.perf_counter()
        if self.console is None:
            print(f"{message} ...", file=sys.stderr, flush=True)
            state = {"done": 0, "shown": 0}

            def advance_plain(units: int) -> None:
                state["done"] += units
                tenth = state["done"] * 10 // max(total, 1)
                if tenth > state["shown"]:
                    state["shown"] = tenth
                    print(f"  {state['done']:,} of {total:,}", file=sys.stderr, flush=True)

            yield advance_plain
        else:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            with Bar(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(message, total=total)

                def advance_rich(units: int) -> None:
                    bar.advance(task, units)

                yield advance_rich
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


# --- HTTP -----------------------------------------------------------------------------------------------------


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:`port` (with `headers`); the status and the body of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class KeepAlive:
    """Sequential GET requests to 127.0.0.1:`port`, each with `headers`, over one persistent connection
    (reopened when the server closed it, e.g. after its keep-alive timeout)."""

    def __init__(self, port: int, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = headers or {}
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        """GET `path`; the status and the body of the answer."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class HttpApp:
    """An HTTP server under test: a child process logging into the bench directory, healthy once /health is;
    `expect` sends `headers` (the credentials it wants)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.child = Child(directory, name)
        self.argv = argv
        self.env = env
        self.port = port
        self.headers = headers or {}

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
        status, answer = http_request(self.port, "POST", path, body, self.headers)
        ok = status == 202
        if ok and accepted is not None:
            ok = msgspec.json.decode(answer).get("accepted") == accepted
        if not ok:
            raise BenchError(f"{self.child.name}: POST {path} answered {status}: {answer[:500]!r}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        self.child.stop(timeout=15)


# --- credentials ----------------------------------------------------------------------------------------------

# RATE_LIMIT_TRACK of the bench's API: the limiter counts every tracking request (flushing to Redis as in
# production) but the bench's one token never reaches it.
BENCH_RATE_LIMIT = 1_000_000_000
TOKEN_LIFETIME = 86_400  # seconds: longer than any run; the secret dies with the run anyway


@dataclass(frozen=True)
class Credentials:
    """How the bench's own API authenticates the bench: its environment, and the header to send."""

    env: dict[str, str]  # a fresh HS256 secret (no audience, issuer or public key) and BENCH_RATE_LIMIT
    header: dict[str, str]  # Authorization: Bearer <a staff service token those settings accept>


def credentials(settings: Settings) -> Credentials:
    """A fresh JWT secret for the API the bench starts and a staff service token signed with it (empty values
    unset JWT_AUDIENCE, JWT_ISSUER and JWT_PUBLIC_KEY_FILE, even from a .env file)."""
    secret = secrets.token_urlsafe(32)
    env = {
        "JWT_ALGORITHM": "HS256",
        "JWT_SECRET": secret,
        "JWT_AUDIENCE": "",
        "JWT_ISSUER": "",
        "JWT_PUBLIC_KEY_FILE": "",
        "RATE_LIMIT_TRACK": str(BENCH_RATE_LIMIT),
    }
    signer = msgspec.structs.replace(
        settings, jwt_algorithm="HS256", jwt_secret=secret, jwt_audience=None, jwt_issuer=None, jwt_public_key_file=None
    )
    token = issue_token(signer, "analytics-bench", staff=True, service=True, lifetime=TOKEN_LIFETIME)
    return Credentials(env, {"Authorization": f"Bearer {token}"})


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


# --- servers --------------------------------------------------------------------------------------------------


def start_servers(
    settings: Settings,
    directory: Path,
    servers: list[PostgresServer | RedisServer],
    progress: Progress,
    database_warning: str,
    redis_warning: str,
    postgres_options: dict[str, str] | None = None,
) -> tuple[str, str]:
    """The database and Redis URLs: from the settings (warning what the bench does to them), or of servers
    started in `directory`."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is not None:
        progress.warn(database_warning)
    if redis_url is not None:
        progress.warn(redis_warning)
    if database_url is None or redis_url is None:
        ensure_binaries()
    if database_url is None:
        with progress.step("starting PostgreSQL"):
            postgres = PostgresServer(directory, options=postgres_options)
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


def live_nodes(settings: Settings) -> list[str]:
    """The URLs of the live Redis of the settings: every master of a cluster, else REDIS_URL."""
    assert settings.redis_url is not None
    if not settings.redis_cluster:
        return [settings.redis_url]
    client = sync_client(settings)
    assert isinstance(client, RedisCluster)
    try:
        return [f"redis://{node.host}:{node.port}/0" for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    finally:
        client.close()


def flush_live(settings: Settings) -> None:
    """Empty the live Redis of the settings: every master of a cluster."""
    for url in live_nodes(settings):
        flush_redis(url)


def settle_live(settings: Settings) -> None:
    """`wait_for_redis_persistence` on the live Redis of the settings: on every master of a cluster."""
    for url in live_nodes(settings):
        wait_for_redis_persistence(url)


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


def machine(database_url: str, redis_url: str) -> str:
    """One line describing the machine and the servers, for the report."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"machine: {cores()} cores ({os.cpu_count()} online), {platform.system()} {platform.release()} "
        f"{platform.machine()}, Python {platform.python_version()}, {versions(database_url, redis_url)}, {now}"
    )


# --- report ---------------------------------------------------------------------------------------------------


def render_table(header: str, lines: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """`header`, then `lines` (the column titles first) as an aligned text table; columns in `right` are
    right-aligned."""
    columns = max(len(line) for line in lines)
    padded = [[*line, *([""] * (columns - len(line)))] for line in lines]
    widths = [max(len(line[i]) for line in padded) for i in range(columns)]
    text = [header]
    for line in padded:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
    return "\n".join(text)


# --- the run --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One benchmark run: its progress output, scratch directory, servers and apps (stopped at the end)."""

    settings: Settings
    progress: Progress
    directory: Path
    wall: float  # time.monotonic() at the start
    servers: list[PostgresServer | RedisServer] = field(default_factory=list)
    apps: list[HttpApp] = field(default_factory=list)
    urls: tuple[str, str] | None = None  # database and Redis, once known

    @property
    def external_database(self) -> bool:
        """Whether the database is the user's (DATABASE_URL), not one the bench started."""
        return self.settings.database_url is not None

    @property
    def external_redis(self) -> bool:
        """Whether Redis is the user's (REDIS_URL), not one the bench started."""
        return self.settings.redis_url is not None

    def check_idle(self) -> float | None:
        """The machine's idle CPU share over one second, warning when it is busy (None without /proc)."""
        idle = cpu_idle()
        if idle is not None and idle < 0.9:
            self.progress.warn(
                f"the machine is busy ({1 - idle:.0%} CPU in use before the run): the figures will be noisy"
            )
        return idle

    def start_servers(
        self, database_warning: str, redis_warning: str, postgres_options: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """The database and Redis URLs of the run (servers of its own unless the settings name them)."""
        self.urls = start_servers(
            self.settings,
            self.directory,
            self.servers,
            self.progress,
            database_warning,
            redis_warning,
            postgres_options,
        )
        return self.urls


def run_bench(settings: Settings, body: Callable[[Bench], int], clean_external: Callable[[Bench], None]) -> int:
    """Run `body` in a fresh Bench, then stop its apps, let `clean_external` tidy up servers the user gave us,
    stop the servers and remove the directory, even on Ctrl-C or SIGTERM; the exit code (1 on a BenchError,
    130 when stopped)."""
    progress = Progress()
    bench = Bench(settings, progress, Path(tempfile.mkdtemp(prefix="analytics-bench-")), time.monotonic())
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    bench.directory.chmod(0o755)  # PostgreSQL runs as `postgres` under root: it must enter the directory
    try:
        return body(bench)
    except (BenchError, StackError) as exc:
        print(f"analytics bench: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted):
        print("analytics bench: interrupted; stopping", file=sys.stderr)
        return 130
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for app in reversed(bench.apps):
                app.stop()
            if bench.urls is not None:
                clean_external(bench)
            for server in reversed(bench.servers):
                server.stop()
            shutil.rmtree(bench.directory, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, interrupt)
            signal.signal(signal.SIGTERM, previous)


def start_service(bench: Bench, urls: tuple[str, str], auth: Credentials, **settings: str) -> HttpApp:
    """`analytics serve` (one uvicorn worker unless `settings` say otherwise) on a free port, on these servers,
    accepting `auth`, with these settings on top; stopped with the bench."""
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": urls[0], "REDIS_URL": urls[1], "ANALYTICS_HOST": "127.0.0.1",
        "ANALYTICS_PORT": str(port), "ANALYTICS_WORKERS": "1", "ANALYTICS_LOG_LEVEL": "WARNING", **auth.env,
        **settings,
    }  # fmt: skip
    app = HttpApp(bench.directory, "service", [sys.executable, "-m", "service", "serve"], env, port, auth.header)
    bench.apps.append(app)
    workers = env["ANALYTICS_WORKERS"]
    plural = "" if workers == "1" else "s"
    with bench.progress.step(f"starting the service (`analytics serve`, {workers} uvicorn worker{plural})"):
        app.start()
    return app

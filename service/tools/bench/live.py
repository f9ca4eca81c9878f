"""`analytics bench live`: what idle live streams cost one API process, and how long a tracked event takes to
reach 1,000 subscribers.

One `analytics serve` worker. The bench opens `--streams` (1,000) Server-Sent Event streams on 100 communities
over plain sockets, reading each one's first event, and reports the API process's resident memory before and
with them open (MB per 1,000 streams). Then it tracks one event at a time in a community (a new member, so the
online count changes) and times, for each of that community's subscribers, the moment the changed figures
arrive: p50 / p99 of the delay over `--live-events` events, each sent at a random moment of the ticker's period.
The baseline of the delay is that period (1 s): a change waits for the next tick.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import psutil

from service.core.db import connect, detect_engine
from service.core.settings import Settings
from service.live.push import TICK
from service.storage.migrations import migrate
from service.tools.bench.harness import (
    Bench,
    credentials,
    flush_redis,
    machine,
    render_table,
    run_bench,
    start_service,
)
from service.tools.bench.options import Options
from service.tools.bench.queries import percentile

COMMUNITIES = 100
FIRST_COMMUNITY = 7_000
SEED = 20261129


@dataclass
class Subscriber:
    community: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    online: int = -1
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (online members, when)


def run(settings: Settings, options: Options) -> int:
    """Run the live benchmark, print its table; 0 when every stream opened and every change arrived."""

    def body(bench: Bench) -> int:
        _raise_open_files(options.streams * 2 + 256)
        idle = bench.check_idle()
        urls = bench.start_servers(
            "using DATABASE_URL: the bench only reads there",
            "using REDIS_URL: the bench FLUSHes that Redis database (before and after)",
        )
        return asyncio.run(_benchmark(bench, options, urls, idle))

    return run_bench(settings, body, lambda bench: flush_redis(bench.urls[1]) if bench.urls else None)


def _raise_open_files(needed: int) -> None:
    """A socket per stream on both ends: the soft limit of open files up to what they need (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def _benchmark(bench: Bench, options: Options, urls: tuple[str, str], idle: float | None) -> int:
    database_url, redis_url = urls
    progress = bench.progress
    with progress.step("migrating"), connect(database_url, wait=bench.settings.db_wait) as conn:
        migrate(conn, detect_engine(conn))
    flush_redis(redis_url)
    auth = credentials(bench.settings)
    api = start_service(bench, urls, auth, LIVE_MAX_STREAMS_PER_PRINCIPAL=str(options.streams))
    port = api.port
    assert api.child.process is not None
    process = psutil.Process(api.child.process.pid)
    await asyncio.sleep(1)
    before = process.memory_info().rss
    token = auth.header["Authorization"]
    with progress.step(f"opening {options.streams:,} streams on {COMMUNITIES} communities"):
        subscribers = [await _subscribe(port, token, FIRST_COMMUNITY + i % COMMUNITIES) for i in range(options.streams)]
        readers = [asyncio.create_task(_read(s)) for s in subscribers]
        await _until(lambda: all(s.online >= 0 for s in subscribers), 60, "every stream's first event")
    await asyncio.sleep(2)
    with_streams = process.memory_info().rss
    delays: list[float] = []
    missed = 0
    rng = random.Random(SEED)  # noqa: S311 - the moments events are sent, not security
    with progress.step(f"{options.live_events} tracked events, each timed to its community's subscribers"):
        for sample in range(options.live_events):
            community = FIRST_COMMUNITY + sample % COMMUNITIES
            watching = [s for s in subscribers if s.community == community]
            expected = {s.online + 1 for s in watching}
            await asyncio.sleep(rng.uniform(0, TICK))  # events come at any moment of the ticker's period
            sent = time.monotonic()
            await _track(port, token, community, user=1_000_000 + sample)
            try:
                await _until(partial(_arrived, watching, expected), 10, "the change")
            except TimeoutError:
                missed += 1
                continue
            delays += [next(at for n, at in s.arrivals if n in expected) - sent for s in watching]
    after = process.memory_info().rss
    for task in readers:
        task.cancel()
    for s in subscribers:
        s.writer.close()
    per_thousand = (with_streams - before) / 2**20 / options.streams * 1000
    lines = [
        ["", "measured", "baseline", ""],
        ["memory, API process", f"{per_thousand:,.1f} MB per 1,000 streams",
         f"{before / 2**20:,.0f} MB RSS with none", f"{with_streams / 2**20:,.0f} MB with {options.streams:,}"],
        ["event -> pushed figures", f"p50 {percentile(delays, 0.5) * 1000:,.0f} ms, "
         f"p99 {percentile(delays, 0.99) * 1000:,.0f} ms", f"ticker period {TICK * 1000:,.0f} ms",
         f"{len(delays):,} deliveries to {options.streams:,} subscribers"],
    ]  # fmt: skip
    print(render_table(f"live benchmark ({options.streams:,} idle streams, 1 uvicorn worker)", lines))
    notes = [
        f"RSS after the samples: {after / 2**20:,.0f} MB; events whose change did not arrive within 10 s: {missed}",
        machine(database_url, redis_url),
        f"wall time: {time.monotonic() - bench.wall:.0f} s; CPU idle before the run: "
        + ("unknown" if idle is None else f"{idle:.0%}"),
    ]
    print("\n".join(notes), flush=True)
    return 1 if missed else 0


async def _subscribe(port: int, token: str, community: int) -> Subscriber:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    request = (
        f"GET /api/community-analytics/{community}/live/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream {community}: {status.decode(errors='replace').strip()}")
    return Subscriber(community, reader, writer)


async def _read(subscriber: Subscriber) -> None:
    """Note each event's online count with the moment it arrived (the body is chunked: lines are read as is)."""
    while line := await subscriber.reader.readline():
        if line.startswith(b"data: {"):
            online = int(line.split(b'"online_members":', 1)[1].split(b",", 1)[0])
            subscriber.online = online
            subscriber.arrivals.append((online, time.monotonic()))


async def _track(port: int, token: str, community: int, user: int) -> None:
    body = f'{{"community_id": {community}, "user_id": {user}, "activity_type": "view"}}'.encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/community-analytics/track/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Authorization: {token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = await reader.readline()
    writer.close()
    if b" 202 " not in status:
        raise RuntimeError(f"tracking answered {status.decode(errors='replace').strip()}")


def _arrived(watching: list[Subscriber], expected: set[int]) -> bool:
    return all(s.online in expected for s in watching)


async def _until(done: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come within {seconds:.0f} s")
        await asyncio.sleep(0.005)

"""`analytics demo` from start to end: the history, waiting for the ingest worker and the tasks, then live
activity."""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import msgspec

from service.core.progress import Progress
from service.core.settings import ConfigError, Settings
from service.tools.demo.client import Api, DemoError, Sender, refusal, sent_summary
from service.tools.demo.simulation import Simulator, simulate
from service.tools.demo.world import World, build_world

# Queued once the history is in, in this order: rollups first, then what reads them.
TASKS = (
    "refresh_rollups",
    "update_community_analytics",  # presence of the back-dated quarter hours, which the daily rows read
    "update_daily_analytics",
    "update_user_analytics",
    "process_geo_restriction_analytics",
    "process_error_logs",
    "generate_analytics_reports",
    "generate_community_reports",
    "generate_geo_effectiveness_reports",
)
# History starts this long after the oldest moment TRACK_MAX_AGE accepts: sending takes a while.
AGE_MARGIN = timedelta(minutes=10)
LIVE_TICK = 2.0  # seconds between live rounds


@dataclass(frozen=True)
class Options:
    """What `analytics demo` was asked for."""

    url: str
    communities: int = 12
    users: int = 1000
    days: int = 7
    live_minutes: float = 0.0
    follow: bool = False
    live_scale: float = 10.0  # live sessions at this many times the members' simulated rate
    seed: int = 1
    concurrency: int = 4
    wait: float = 300.0  # seconds for the ingest worker, then for the rollup refresh


def default_url(settings: Settings) -> str:
    """The API this machine's settings describe (a wildcard listen address means this host)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104 - compared, not bound
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


# --- The command --------------------------------------------------------------------------------------------


def history_window(settings: Settings, days: int, now: datetime) -> datetime:
    """Where the history starts: `days` back, but never older than the API accepts (TRACK_MAX_AGE)."""
    max_days = math.ceil(settings.track_max_age / 86400)
    if days < 0:
        raise ConfigError(f"--days: expected 0 or more, got {days}")
    if days > max_days:
        raise ConfigError(
            f"--days: at most {max_days}: the API accepts events up to TRACK_MAX_AGE ({settings.track_max_age} s) old"
        )
    if days and timedelta(seconds=settings.track_max_age) <= AGE_MARGIN:
        raise ConfigError(f"--days: TRACK_MAX_AGE ({settings.track_max_age} s) leaves no room for history; --days 0")
    oldest = now - timedelta(seconds=settings.track_max_age) + AGE_MARGIN
    return max(now - timedelta(days=days), oldest)


def run(settings: Settings, options: Options, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (1 when the API refused or could not be reached)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if options.live_minutes < 0 or options.live_scale <= 0:
        raise ConfigError("--live-minutes: expected 0 or more; --live-scale: expected more than 0")
    now = datetime.now(UTC).replace(microsecond=0)
    start = history_window(settings, options.days, now)
    api = Api(options.url, settings)
    api.token()  # a missing JWT_SECRET is a configuration error: say so before anything else
    try:
        api.check()  # nothing answering at the URL: say so at once, not after minutes of retries
    except DemoError as exc:
        err.write(f"analytics demo: {exc}\n")
        return 1
    # As history() draws: the same seed, the same world and events. Simulated data, not security.
    rng = random.Random(options.seed)  # noqa: S311
    world = build_world(rng, options.communities, options.users, start, now)
    simulator = Simulator(world, rng, start)
    restricting = sum(1 for c in world.communities if c.restrictions)
    out.write(
        f"demo: {len(world.communities)} communities ({restricting} with geo restrictions), {len(world.users):,} "
        f"members, seed {options.seed}, sending to {api.describe()}\n"
    )
    out.flush()
    sender = Sender(api, min(settings.track_max_batch, 500), options.concurrency)
    try:
        if start < now:
            began = time.monotonic()
            _send_history(simulator, sender, start, now, err)
            out.write(
                f"history {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC, sent in "
                f"{time.monotonic() - began:.0f} s: {sent_summary(sender.sent)} "
                f"({sender.sent['blocked']:,} blocked, from {len(sender.countries)} countries), "
                f"{sender.sent['error']:,} error logs, {sender.sent['metric']:,} system metric samples\n"
            )
            out.flush()
            _annotate(api, world, start, out)
            _after_history(api, options, settings, out, err)
        if options.live_minutes > 0 or options.follow:
            # The same simulator: sessions in progress at the end of the history go on.
            simulator.metrics = False
            simulator.scale = options.live_scale
            _live(simulator, sender, now, options, out, err)
    except DemoError as exc:
        err.write(f"\nanalytics demo: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sender.flush()
        out.write(f"stopped: {sent_summary(sender.sent)} sent in all\n")
    finally:
        sender.close()
        api.close()
    return 0


def _send_history(simulator: Simulator, sender: Sender, start: datetime, end: datetime, err: TextIO) -> None:
    progress = Progress(err, "history")
    span = (end - start).total_seconds()
    for reached, events in simulate(simulator, start, end):
        for _, _, kind, item in events:
            sender.add(kind, item)
        progress.update((reached - start).total_seconds() / span, f"{reached:%a %H:00} {sent_summary(sender.sent)}")
    sender.flush()
    progress.done(sent_summary(sender.sent))


def _annotate(api: Api, world: World, start: datetime, out: TextIO) -> None:
    """Mark each community's geo rules on the dashboards where the history starts (once: a second demo over the
    same database finds them), and the history's end."""
    written = 0
    for community in world.communities:
        if not community.restrictions:
            continue
        refused = ", ".join(
            r.code if r.name is None else f"{r.name} ({r.code}, {r.scope})" for r in community.restrictions
        )
        text = f"Geo rule of {community.name}: refuses {refused}"
        status, data = api.request("GET", f"/api/annotations/?community_id={community.id}&tag=geo-rule&page_size=500")
        if status != 200:
            raise DemoError(f"GET /api/annotations/ was refused: {refusal(status, data)}")
        if all(row["text"] != text for row in msgspec.json.decode(data)["results"]):
            _post_annotation(
                api, {"time": start, "text": text, "tags": ["geo-rule", "demo"], "community_id": community.id}
            )
            written += 1
    size = f"{len(world.communities)} communities, {len(world.users):,} members"
    text = f"Demo history sent: {size} since {start:%Y-%m-%d %H:%M} UTC"
    _post_annotation(api, {"time": datetime.now(UTC), "text": text, "tags": ["demo"]})
    out.write(f"annotations: {written} geo rules and the history's end marked on the dashboards\n")


def _post_annotation(api: Api, body: dict[str, Any]) -> None:
    status, data = api.request("POST", "/api/annotations/", msgspec.json.encode(body))
    if status != 201:
        raise DemoError(f"POST /api/annotations/ was refused: {refusal(status, data)}")


def _after_history(api: Api, options: Options, settings: Settings, out: TextIO, err: TextIO) -> None:
    """Wait for the ingest worker to store the history, have the rollups refreshed over it (back-dated rows
    are in the rollups only after a refresh), then queue the snapshots and reports that read them."""
    deadline = time.monotonic() + options.wait
    if options.wait > 0:
        backlog = _wait_for_ingest(api, settings, deadline, err)
        if backlog is None:
            out.write("ingest: the API's /metrics has no analytics_stream_backlog; not waiting for the ingest worker\n")
        elif backlog:
            out.write(f"ingest: {backlog:,} stream entries still waiting after {options.wait:g} s\n")
        else:
            out.write("ingest: every event is stored\n")
    refresh, *others = TASKS
    run_id = _queue(api, refresh)
    if options.wait > 0:
        run_id, status = _wait_for_run(api, refresh, run_id, deadline)
    else:
        status = "queued"
    out.write(f"{refresh} (run {run_id}): {status}")
    if status == "queued":
        out.write(" (is `analytics worker` running?)")
    out.write("\n")
    queued = [f"{task} (run {_queue(api, task)})" for task in others]
    out.write("queued for the task worker: " + ", ".join(queued) + "\n")
    out.flush()


def _queue(api: Api, task: str) -> int:
    status, data = api.request("POST", f"/api/tasks/{task}/run/")
    if status != 202:
        raise DemoError(f"POST /api/tasks/{task}/run/ was refused: {refusal(status, data)}")
    run_id: int = msgspec.json.decode(data)["run_id"]
    return run_id


def _wait_for_run(api: Api, task: str, run_id: int, deadline: float) -> tuple[int, str]:
    """Poll the recorded runs until this one is over (or the deadline passes): the run and its last status. A run
    skipped because a scheduled run of the task held its lock is asked for again: that run may have started too
    early."""
    while True:
        status, data = api.request("GET", f"/api/tasks/runs/?task={task}&limit=20")
        if status != 200:
            raise DemoError(f"GET /api/tasks/runs/ was refused: {refusal(status, data)}")
        runs = {run["id"]: run for run in msgspec.json.decode(data)["results"]}
        state = runs.get(run_id, {}).get("status", "queued")
        if state == "skipped" and time.monotonic() < deadline:
            run_id = _queue(api, task)
        elif state in ("success", "failure", "skipped") or time.monotonic() >= deadline:
            return run_id, str(state)
        time.sleep(0.5)


def _wait_for_ingest(api: Api, settings: Settings, deadline: float, err: TextIO) -> int | None:
    """Poll the backlog gauge on /metrics until it is 0; None when the API does not export it."""
    headers = {"Authorization": f"Bearer {settings.metrics_token}"} if settings.metrics_token else {}
    progress = Progress(err, "ingest ")
    first: int | None = None
    while True:
        status, data = api.request("GET", "/metrics", headers=headers, auth=False)
        backlog = _gauge(data.decode(errors="replace"), "analytics_stream_backlog") if status == 200 else None
        if backlog is None:
            return None
        first = first or backlog
        progress.update(1 - backlog / first if first else 1.0, f"{backlog:,} stream entries to store")
        if backlog == 0 or time.monotonic() > deadline:
            progress.done(f"{backlog:,} stream entries to store")
            return backlog
        time.sleep(0.5)


def _gauge(exposition: str, name: str) -> int | None:
    """The value of an unlabelled gauge in the Prometheus text format."""
    for line in exposition.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def _live(simulator: Simulator, sender: Sender, since: datetime, options: Options, out: TextIO, err: TextIO) -> None:
    """Members keep coming in real time, until --live-minutes pass (or, with --follow, until Ctrl-C)."""
    before = sender.sent.copy()
    ends = None if options.follow else time.monotonic() + options.live_minutes * 60
    progress = Progress(err, "live   ")
    started = time.monotonic()
    last = since
    while ends is None or time.monotonic() < ends:
        now = datetime.now(UTC)
        for _, events in simulate(simulator, last, now):
            for _, _, kind, item in events:
                sender.add(kind, item)
        sender.flush()
        last = now
        live = sender.sent - before
        elapsed = time.monotonic() - started
        fraction = elapsed / (options.live_minutes * 60) if ends is not None else 0.0
        progress.update(
            fraction, f"{now:%H:%M:%S} UTC {sent_summary(live)} live" + (" (Ctrl-C stops)" if ends is None else "")
        )
        time.sleep(LIVE_TICK)
    progress.done(sent_summary(sender.sent - before) + " live")
    out.write(f"live: {sent_summary(sender.sent - before)}, {(sender.sent - before)['error']:,} error logs\n")

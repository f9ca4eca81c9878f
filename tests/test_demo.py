"""`analytics demo`: a simulated platform's activity through the real HTTP API into the tables."""

from __future__ import annotations

import io
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import redis
import uvicorn
from psycopg.rows import dict_row

from service.app import create_app
from service.cli import main
from service.core.db import sync_pool
from service.core.progress import Progress
from service.core.settings import Settings
from service.errorlog.schemas import ErrorLogCreate
from service.ingest.schemas import PlatformEvent, TrackActivity, TrackGeo
from service.ingest.worker import IngestWorker
from service.snapshots.schemas import DailyAnalytics
from service.system_metrics.schemas import SystemMetricCreate
from service.tasks.worker import execute
from service.tools.demo.client import CHECK_DEADLINE, Api, Sender
from service.tools.demo.runner import AGE_MARGIN, TASKS, Options, _live, history_window
from service.tools.demo.simulation import Simulator, history
from service.tools.demo.world import Community, World, build_world
from service.tools.dev import dev_jwt_secret
from tests.observability.test_dashboards import ALL, SQL_QUERIES, grafana_sql, is_number
from tests.support import TEST_JWT_SECRET, drain, rows

# A small world; with this seed it has blocked accesses, travelers and errors whatever the hour it runs at.
SMALL = ["--communities", "4", "--users", "150", "--days", "1", "--seed", "2"]
BODIES: dict[str, type[Any]] = {
    "activity": TrackActivity,
    "geo": TrackGeo,
    "platform": PlatformEvent,
    "error": ErrorLogCreate,
    "metric": SystemMetricCreate,
}


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """The API served over HTTP by uvicorn in a thread, on a free port: the demo speaks real HTTP."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)
    sock.close()


class Ingest:
    """The ingest worker consuming in a thread while the demo runs (the demo waits for its backlog)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url and settings.redis_url
        self.pool = sync_pool(settings, settings.database_url)
        self.pool.open(wait=True)
        self.client = redis.Redis.from_url(settings.redis_url)
        self.worker = IngestWorker(settings, self.pool, self.client, "demo-test", threading.Event())
        self.worker.ensure_group()
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        """Stop the thread, then store whatever is left."""
        self.worker.stop.set()
        self.thread.join(30)
        self.worker.stop.clear()
        drain(self.worker)


@pytest.fixture
def ingest(settings: Settings) -> Iterator[Ingest]:
    running = Ingest(settings)
    yield running
    running.worker.stop.set()
    running.thread.join(30)
    running.pool.close()
    running.client.close()


class TaskWorker:
    """Stands in for `analytics worker`: runs the runs queued through the API, in order, as its huey task does
    (`execute(settings, name, run_id)`)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url
        self.settings, self.database_url = settings, settings.database_url
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _queued(self) -> list[tuple[Any, ...]]:
        return rows(self.database_url, "SELECT id, task_name FROM task_runs WHERE status = 'queued' ORDER BY id")

    def _run(self) -> None:
        while not self.stop.is_set():
            for run_id, name in self._queued():
                execute(self.settings, name, run_id)
            self.stop.wait(0.2)

    def finish(self, timeout: float = 60) -> None:
        """Wait until nothing is queued or running, then stop."""
        deadline = time.monotonic() + timeout
        while rows(self.database_url, "SELECT count(*) FROM task_runs WHERE status IN ('queued', 'running')")[0][0]:
            assert time.monotonic() < deadline, "queued task runs were not run"
            time.sleep(0.2)
        self.stop.set()
        self.thread.join(30)


def demo_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """The demo reads its settings from the environment, as the API does: the same JWT secret."""
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_demo_fills_the_tables_through_the_api(
    served: str,
    ingest: Ingest,
    database_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo_env(monkeypatch)
    started = datetime.now(UTC)
    tasks = TaskWorker(settings)
    try:
        assert main(["demo", "--url", served, *SMALL, "--wait", "60"]) == 0
        tasks.finish()
    finally:
        tasks.stop.set()
    ingest.finish()
    printed = capsys.readouterr()
    # The progress on stderr (not a terminal: a line at each tenth), then the summary on stdout.
    assert re.search(r"^history  [4-6]\d% ", printed.err, re.MULTILINE) and "history 100%" in printed.err
    summary = re.search(
        r"history .*, sent in \d+ s: ([\d,]+) events, ([\d,]+) geo decisions "
        r"\(([\d,]+) blocked, from (\d+) countries\), ([\d,]+) error logs, ([\d,]+) system metric samples",
        printed.out,
    )
    assert summary, printed.out
    events, geo, blocked, countries, errors, metrics = (int(g.replace(",", "")) for g in summary.groups())

    # Everything the demo says it sent is stored, through the stream and the ingest worker.
    assert rows(database_url, "SELECT count(*) FROM activity_events")[0][0] == events > 500
    assert rows(database_url, "SELECT count(*) FROM error_logs")[0][0] == errors > 0
    assert rows(database_url, "SELECT count(*) FROM system_metrics")[0][0] == metrics == 96 * 8  # 1 day, 15 min
    [(stored_geo, stored_blocked, allowed, stored_countries, travelers)] = rows(
        database_url,
        "SELECT count(*), count(*) FILTER (WHERE access_result = 'blocked'),"
        " count(*) FILTER (WHERE access_result = 'allowed'), count(DISTINCT country_code),"
        " count(*) FILTER (WHERE is_traveler) FROM geo_access_events",
    )
    assert (stored_geo, stored_blocked, stored_countries) == (geo, blocked, countries)
    assert blocked > 0 and allowed > 0 and countries >= 10 and travelers > 0
    scopes = {r[0] for r in rows(database_url, "SELECT DISTINCT restriction_scope FROM geo_access_events")}
    assert None in scopes and scopes - {None} <= {"country", "region", "city"} and scopes - {None}

    kinds = Counter(dict(rows(database_url, "SELECT activity_type, count(*) FROM activity_events GROUP BY 1")))
    assert {"session_start", "session_end", "view", "like", "comment", "recommendation_shown"} <= set(kinds)
    assert kinds["view"] > kinds["session_start"] >= kinds["session_end"] > 0
    # Sessions are whole: each one that ended started in the window, with its own id.
    [(ended, started_too)] = rows(
        database_url,
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM activity_events s WHERE s.session_id ="
        " e.session_id AND s.activity_type = 'session_start')) FROM activity_events e"
        " WHERE activity_type = 'session_end'",
    )
    assert ended == started_too
    assert rows(database_url, "SELECT count(DISTINCT community_id) FROM activity_events")[0][0] == 4
    [(oldest, newest)] = rows(database_url, "SELECT min(time), max(time) FROM activity_events")
    assert started - timedelta(days=1) - timedelta(minutes=6) <= oldest and newest <= datetime.now(UTC)
    assert newest - oldest > timedelta(hours=20)  # spread over the day, not bunched

    levels = {r[0] for r in rows(database_url, "SELECT DISTINCT level FROM error_logs")}
    assert levels & {"error", "warning"}
    assert rows(database_url, "SELECT count(*) FROM error_logs WHERE fingerprint IS NULL")[0][0] == 0
    metric_types = {r[0] for r in rows(database_url, "SELECT DISTINCT metric_type FROM system_metrics")}
    assert metric_types == {"cpu_usage", "memory_usage", "disk_usage", "load_average", "database_connections",
                            "database_size_bytes", "redis_memory_bytes", "stream_backlog"}  # fmt: skip

    # The demo waited for the ingest worker (the backlog on /metrics) and for the rollup refresh over the
    # history, then queued the snapshots and reports; every task ran on the demo's data without a failure.
    assert "ingest: every event is stored" in printed.out
    assert re.search(r"refresh_rollups \(run \d+\): success", printed.out), printed.out
    assert "queued for the task worker: update_community_analytics (run " in printed.out
    runs = rows(database_url, "SELECT task_name, status, trigger, error FROM task_runs ORDER BY id")
    assert runs == [(task, "success", "manual", None) for task in TASKS]
    # The refresh ran after the ingest: the rollups hold the whole history (back-dated rows included).
    assert rows(database_url, "SELECT sum(events) FROM activity_hourly")[0][0] == events
    [(snapshots, active)] = rows(database_url, "SELECT count(*), max(active_users) FROM daily_analytics")
    assert snapshots >= 1 and active > 0
    looks_like_a_platform(database_url)


# A healthy platform has no failed task run: these show nothing after the demo, as they should.
HEALTHY_EMPTY = frozenset({"panel Failed task runs", "panel Recent failures", "annotation Task failures"})
# Every figure of a daily row (`new_users` is `new_registrations` under its documented name).
DAILY_FIGURES = frozenset(DailyAnalytics.__struct_fields__) - {"id", "date", "created_at", "updated_at", "new_users"}


def looks_like_a_platform(database_url: str) -> None:
    """After the demo, every figure of the daily rows is non-zero on some day (presence from the back-dated
    history's quarter hours included), and every SQL query of every dashboard shows data for one of the demo's
    communities and for all of them, as Grafana would run it."""
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        daily = cur.execute("SELECT * FROM daily_analytics").fetchall()
    zero = sorted(name for name in DAILY_FIGURES if not any(row[name] for row in daily))
    assert zero == [], f"daily-row figures 0 on every day after the demo: {zero}"
    # The community with geo restrictions (one of the four in the test's world) has activity too.
    [(community,)] = rows(database_url, "SELECT community_id FROM geo_access_events GROUP BY 1"
                          " ORDER BY count(*) FILTER (WHERE access_result = 'blocked') DESC LIMIT 1")  # fmt: skip
    now = datetime.now(UTC)
    empty = []
    for original in SQL_QUERIES:
        if original.source in HEALTHY_EMPTY:
            continue
        values = tuple((name, str(community) if value != ALL else value) for name, value in original.variables)
        query = replace(original, variables=values)
        text = grafana_sql(query, now, timescaledb=False)
        with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
            found = conn.execute(text).fetchall()  # type: ignore[call-overload]  # the dashboard's own text
        numbers = [v for row in found for v in row if is_number(v)]
        if not found or (numbers and not any(numbers)):
            empty.append(query.id)
    assert empty == [], "dashboard queries without data after the demo:\n" + "\n".join(empty)


def test_live_minutes_keep_members_coming(served: str, ingest: Ingest, database_url: str, settings: Settings) -> None:
    """The live loop sends what happens in real time, at the time it happens."""
    world = build_world(random.Random(3), 1, 40, datetime.now(UTC), datetime.now(UTC))
    # A community busy enough to start many sessions in a few seconds, even at its quietest hour.
    busy: Community = world.communities[0]
    busy.rate = 86_400 * 40.0
    busy.cumulative = [busy.rate * (i + 1) / len(busy.members) for i in range(len(busy.members))]
    simulator = Simulator(World([busy], world.users), random.Random(3), datetime.now(UTC), metrics=False)
    sender = Sender(Api(served, settings), 500, 2)
    since = datetime.now(UTC)
    out, err = io.StringIO(), io.StringIO()
    try:
        _live(simulator, sender, since, Options(url=served, live_minutes=0.08), out, err)
    finally:
        sender.close()
        sender.api.close()
    ingest.finish()
    assert "live: " in out.getvalue()
    [(count, oldest, newest)] = rows(database_url, "SELECT count(*), min(time), max(time) FROM activity_events")
    assert count == sender.sent["activity"] + sender.sent["platform"] > 0
    assert since <= oldest and newest <= datetime.now(UTC)
    assert rows(database_url, "SELECT count(*) FROM geo_access_events")[0][0] == sender.sent["geo"] > 0
    assert rows(database_url, "SELECT count(*) FROM system_metrics")[0][0] == 0  # live: the worker samples those


def test_same_seed_same_history_and_every_item_is_a_valid_body() -> None:
    end = datetime(2026, 11, 25, 13, 7, tzinfo=UTC)
    start = end - timedelta(days=2)
    first = history(5, 6, 300, start, end)
    assert first == history(5, 6, 300, start, end)
    assert first != history(6, 6, 300, start, end)
    assert [e[0] for e in first] == sorted(e[0] for e in first)
    assert all(start - timedelta(minutes=5) <= when < end for when, *_ in first)
    for _, _, kind, item in first:
        msgspec.json.decode(msgspec.json.encode(item), type=BODIES[kind])  # what the API decodes, strictly
    assert set(Counter(kind for _, _, kind, _ in first)) == set(BODIES)


def test_communities_follow_their_local_clock() -> None:
    world = build_world(random.Random(1), 6, 400, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
    for community in world.communities:
        offset = timedelta(hours=community.utc_offset)
        monday = datetime(2026, 11, 23, tzinfo=UTC) - offset  # local midnight, a Monday
        evening, night = (
            community.sessions_per_hour(monday + timedelta(hours=20)),
            community.sessions_per_hour(monday + timedelta(hours=4)),
        )
        assert evening > 10 * night > 0
        saturday = monday + timedelta(days=5, hours=20)
        assert community.sessions_per_hour(saturday) == pytest.approx(evening * community.weekend_factor)
        day = sum(community.sessions_per_hour(monday + timedelta(hours=h)) for h in range(24))
        assert day == pytest.approx(community.rate)  # the curve only shapes the day's sessions


def test_days_beyond_what_the_api_accepts_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_env(monkeypatch, TRACK_MAX_AGE="86400")
    assert main(["demo", "--url", "http://127.0.0.1:9", "--days", "2"]) == 2
    assert "--days: at most 1" in capsys.readouterr().err


def test_history_stays_inside_track_max_age(settings_for: Any) -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    settings = settings_for(None, None, TRACK_MAX_AGE=str(7 * 86400))
    assert history_window(settings, 7, now) == now - timedelta(days=7) + AGE_MARGIN
    assert history_window(settings, 3, now) == now - timedelta(days=3)
    assert history_window(settings, 0, now) == now


def test_demo_needs_the_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("ANALYTICS_DATA_DIR", str(tmp_path / ".analytics"))  # no `analytics dev` secret there either
    assert main(["demo", "--url", "http://127.0.0.1:9", "--days", "1"]) == 2
    assert "JWT_SECRET: unset, and no development secret in" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        return int(closed.getsockname()[1])


def test_the_dev_stacks_secret_signs_the_demos_tokens_as_analytics_token_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    data = tmp_path / ".analytics"
    dev_jwt_secret(data, create=True)  # what `analytics dev` leaves behind
    monkeypatch.setenv("ANALYTICS_DATA_DIR", str(data))
    port = closed_port()
    assert main(["demo", "--url", f"http://127.0.0.1:{port}", "--days", "1"]) == 1  # past the secret: the API
    assert f"cannot reach the API at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_an_unreachable_api_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_env(monkeypatch)
    port = closed_port()
    started = time.monotonic()
    assert main(["demo", "--url", f"http://127.0.0.1:{port}", "--users", "20", "--days", "1"]) == 1
    assert time.monotonic() - started < CHECK_DEADLINE + 5  # not REQUEST_DEADLINE (120 s) of retries
    err = capsys.readouterr().err
    assert f"cannot reach the API at http://127.0.0.1:{port} (is it running? `make dev` starts it)" in err


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream, "history")
    progress.update(0.5, "Tue 13:00", force=True)
    progress.done("1,000 events")
    assert stream.getvalue() == (
        "\rhistory [" + "#" * 15 + "-" * 15 + "]  50% Tue 13:00\x1b[K"
        "\rhistory [" + "#" * 30 + "] 100% 1,000 events\x1b[K\n"
    )

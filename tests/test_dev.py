"""`analytics dev` with no URLs set: embedded servers, readiness, a clean stop, and data kept across runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.tools.dev import MAX_RESTARTS
from service.tools.localstack import free_port

ROOT = Path(__file__).resolve().parent.parent


def processes_mentioning(marker: str) -> list[str]:
    """Live processes (not zombies) whose command line or environment contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split(") ")[1].startswith("Z"):
                continue
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            found.append(f"{entry.name}: {command}")
    return found


class DevRun:
    """One `analytics dev` process and the output it printed so far."""

    def __init__(self, data_dir: Path, port: int) -> None:
        own = ("DATABASE_URL", "REDIS_URL", "INGEST_METRICS_PORT", "WORKER_METRICS_PORT")
        env = {k: v for k, v in os.environ.items() if k not in own}
        env.update(ANALYTICS_DATA_DIR=str(data_dir), ANALYTICS_PORT=str(port), PYTHONUNBUFFERED="1")
        self.port = port
        self.log = data_dir.parent / f"dev-{port}.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "dev"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, as under `make dev` in a terminal
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as response:
                    body: dict[str, object] = json.loads(response.read())
                    return body
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"not ready within {timeout}s:\n{self.output()}")

    def database_url(self) -> str:
        match = re.search(r"PostgreSQL\s+(postgresql://\S+)", self.output())
        assert match, self.output()
        return match.group(1)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)

    def terminate_group(self) -> int:
        """SIGTERM to the whole process group, then again to `analytics dev` at once, as `make dev` gets it from
        a service manager: the group's signal, and make forwarding its own."""
        os.killpg(self.process.pid, signal.SIGTERM)
        for _ in range(200):  # and more: however many come, and whenever
            time.sleep(0.001)
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def metrics_served(port: int, timeout: float = 30) -> bool:
    """Whether a worker serves /metrics on `port` within `timeout` seconds (it starts after the API is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    return False


@pytest.fixture
def data_dir(scratch_dir: Path) -> Iterator[Path]:
    path = scratch_dir / f"dev-{os.getpid()}-{time.monotonic_ns()}" / ".analytics"
    path.parent.mkdir()
    yield path


def test_dev_stack_starts_stops_cleanly_and_keeps_its_data(data_dir: Path) -> None:
    # Another program on the workers' default metrics ports: the stack takes free ones and says which.
    with contextlib.ExitStack() as held:
        for port in (9101, 9102):
            with contextlib.suppress(OSError):  # already taken by something else: held all the same
                held.enter_context(socket.create_server(("127.0.0.1", port)))
        first = DevRun(data_dir, free_port())
        try:
            first.wait_ready()
            ports = re.search(
                r"ingest http://127\.0\.0\.1:(\d+)/metrics\s+worker http://127\.0\.0\.1:(\d+)/", first.output()
            )
            assert ports and {int(p) for p in ports.groups()}.isdisjoint({9101, 9102}), first.output()
            for port in ports.groups():
                assert metrics_served(int(port)), first.output()
        except BaseException:
            first.interrupt()
            raise
    try:
        assert first.wait_ready() == {
            "status": "ready",
            "engine": "postgres",
            "checks": {"database": {"ok": True}, "redis": {"ok": True}, "migrations": {"ok": True}},
            "failing": [],
        }
        with psycopg.connect(first.database_url(), autocommit=True) as conn:
            conn.execute("INSERT INTO daily_analytics (date, total_users) VALUES ('2026-01-01', 42)")
    finally:
        assert first.interrupt() == 0, first.output()
    assert processes_mentioning(str(data_dir)) == []
    assert "migrations applied now: migrations/0001_core.sql" in first.output()

    second = DevRun(data_dir, free_port())
    try:
        assert second.wait_ready()["status"] == "ready"
        with psycopg.connect(second.database_url(), autocommit=True) as conn:
            assert conn.execute("SELECT total_users FROM daily_analytics WHERE date = '2026-01-01'").fetchone() == (42,)
    finally:
        assert second.terminate_group() == 0, second.output()
    assert "Traceback" not in second.output()
    assert "SIGTERM received; stopping" in second.output() and second.output().rstrip().endswith("stopped")
    assert "migrations applied now: none" in second.output()
    assert processes_mentioning(str(data_dir)) == []


def test_dev_stops_everything_when_a_child_cannot_run(data_dir: Path) -> None:
    occupied = free_port()
    with socket.create_server(("127.0.0.1", occupied)):
        run = DevRun(data_dir, occupied)  # the API cannot bind its port: it exits at every start
        assert run.process.wait(90) == 1, run.output()
    assert len(re.findall(r"api exited with code \d+; starting it again in", run.output())) == MAX_RESTARTS
    assert re.search(rf"api exited with code \d+, {MAX_RESTARTS} restarts within 60s; stopping the stack", run.output())
    assert processes_mentioning(str(data_dir)) == []


def test_dev_starts_a_killed_child_again(data_dir: Path) -> None:
    run = DevRun(data_dir, free_port())
    try:
        run.wait_ready()
        [ingest] = [line for line in processes_mentioning(str(data_dir)) if line.endswith(" -m service ingest ")]
        os.kill(int(ingest.split(":")[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = [line for line in processes_mentioning(str(data_dir)) if line.endswith(" -m service ingest ")]
            if again and again != [ingest]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the ingest worker was not started again:\n{run.output()}")
        assert re.search(r"ingest exited with code -9; starting it again in 0.25s", run.output()), run.output()
        assert run.wait_ready()["status"] == "ready"
        assert run.process.poll() is None
    finally:
        assert run.interrupt() == 0, run.output()
    assert processes_mentioning(str(data_dir)) == []

"""The service's commands as child processes of a test: `analytics serve`, `worker`, `ingest` on the test servers.

    env = service_env(database_url, redis_url, ANALYTICS_PORT=str(port))
    with running(["serve"], env, tmp_path / "serve.log") as server:
        until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, server, tmp_path / "serve.log")

A process the test leaves running is killed with its whole process group; a wait that times out, or a process that
exits while waited on, fails the test with the tail of that process's log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.settings import ENV_NAMES
from service.observability.exposition import MULTIPROC_ENV
from tests.support import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL = 60  # lines of a child's log shown when a wait on it fails


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The process environment without any of the service's settings, plus the test servers and these."""
    names = {*ENV_NAMES.values(), MULTIPROC_ENV}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        JWT_SECRET=TEST_JWT_SECRET,
        ANALYTICS_HOST="127.0.0.1",
        ANALYTICS_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def log_tail(log: Path, lines: int = LOG_TAIL) -> str:
    """The last `lines` lines of a child's log."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log})"
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`analytics <args>` as a child process logging to `log`; killed with its whole group if the test leaves
    it running."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            env=env,
            cwd=log.parent,  # no .env file there
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def until(check: Callable[[], Any], process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> Any:
    """Poll `check` until it returns something truthy; fail with the process's log tail when the process exits
    or the deadline passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the process exited with {process.returncode}; its log ends:\n{log_tail(log)}")
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"gave up after {seconds:.0f}s; the process's log ends:\n{log_tail(log)}")

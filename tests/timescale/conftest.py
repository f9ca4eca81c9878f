"""A real TimescaleDB (Timescale-License build) for the timescaledb engine's contract tests.

Without Docker: the PGlite build of TimescaleDB served over the PostgreSQL protocol (`server.mjs`, npm
packages pinned in package-lock.json, installed by `make test` into tests/timescale/node_modules). It takes one
connection at a time and has no COPY FROM STDIN, so the tests write with INSERTs in small batches and let one
client talk to it at a time. With `TEST_DOCKER=1` and a Docker engine: the official TimescaleDB image through
testcontainers instead. If the npm install failed (no registry), the tests are skipped with its reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.tools.localstack import Child, free_port

HARNESS = Path(__file__).resolve().parent
INSTALL_LOG = HARNESS / "npm-install.log"
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.23.0-pg17"


def _not_installed() -> str | None:
    if shutil.which("node") is None:
        return "TimescaleDB harness: `node` is not installed"
    if (HARNESS / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        return None
    if INSTALL_LOG.exists():
        lines = [line for line in INSTALL_LOG.read_text(errors="replace").splitlines() if line.strip()]
        reason = lines[-1] if lines else "no output"
        return f"TimescaleDB harness: `npm ci` in tests/timescale failed: {reason}"
    return "TimescaleDB harness not installed: run `make test` (it runs `npm ci` in tests/timescale)"


class PgliteServer(Child):
    """`node server.mjs <port>` with its output in `directory/pglite.log`."""

    name = "pglite"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def start(self, timeout: float = 60.0) -> None:
        self.spawn(["node", str(HARNESS / "server.mjs"), str(self.port)])
        deadline = time.monotonic() + timeout
        while "ready" not in self.log_path.read_text(errors="replace"):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the TimescaleDB harness did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass


def skip_unless_ci(reason: str) -> None:
    """Skip a test that needs the TimescaleDB harness, except under CI=true: there the engine must never go
    untested while the run is green, so the missing harness fails the test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the TimescaleDB harness is missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def timescale_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty TimescaleDB for one test module."""
    if os.environ.get("TEST_DOCKER") == "1":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(image=TIMESCALEDB_IMAGE, driver=None) as container:
            yield container.get_connection_url()
        return
    if reason := _not_installed():
        skip_unless_ci(reason)
    server = PgliteServer(tmp_path_factory.mktemp("pglite"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()

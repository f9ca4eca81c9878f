"""How metrics leave a process: the exposition text, multiprocess mode, the workers' own metrics servers.

Multiprocess mode (several API worker processes): prometheus-client keeps each process's values in files under
PROMETHEUS_MULTIPROC_DIR, which must be set before the workers start and emptied at start-up
(`multiprocess_dir()`, used by `analytics serve`); a scrape, whichever worker answers it, merges every file.

Dead workers: uvicorn's supervisor restarts a worker that dies but offers no hook to run when it does. So a
worker marks itself dead when it shuts down normally (the app's shutdown hook), and the process answering a
scrape first marks every process that left files behind and no longer exists (`mark_dead_processes`); that
covers killed and crashed workers too. Marking removes only `live*` gauges (the per-process start time):
the counters and histograms of a dead worker stay in the sums, as Prometheus expects of counters. A pid the
system reuses for a new worker takes over the old files, which keeps its counters monotonic.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.core.settings import ConfigError
from service.observability.metrics import process_started

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(?P<pid>\d+)\.db$")


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (always, when no token is configured)."""
    if token is None:
        return True
    scheme, _, credentials = (header or "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def multiprocess_path() -> Path | None:
    """The directory of multiprocess mode, when this process runs in it."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


class _Collected:
    """A collector over already collected metrics (one registry answers a scrape)."""

    def __init__(self, *sources: Iterable[Metric]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source


def render(scrape_time: list[Metric]) -> bytes:
    """The exposition text: this process's metrics (all processes' in multiprocess mode) plus `scrape_time`,
    the figures read from the storage servers once for this scrape."""
    path = multiprocess_path()
    if path is None:
        return generate_latest(_Collected(REGISTRY.collect(), scrape_time))
    mark_dead_processes(path)
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(path))  # type: ignore[no-untyped-call]
    return generate_latest(_Collected(merged.collect(), scrape_time))


def mark_dead_processes(path: Path) -> list[int]:
    """Mark dead every process that left live gauges in `path` and no longer exists; the pids marked."""
    dead = []
    for file in path.glob("gauge_live*.db"):
        match = _LIVE_FILE.match(file.name)
        if match and not _alive(int(match["pid"])):
            dead.append(int(match["pid"]))
    for pid in sorted(set(dead)):
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(set(dead))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def process_stopped() -> None:
    """A process leaving multiprocess mode normally removes its live gauges (its start time) itself."""
    path = multiprocess_path()
    if path is not None:
        mark_process_dead(os.getpid(), str(path))  # type: ignore[no-untyped-call]


@contextmanager
def multiprocess_dir(workers: int) -> Iterator[Path | None]:
    """Multiprocess mode for the API's worker processes, set up before they start.

    PROMETHEUS_MULTIPROC_DIR set (`analytics dev` sets it): that directory, created if missing and emptied of
    metric files left by a previous run. Unset and several workers: a temporary directory, removed at the end.
    One worker and unset: plain single-process metrics (None).
    """
    given = multiprocess_path()
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("*.db"):
            stale.unlink()
        yield given
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="analytics-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by the worker processes uvicorn spawns
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the worker's log."""


def _guarded(app: WSGIApplication, token: str | None) -> WSGIApplication:
    if token is None:
        return app

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if authorized(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        body = json.dumps({"status_code": 401, "detail": "metrics need `Authorization: Bearer <METRICS_TOKEN>`"})
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")])
        return [body.encode()]

    return guarded


@contextmanager
def metrics_server(host: str, port: int, token: str | None, variable: str) -> Iterator[int | None]:
    """Serve this process's metrics (`/metrics`, prometheus-client's WSGI app and threading server) on
    host:port while the block runs, behind the bearer token when one is set; the port (None when `port` is 0:
    not served). `variable` names the port's setting in the error when the port cannot be bound."""
    if port == 0:
        yield None
        return
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    try:
        httpd = make_server(host, port, _guarded(make_wsgi_app(REGISTRY), token), Server, _QuietHandler)
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot serve metrics on {host}:{port} ({exc.strerror or exc})") from exc
    process_started()
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics", host, httpd.server_port)
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

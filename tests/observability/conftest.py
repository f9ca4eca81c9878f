"""A real Prometheus scraping a running service, for tests of the alert rules and the dashboards' PromQL.

The session-scoped fixture `prometheus` starts, in a temporary directory, the service's three processes as
subprocesses on free ports of 127.0.0.1 (`python -m service serve`, `ingest` and `worker --no-periodic`), on a
migrated database of their own and a Redis database of their own on the test Redis server (number 15, or 14
when the tests' own is 15; flushed at start and end), with METRICS_TOKEN set; then Debian's Prometheus
(`/usr/bin/prometheus`) with the scrape jobs of prometheus/prometheus.yml pointed at them (same job names, 1 s
scrape and rule evaluation intervals, the bearer token on every analytics job) and the repository's rule files
loaded. It sends some traffic (tracking, a rejected event, a report, an error log,
two task runs) and waits until every target is up, the series the rules read have samples and the recording
rules have evaluated, so rate() over them has two points to work with.

Use it from any test in tests/observability/:

    def test_panel(prometheus: PrometheusStack) -> None:
        series = prometheus.query('sum by (route) (rate(analytics_http_requests_total[5m]))')
        assert series, "no data"

`query` and `query_range` raise `PrometheusQueryError` with Prometheus's own error text when it refuses an
expression (a parse error, an unknown function, a many-to-many match). The processes' logs stay in
`PrometheusStack.directory` while the session runs (`log_tail(name)` reads them); everything is stopped
(terminate, wait, kill) and the database dropped at the end of the session.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
import yaml

from service.core.settings import ENV_NAMES, Settings, from_env
from service.tools.localstack import free_port
from tests.conftest import create_database, drop_database
from tests.support import TEST_JWT_SECRET, bearer

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
PROMETHEUS_BINARY = "/usr/bin/prometheus"
INSTALL_HINT = (
    "install Debian's `prometheus` package (`apt-get install prometheus`; .ci/run installs it in CI), "
    "which provides /usr/bin/prometheus and promtool"
)
STARTUP_TIMEOUT = 90.0  # seconds for every process to answer and Prometheus to hold the first samples
# Series that must have samples before the fixture is handed out: one per process and kind of figure.
REQUIRED_SERIES = (
    'up{job="prometheus"}',
    'analytics_http_requests_total{job="analytics-api"}',
    'analytics_events_accepted_total{job="analytics-api"}',
    'analytics_events_ingested_total{job="analytics-ingest"}',
    'analytics_task_runs_total{job="analytics-worker"}',
    "analytics_db_up",
    "analytics_redis_up",
    "analytics_stream_backlog",
)
TASKS_RUN = ("update_system_metrics", "process_error_logs")  # quick tasks, run once so their series exist

T = TypeVar("T")


class PrometheusQueryError(Exception):
    """Prometheus refused a query; the message is its `errorType: error` text."""


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the child gets SIGTERM when the test session dies without tearing down (kill -9).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Process:
    """A child process of the fixture, logging to `<directory>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], directory: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = (directory / f"{name}.log").open("ab")
        # cwd is the temporary directory, so that the service reads no `.env` of the working tree.
        self.popen = subprocess.Popen(
            argv, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate, wait up to `timeout` seconds, then kill."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


@dataclass
class PrometheusStack:
    """A running service and the Prometheus scraping it (the `prometheus` fixture)."""

    prometheus_url: str  # http://127.0.0.1:<port> of Prometheus
    service_url: str  # http://127.0.0.1:<port> of the API
    settings: Settings  # the settings the service processes run with (database, Redis, JWT secret, METRICS_TOKEN)
    directory: Path  # the Prometheus configuration and data, and one log file per process
    jobs: dict[str, str]  # scrape job name -> host:port it scrapes
    http: httpx.Client = field(repr=False)

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of a Prometheus HTTP API answer (`path` after /api/v1/), POSTed as a form."""
        response = self.http.post(f"{self.prometheus_url}/api/v1/{path}", data=params)
        try:
            body = response.json()
        except ValueError:
            raise PrometheusQueryError(f"{path}: HTTP {response.status_code}: {response.text[:500]}") from None
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Any]:
        """An instant query: for a vector, a list of {"metric": {...}, "value": [time, "value"]} (empty: no data)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        result: list[Any] = self.api("query", **params)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        """A range query: a list of {"metric": {...}, "values": [[time, "value"], ...]}."""
        result: list[Any] = self.api("query_range", query=expr, start=start, end=end, step=step)["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with its `labels`, `health` ("up"/"down") and `lastError`."""
        response = self.http.get(f"{self.prometheus_url}/api/v1/targets", params={"state": "active"})
        response.raise_for_status()
        targets: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return targets

    def rule_groups(self) -> list[dict[str, Any]]:
        """The loaded rule groups, each rule with its `health` and `lastError` from its last evaluation."""
        response = self.http.get(f"{self.prometheus_url}/api/v1/rules")
        response.raise_for_status()
        groups: list[dict[str, Any]] = response.json()["data"]["groups"]
        return groups

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of a process's log: `api`, `ingest`, `worker` or `prometheus`."""
        path = self.directory / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def logs(self) -> str:
        """The end of every process's log, for failure messages."""
        return "\n".join(
            f"--- {name}.log ---\n{self.log_tail(name)}" for name in ("api", "ingest", "worker", "prometheus")
        )


def prometheus_binary() -> str:
    """Debian's Prometheus server; fails the test (never skips it) when the package is missing."""
    if Path(PROMETHEUS_BINARY).is_file():
        return PROMETHEUS_BINARY
    if found := shutil.which("prometheus"):
        return found
    pytest.fail(f"{PROMETHEUS_BINARY} not found: {INSTALL_HINT}")


def other_redis_database(url: str) -> str:
    """The same Redis server, another database: the other tests flush theirs, and a running ingest or task
    worker there would take their stream entries and queued tasks."""
    parts = urlsplit(url)
    current = parts.path.strip("/") or "0"
    database = "14" if current == "15" else "15"
    return urlunsplit(parts._replace(path=f"/{database}"))


def service_environment(settings_env: dict[str, str]) -> dict[str, str]:
    """The process environment without any of the service's own variables (a developer's shell must not leak
    into the stack), plus `settings_env`."""
    own = set(ENV_NAMES.values()) | {"PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in own}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **settings_env}


def scrape_config(jobs: dict[str, str], metrics_token: str, rule_files: list[str]) -> dict[str, Any]:
    """prometheus/prometheus.yml with every job pointed at the test processes, 1 s intervals and the token."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = rule_files
    configured = {job["job_name"] for job in config["scrape_configs"]}
    assert configured == set(jobs), f"prometheus.yml has the jobs {sorted(configured)}, the fixture runs {sorted(jobs)}"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [jobs[job["job_name"]]]}]
        if job["job_name"].startswith("analytics-"):
            # What prometheus.yml's comment tells users to add when METRICS_TOKEN is set.
            job["authorization"] = {"type": "Bearer", "credentials": metrics_token}
    return config


def rule_files() -> list[str]:
    """The absolute paths of the rule files prometheus.yml loads."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    files = sorted({str(p) for pattern in config["rule_files"] for p in PROMETHEUS_CONFIG.parent.glob(pattern)})
    assert files, f"no rule file matches {config['rule_files']} beside {PROMETHEUS_CONFIG}"
    return files


def wait_until(condition: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
    """Poll `condition` until it returns something other than None/False; fail with `what()` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        last: Exception | None = None
        try:
            result = condition()
        except (httpx.HTTPError, PrometheusQueryError) as exc:  # not listening yet, or no data yet
            result, last = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what()}" + (f" (last error: {last})" if last else "")
            )
        time.sleep(0.25)


def send_traffic(http: httpx.Client, base: str, settings: Settings) -> None:
    """Requests that move every counter the rules and dashboards read; fails on an unexpected status."""
    staff = bearer(settings, "1", staff=True)

    def expect(status: int, response: httpx.Response) -> None:
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url.path}: expected {status}, got "
            f"{response.status_code}: {response.text[:500]}"
        )

    for user in range(1, 6):
        expect(202, http.post(f"{base}/api/community-analytics/track/", headers=staff, json={
            "community_id": 1, "user_id": user, "activity_type": "view", "event_id": str(uuid.uuid4()),
        }))  # fmt: skip
    expect(202, http.post(f"{base}/api/community-analytics/track/batch/", headers=staff, json=[
        {"community_id": 1, "user_id": 7, "activity_type": "join"},
        {"community_id": 1, "activity_type": "bogus"},  # rejected: counted as a validation rejection
    ]))  # fmt: skip
    for result, country in (("blocked", "DE"), ("allowed", "FR")):
        expect(202, http.post(f"{base}/api/geo-analytics/track/", headers=staff, json={
            "community_id": 1, "user_id": 7, "access_result": result, "restriction_scope": "country",
            "location": {"country": country},
        }))  # fmt: skip
    expect(400, http.post(f"{base}/api/community-analytics/track/", headers=staff, json={"community_id": "one"}))
    expect(200, http.get(f"{base}/api/community-analytics/1/report/", headers=staff, params={"days": 7}))
    expect(404, http.get(f"{base}/no-such-page", headers=staff))
    expect(201, http.post(f"{base}/api/errors/", headers=staff, json={"level": "error", "message": "fixture error"}))


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
    template_database: str,
    redis_server_url: str,
) -> Iterator[PrometheusStack]:
    """A running API, ingest worker and task worker scraped by a real Prometheus (see the module docstring)."""
    binary = prometheus_binary()
    directory = tmp_path_factory.mktemp("prometheus")
    database_url = create_database(postgres_admin_url, template_database)
    redis_url = other_redis_database(redis_server_url)
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    ports = {name: free_port() for name in ("api", "ingest", "worker", "prometheus")}
    settings_env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "METRICS_TOKEN": secrets.token_urlsafe(24),
        "ANALYTICS_HOST": "127.0.0.1",
        "ANALYTICS_PORT": str(ports["api"]),
        "ANALYTICS_WORKERS": "1",
        "ANALYTICS_LOG_LEVEL": "INFO",
        "INGEST_METRICS_PORT": str(ports["ingest"]),
        "INGEST_CONSUMER": "prometheus-fixture",
        "WORKER_METRICS_PORT": str(ports["worker"]),
        "DATABASE_WAIT": "10",
    }
    settings = from_env(settings_env, dotenv=None)
    assert settings.metrics_token is not None
    env = service_environment(settings_env)
    jobs = {
        "analytics-api": f"127.0.0.1:{ports['api']}",
        "analytics-ingest": f"127.0.0.1:{ports['ingest']}",
        "analytics-worker": f"127.0.0.1:{ports['worker']}",
        "prometheus": f"127.0.0.1:{ports['prometheus']}",
    }
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(jobs, settings.metrics_token, rule_files()), sort_keys=False))

    children: list[Process] = []
    http = httpx.Client(timeout=30.0)
    stack = PrometheusStack(
        prometheus_url=f"http://127.0.0.1:{ports['prometheus']}",
        service_url=f"http://127.0.0.1:{ports['api']}",
        settings=settings,
        directory=directory,
        jobs=jobs,
        http=http,
    )
    try:
        python = [sys.executable, "-m", "service"]
        for name, argv in (("api", ["serve"]), ("ingest", ["ingest"]), ("worker", ["worker", "--no-periodic"])):
            children.append(Process(name, [*python, *argv], directory, env))
        children.append(Process("prometheus", [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ], directory))  # fmt: skip

        def alive() -> None:
            for child in children:
                if not child.alive():
                    pytest.fail(f"{child.name} exited at start-up:\n{stack.logs()}")

        def api_ready() -> bool:
            alive()
            return http.get(f"{stack.service_url}/ready").status_code == 200

        def prometheus_ready() -> bool:
            alive()
            return http.get(f"{stack.prometheus_url}/-/ready").status_code == 200

        wait_until(api_ready, STARTUP_TIMEOUT, lambda: f"the API to be ready:\n{stack.logs()}")
        wait_until(prometheus_ready, STARTUP_TIMEOUT, lambda: f"Prometheus to be ready:\n{stack.logs()}")
        send_traffic(http, stack.service_url, settings)
        for task in TASKS_RUN:
            response = http.post(
                f"{stack.service_url}/api/tasks/{task}/run/", headers=bearer(settings, "1", staff=True)
            )
            assert response.status_code == 202, f"running {task}: {response.status_code} {response.text[:500]}"

        def targets_state() -> str:
            try:
                rows = [f"{t['labels']['job']}: {t['health']} {t['lastError']}" for t in stack.targets()]
            except httpx.HTTPError as exc:
                rows = [f"targets unavailable: {exc}"]
            return "\n".join(rows)

        def all_up() -> bool:
            alive()
            healthy = {t["labels"]["job"] for t in stack.targets() if t["health"] == "up"}
            return healthy == set(jobs)

        wait_until(all_up, STARTUP_TIMEOUT, lambda: f"every target up:\n{targets_state()}\n{stack.logs()}")

        def missing_series() -> list[str]:
            return [expr for expr in REQUIRED_SERIES if not stack.query(expr)]

        wait_until(lambda: not missing_series(), STARTUP_TIMEOUT,
                   lambda: f"samples of {missing_series()}:\n{targets_state()}\n{stack.logs()}")  # fmt: skip

        # A second round after the first samples, so that rates over the counters are above zero, and
        # recording rules evaluated over them.
        send_traffic(http, stack.service_url, settings)
        wait_until(lambda: stack.query("job:analytics_http_requests:rate5m > 0"), STARTUP_TIMEOUT,
                   lambda: f"recorded request rates above 0:\n{stack.logs()}")  # fmt: skip
        yield stack
    finally:
        # Prometheus first (it would only log failed scrapes), then the producers before the storage they use.
        for child in reversed(children):
            child.stop(timeout=15)
        http.close()
        store.flushdb()
        store.close()
        drop_database(postgres_admin_url, database_url)

"""prometheus/: promtool checks and unit tests, the rules' conventions, and every rule run by a real Prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.core.task_catalog import TASKS
from service.observability.metrics import COMMUNITY_SURGE_BASELINE, COMMUNITY_SURGE_LAST_HOUR, COMMUNITY_SURGE_RATIO
from tests.observability.conftest import INSTALL_HINT, TASKS_RUN, PrometheusQueryError, PrometheusStack

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORDED_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
# A metric the service or Prometheus exports, where a rule reads it: not part of a recorded name
# (`job:analytics_...:rate5m`).
EXPORTED_NAME = re.compile(r"(?<![\w:])(?:analytics|prometheus)_[a-z0-9_]+(?![\w:])")
# Exported only for communities with METRICS_SURGE_MIN_EVENTS in their last hour, which the fixture's traffic does
# not reach: tests/observability/test_surge.py scrapes them from a service with surging communities.
SURGE_METRICS = frozenset(
    spec.name for spec in (COMMUNITY_SURGE_RATIO, COMMUNITY_SURGE_LAST_HOUR, COMMUNITY_SURGE_BASELINE)
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root; a missing promtool fails the test (CI installs it)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(f"promtool not found: {INSTALL_HINT}")
    return subprocess.run([binary, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


def rules() -> list[dict[str, Any]]:
    """Every rule of every rule file, each with the `group` it belongs to."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [{**rule, "group": group["name"]} for rule in group["rules"]]
    return found


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def test_the_config_is_valid_and_loads_the_rule_files() -> None:
    result = promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert_ok(result)
    assert f"{len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_the_config_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "analytics-api": ["api:8000"],
        "analytics-ingest": ["ingest:9101"],
        "analytics-worker": ["worker:9102"],
        "prometheus": ["localhost:9090"],
    }
    assert config["global"]["scrape_interval"] == "15s"


def test_the_rule_files_are_valid() -> None:
    assert RULE_FILES
    assert_ok(promtool("check", "rules", *RULE_FILES))


def test_the_rule_unit_tests_pass() -> None:
    assert UNIT_TEST_FILES
    result = promtool("test", "rules", *UNIT_TEST_FILES)
    assert_ok(result)
    assert result.stdout.count("SUCCESS") == len(UNIT_TEST_FILES), result.stdout


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"


def test_every_alert_has_a_severity_summary_and_description() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert "{{" in rule["annotations"]["description"], f"{rule['alert']}: the description quotes no value"


def test_recorded_names_follow_level_metric_operations() -> None:
    for rule in rules():
        if "record" in rule:
            assert RECORDED_NAME.match(rule["record"]), rule["record"]


def test_every_task_has_a_success_bound_matching_its_schedule() -> None:
    """3x the period for tasks every N minutes or hours (at least 10 minutes), 26 hours for daily ones."""
    bounds: dict[str, int] = {}
    for rule in rules():
        if rule.get("record") == "task:analytics_task_last_success_age_seconds:limit":
            task = rule["labels"]["task"]
            assert task not in bounds, f"two bounds for {task}"
            bounds[task] = int(re.fullmatch(r"vector\((\d+)\)", rule["expr"].strip()).group(1))  # type: ignore[union-attr]
    assert set(bounds) == {spec.name for spec in TASKS}
    for spec in TASKS:
        minute, hour, *rest = spec.schedule.split()
        assert rest == ["*", "*", "*"], spec
        if minute.isdigit() and hour.isdigit():  # daily
            expected = 26 * 3600
        elif minute.isdigit() and hour == "*":  # hourly
            expected = 3 * 3600
        else:  # every N minutes ("*/N", or "*": every minute)
            assert hour == "*", spec
            period = int(minute.removeprefix("*/")) if minute.startswith("*/") else 1
            expected = max(3 * period * 60, 600)
        assert bounds[spec.name] == expected, spec.name


# --- against the running service and a real Prometheus (tests/observability/conftest.py) ---


@pytest.mark.slow
def test_every_target_is_scraped_with_the_job_names_of_the_config(prometheus: PrometheusStack) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
    assert up == {"analytics-api": "1", "analytics-ingest": "1", "analytics-worker": "1", "prometheus": "1"}


@pytest.mark.slow
def test_every_rule_expression_evaluates(prometheus: PrometheusStack) -> None:
    refused = {}
    for rule in rules():
        try:
            prometheus.query(rule["expr"])
        except PrometheusQueryError as exc:
            refused[rule.get("alert") or rule["record"]] = str(exc)
    assert refused == {}


@pytest.mark.slow
def test_prometheus_evaluates_every_loaded_rule_without_error(prometheus: PrometheusStack) -> None:
    loaded = [rule for group in prometheus.rule_groups() for rule in group["rules"]]
    assert sorted(r["name"] for r in loaded) == sorted(rule.get("alert") or rule["record"] for rule in rules())
    failing = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
    assert failing == {}


@pytest.mark.slow
def test_every_metric_the_rules_read_is_exported(prometheus: PrometheusStack) -> None:
    """A rule over a name the service does not export would never fire: the contract and the code agree."""
    names = prometheus.query('count by (__name__) ({__name__=~"(analytics|prometheus)_.+"})')
    exported = {r["metric"]["__name__"] for r in names}
    read = {name for rule in rules() for name in EXPORTED_NAME.findall(rule["expr"])}
    assert "prometheus_tsdb_lowest_timestamp_seconds" in read
    assert "analytics_community_surge_ratio" in read
    assert read - exported - SURGE_METRICS == set()


@pytest.mark.slow
def test_the_scrapes_carry_the_metrics_token(prometheus: PrometheusStack) -> None:
    """Every target is up (the fixture waits for it) although each refuses a scrape without the token."""
    for job, target in prometheus.jobs.items():
        if job.startswith("analytics-"):
            response = prometheus.http.get(f"http://{target}/metrics")
            assert response.status_code == 401, job


@pytest.mark.slow
def test_the_outage_alerts_are_silent_on_the_healthy_service(prometheus: PrometheusStack) -> None:
    by_name = {rule["alert"]: rule["expr"] for rule in alerts()}
    for name in ("AnalyticsTargetDown", "AnalyticsDatabaseDown", "AnalyticsRedisDown", "AnalyticsTaskFailing"):
        assert prometheus.query(by_name[name]) == [], name
    # ... while the series they watch are there: silence is not for lack of data.
    assert {r["metric"]["job"] for r in prometheus.query("analytics_db_up == 1")} >= {"analytics-api"}
    assert {r["metric"]["job"] for r in prometheus.query("analytics_redis_up == 1")} >= {"analytics-api"}
    succeeded = prometheus.query('analytics_task_runs_total{job="analytics-worker", status="success"} > 0')
    assert {r["metric"]["task"] for r in succeeded} == set(TASKS_RUN)


@pytest.mark.slow
def test_recorded_request_rates_count_the_traffic(prometheus: PrometheusStack) -> None:
    [api] = prometheus.query('job:analytics_http_requests:rate5m{job="analytics-api"}')
    assert float(api["value"][1]) > 0
    routes = {r["metric"]["route"] for r in prometheus.query("job_route_status:analytics_http_requests:rate5m")}
    assert "/api/community-analytics/track/" in routes
    assert "/api/community-analytics/{community_id}/report/" in routes
    # statuses are the numeric codes the 5xx matcher of the error-rate rules expects
    statuses = {r["metric"]["status"] for r in prometheus.query("job_route_status:analytics_http_requests:rate5m")}
    assert {"200", "202", "400", "404"} <= statuses


@pytest.mark.slow
def test_a_query_prometheus_refuses_raises_its_error(prometheus: PrometheusStack) -> None:
    with pytest.raises(PrometheusQueryError, match="parse error"):
        prometheus.query("sum(rate(analytics_http_requests_total[5m])")


@pytest.mark.slow
def test_range_queries_return_a_point_per_step(prometheus: PrometheusStack) -> None:
    now = float(prometheus.query("vector(time())")[0]["value"][0])
    # The fixture holds at least two scrapes a second apart, so the last second is covered.
    [series] = prometheus.query_range('up{job="analytics-api"}', now - 1, now, 0.25)
    assert [(round(float(t) - now, 3), float(v)) for t, v in series["values"]] == [
        (-1, 1),
        (-0.75, 1),
        (-0.5, 1),
        (-0.25, 1),
        (0, 1),
    ]

"""Grafana provisioning and dashboards: their structure, and every query they hold run on the real engines.

SQL (panel targets, template variable queries, annotations) is expanded the way Grafana does it, variables
first (the frontend), then the macros (the backend, `pkg/tsdb/grafana-postgresql-datasource/macros.go`), and
run on a database filled through the ingest write path and the periodic tasks: on the test server (the
`postgres` engine, or TimescaleDB under TEST_DOCKER=1) and on the TimescaleDB harness (`timescaledb: true`
expansion, `time_bucket`), and each must return the seeded figures. PromQL is evaluated by a real Prometheus.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb

from service.core.db import detect_engine
from service.core.settings import Settings
from service.live.records import ActivityRecord, GeoRecord
from service.storage.migrations import migrate
from service.storage.rollups import record_invalidation
from service.tasks.worker import execute
from tests.conftest import create_database, drop_database, settings_for
from tests.observability.conftest import PrometheusStack
from tests.support import act, store

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
MOUNTED_AT = "/var/lib/grafana/dashboards"  # where compose.yaml mounts grafana/dashboards
SQL_TYPE = "grafana-postgresql-datasource"

C = 7  # the community the per-community SQL panels are shown for
PROMETHEUS_COMMUNITY = 1  # the community the `prometheus` fixture's traffic tracks
OTHER = 8

# The metric-name contract of /metrics (names as exposed, with their labels); histograms also expose
# _bucket (with `le`), _sum and _count.
METRICS: dict[str, set[str]] = {
    "analytics_http_requests_total": {"method", "route", "status"},
    "analytics_http_request_duration_seconds": {"method", "route"},
    "analytics_events_accepted_total": {"kind"},
    "analytics_events_rejected_total": {"kind", "reason"},
    "analytics_events_ingested_total": {"kind"},
    "analytics_stream_backlog": set(),
    "analytics_ingest_lag_seconds": set(),
    "analytics_online_members": set(),
    "analytics_community_online_members": {"community_id"},
    "analytics_geo_decisions_total": {"result", "scope", "country_code"},
    "analytics_errors_logged_total": {"level"},
    "analytics_task_runs_total": {"task", "status"},
    "analytics_task_duration_seconds": {"task"},
    "analytics_task_last_success_timestamp_seconds": {"task"},
    "analytics_system_metric": {"metric_type"},
    "analytics_db_pool_connections": {"state"},
    "analytics_db_up": set(),
    "analytics_db_reads_total": {"target"},
    "analytics_db_replica_lag_seconds": {"replica"},
    "analytics_redis_up": set(),
    "analytics_process_start_time_seconds": {"pid"},
}
HISTOGRAMS = {"analytics_http_request_duration_seconds", "analytics_task_duration_seconds"}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
PROMETHEUS_SERIES = {"up": TARGET_LABELS}  # written by Prometheus itself for each scrape target


def exposed_metrics() -> dict[str, set[str]]:
    """Every series name a query may use, with the labels it carries."""
    names = {name: labels | TARGET_LABELS for name, labels in METRICS.items()} | PROMETHEUS_SERIES
    for name in HISTOGRAMS:
        names[f"{name}_bucket"] = names[name] | {"le"}
        names[f"{name}_sum"] = names[f"{name}_count"] = names.pop(name)
    return names


# ----------------------------------------------------------------------------- reading the dashboards


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def provisioned_uids() -> dict[str, str]:
    """Datasource uid -> type, as provisioned."""
    config = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class Query:
    """One query of a dashboard, with where it comes from and the variable values it is run with."""

    dashboard: str  # uid
    source: str  # "panel <title>", "variable <name>" or "annotation <name>"
    ref: str
    text: str
    time_from: str  # the relative start of the range it is shown for, e.g. now-7d
    panel: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fmt: str = "table"
    variables: tuple[tuple[str, str], ...] = ()  # name -> value (ALL for the All option)

    @property
    def id(self) -> str:
        values = "".join(f" {name}={value}" for name, value in self.variables)
        return f"{self.dashboard}: {self.source} [{self.ref}]{values}"


ALL = "All"


def variable_scenarios(dashboard: dict[str, Any]) -> list[tuple[tuple[str, str], ...]]:
    """The variable values each query is run with: the seeded community, and All where offered."""
    scenarios: list[tuple[tuple[str, str], ...]] = [()]
    for variable in dashboard.get("templating", {}).get("list", []):
        assert variable["name"] == "community", f"no test value for variable {variable['name']}"
        values = [str(C), ALL] if variable.get("includeAll") else [str(C)]
        scenarios = [(*s, (variable["name"], v)) for s in scenarios for v in values]
    return scenarios


def collect(language: str) -> list[Query]:
    """Every SQL (language "sql") or PromQL ("promql") query of every dashboard."""
    uids = provisioned_uids()
    queries: list[Query] = []
    for dashboard in load_dashboards().values():
        uid, start = dashboard["uid"], dashboard["time"]["from"]
        # PromQL panels are run with the community of the `prometheus` fixture's traffic instead.
        scenarios = variable_scenarios(dashboard) if language == "sql" else [()]

        def wanted(datasource: dict[str, Any] | None) -> bool:
            kind = uids.get((datasource or {}).get("uid", ""))
            return kind == SQL_TYPE if language == "sql" else kind == "prometheus"

        for panel in all_panels(dashboard):
            # A panel's relative time ("30d") replaces the dashboard's range for that panel.
            panel_start = f"now-{panel['timeFrom']}" if panel.get("timeFrom") else start
            for target in panel.get("targets", []):
                if not wanted(target.get("datasource") or panel.get("datasource")):
                    continue
                text = target["rawSql"] if language == "sql" else target["expr"]
                for values in scenarios:
                    queries.append(
                        Query(uid, f"panel {panel['title']}", target["refId"], text, panel_start, panel,
                              target.get("format", "time_series"), values)
                    )  # fmt: skip
        for variable in dashboard.get("templating", {}).get("list", []):
            if wanted(variable.get("datasource")):
                text = variable["query"] if isinstance(variable["query"], str) else variable["query"]["rawSql"]
                queries.append(Query(uid, f"variable {variable['name']}", "query", text, start))
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if wanted(annotation.get("datasource")):
                target = annotation["target"]
                text = target["rawSql"] if language == "sql" else target["expr"]
                for values in scenarios:
                    queries.append(Query(uid, f"annotation {annotation['name']}", target["refId"], text, start,
                                         variables=values))  # fmt: skip
    return queries


SQL_QUERIES = collect("sql")
PROMQL_QUERIES = collect("promql")


# ----------------------------------------------------------------------------- expanding them like Grafana


def time_range(relative: str, now: datetime) -> tuple[datetime, datetime]:
    """Grafana's `now-<n><unit>` .. now."""
    match = re.fullmatch(r"now-(\d+)([smhdw])", relative)
    assert match, f"unsupported dashboard time range {relative!r}"
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return now - timedelta(**{unit: int(match.group(1))}), now


def rfc3339(t: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time, as Grafana writes $__timeFrom() and friends."""
    text = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{t.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def interval_seconds(text: str) -> float:
    """gtime.ParseInterval for the units the dashboards use."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().strip("'"))
    assert match, f"unsupported interval {text!r}"
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(int(match.group(1)) * factor)


def interpolate_sql(text: str, dashboard: dict[str, Any], values: tuple[tuple[str, str], ...]) -> str:
    """What Grafana's frontend sends for an SQL datasource: a single value as is, quoted when the variable is
    multi-value or has an All option; the custom All value as is."""
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    for name, value in values:
        variable = variables[name]
        if value == ALL:
            replacement = variable["allValue"]
        elif variable.get("multi") or variable.get("includeAll"):
            replacement = "'" + value.replace("'", "''") + "'"
        else:
            replacement = value.replace("'", "''")
        text = re.sub(rf"\$(?:\{{{name}\}}|{name}\b)", lambda _, r=replacement: r, text)
    return text


MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")  # Grafana's own pattern: no ')' inside the arguments


def expand_macros(text: str, start: datetime, end: datetime, timescaledb: bool) -> str:
    """The PostgreSQL datasource's macro engine (macros.go), for the macros the dashboards use."""

    def group(column: str, interval: str) -> str:
        seconds = interval_seconds(interval)
        if timescaledb:
            return f"time_bucket('{seconds:.3f}s',{column})"
        # Go's %v of a float64: integers without a fraction or an exponent (up to 1e21).
        text = str(int(seconds)) if seconds.is_integer() else repr(seconds)
        return f"floor(extract(epoch from {column})/{text})*{text}"

    def one(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        # As Grafana does: $__timeGroup directly followed by ',' is the pre-5.3 form that also aliases.
        if name == "__timeGroup" and text[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339(end)}'"
        if name == "__timeGroup":
            return group(args[0], args[1])
        if name == "__timeGroupAlias":
            return group(args[0], args[1]) + ' AS "time"'
        raise AssertionError(f"macro ${name} is not expanded by this test: add it")

    return MACRO.sub(one, text)


def grafana_sql(query: Query, now: datetime, timescaledb: bool) -> str:
    """The statement Grafana would run for `query` over its default time range, ending now."""
    dashboard = next(d for d in load_dashboards().values() if d["uid"] == query.dashboard)
    start, end = time_range(query.time_from, now)
    text = expand_macros(interpolate_sql(query.text, dashboard, query.variables), start, end, timescaledb)
    assert "$" not in text, f"unexpanded variable or macro left in: {text}"
    return text


def promql(query: Query, now: datetime, community: int) -> str:
    """The expression Grafana would send for `query`, `$community` being `community` (a single value goes in
    as is; the Prometheus panels do not depend on the All option)."""
    start, end = time_range(query.time_from, now)
    text = re.sub(r"\$(?:\{community\}|community\b)", str(community), query.text)
    scoped = {
        "__rate_interval": "1m",  # max($__interval + scrape interval, 4 x scrape interval of 15s)
        "__interval": "15s",
        "__range": f"{int((end - start).total_seconds())}s",
    }
    for name, value in scoped.items():
        text = re.sub(rf"\$(?:\{{{name}\}}|{name}\b)", value, text)
    assert "$" not in text, f"unexpanded variable left in: {text}"
    return text


def test_the_expander_matches_grafana() -> None:
    start, end = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    text = "SELECT $__timeGroupAlias(bucket, '1h'), x FROM t WHERE $__timeFilter(bucket) AND y > $__timeFrom()"
    assert expand_macros(text, start, end, timescaledb=True) == (
        "SELECT time_bucket('3600.000s',bucket) AS \"time\", x FROM t WHERE "
        "bucket BETWEEN '2026-01-02T03:04:05.12Z' AND '2026-01-03T00:00:00Z' AND y > '2026-01-02T03:04:05.12Z'"
    )
    assert expand_macros("SELECT $__timeGroup(b, '1d'), 1", start, end, timescaledb=False) == (
        'SELECT floor(extract(epoch from b)/86400)*86400 AS "time", 1'
    )
    assert expand_macros("$__timeGroup(b, '2w')", start, end, timescaledb=False) == (
        "floor(extract(epoch from b)/1209600)*1209600"
    )
    geo = {"templating": {"list": [{"name": "community", "includeAll": True, "allValue": "-1"}]}}
    assert interpolate_sql("($community = -1 OR id = $community)", geo, (("community", "7"),)) == (
        "('7' = -1 OR id = '7')"
    )
    assert interpolate_sql("id = ${community}", geo, (("community", ALL),)) == "id = -1"


# ----------------------------------------------------------------------------- structure


def test_datasources_are_provisioned() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    by_uid = {source["uid"]: source for source in config["datasources"]}
    assert set(by_uid) == {"prometheus", "timescaledb"}
    prometheus = by_uid["prometheus"]
    assert (prometheus["type"], prometheus["url"], prometheus["access"]) == (
        "prometheus", "http://prometheus:9090", "proxy",
    )  # fmt: skip
    timescale = by_uid["timescaledb"]
    assert (timescale["type"], timescale["url"], timescale["user"]) == (SQL_TYPE, "timescaledb:5432", "analytics")
    wanted = {"database": "analytics", "sslmode": "disable", "timescaledb": True, "postgresVersion": 1700}
    assert {key: timescale["jsonData"].get(key) for key in wanted} == wanted
    # The password comes from Grafana's environment, expanded at provisioning time; never written here.
    assert timescale["secureJsonData"]["password"] == "${POSTGRES_PASSWORD}"
    assert sum(bool(source.get("isDefault")) for source in config["datasources"]) == 1


def test_the_dashboard_provider_loads_the_mounted_folder() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == MOUNTED_AT
    # compose.yaml mounts the dashboards folder there, and the provisioning where Grafana looks for it.
    volumes = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]["volumes"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes if isinstance(v, str)}
    assert mounts[MOUNTED_AT] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_dashboards_have_unique_uids_and_titles() -> None:
    dashboards = load_dashboards()
    assert len(dashboards) == 5
    uids = [d["uid"] for d in dashboards.values()]
    titles = [d["title"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboard_structure(name: str) -> None:
    dashboard = load_dashboards()[name]
    uids = provisioned_uids()
    assert dashboard["schemaVersion"] >= 42
    assert dashboard["title"] and "analytics" in dashboard["tags"]
    time_range(dashboard["time"]["from"], datetime.now(UTC))
    assert dashboard["time"]["to"] == "now"
    panels = list(all_panels(dashboard))
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in ("x", "y", "w", "h")), title
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, title
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not covered & cells, f"{title} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, f"{title}: datasource not provisioned"
        assert panel["datasource"]["type"] == uids[panel["datasource"]["uid"]], title
        assert panel["targets"], f"{title} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] in uids, title
            assert target["refId"]
            assert target.get("rawSql") or target.get("expr"), f"{title}: empty query"
        assert panel.get("description"), f"{title} has no description"
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] in uids, variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation.get("builtIn") or annotation["datasource"]["uid"] in uids, annotation["name"]


def test_every_dashboard_has_both_kinds_of_queries_where_expected() -> None:
    sql_dashboards = {q.dashboard for q in SQL_QUERIES}
    prom_dashboards = {q.dashboard for q in PROMQL_QUERIES}
    # Every dashboard shows the annotations (SQL); the API dashboard has no other SQL.
    assert sql_dashboards == {d["uid"] for d in load_dashboards().values()}
    assert {q.dashboard for q in SQL_QUERIES if not q.source.startswith("annotation")} == {
        "analytics-overview", "analytics-communities", "analytics-geo", "analytics-system"
    }  # fmt: skip
    assert prom_dashboards == {d["uid"] for d in load_dashboards().values()}


@pytest.mark.parametrize("query", PROMQL_QUERIES, ids=lambda q: q.id)
def test_promql_uses_the_metric_contract(query: Query) -> None:
    exposed = exposed_metrics()
    names = set(re.findall(r"\banalytics_\w+", query.text)) | set(re.findall(r"\b(up)\s*\{", query.text))
    assert names, "no metric found in the query"
    assert names <= set(exposed), f"not in the metric contract: {names - set(exposed)}"
    labels = set().union(*(exposed[n] for n in names))
    for matchers in re.findall(r"\{([^}]*)\}", query.text):
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        assert used <= labels | {"__name__"}, f"unknown labels {used - labels}"
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query.text):
        used = {label.strip() for label in grouping.split(",") if label.strip()}
        assert used <= labels, f"unknown labels {used - labels}"


# ----------------------------------------------------------------------------- the data the SQL panels read


def activities(now: datetime) -> list[ActivityRecord]:
    """Two weeks of a few members' visits to C (retention needs the week before the range too), one member
    only in the earlier week, a join, anonymous and platform-level events, and another community."""
    records: list[ActivityRecord] = []
    for days in range(14):
        for user in (1, 2, 3):
            start = now - timedelta(days=days, hours=user)
            records.append(act(start, C, user, "view", section="feed", duration=30.0))
            records.append(act(start + timedelta(minutes=10), C, user, "like"))
    records += [
        act(now - timedelta(days=10), C, 5, "view"),
        act(now - timedelta(hours=2), C, 4, "join"),
        act(now - timedelta(hours=2) + timedelta(minutes=5), C, 4, "post"),
        act(now - timedelta(minutes=30), C, None, "view"),
        act(now - timedelta(minutes=20), None, 1, "page_view"),
        act(now - timedelta(hours=3), OTHER, 6, "view"),
        act(now - timedelta(hours=3), OTHER, 6, "comment"),
    ]
    return records


def geo_attempt(when: datetime, user: int, result: str, place: tuple[str, str, str | None, str | None],
                traveler: bool | None = None, community: int = C) -> GeoRecord:  # fmt: skip
    country, code, region, city = place
    return GeoRecord(
        time=when, event_id=uuid.uuid4(), community_id=community, user_id=user, country=country, country_code=code,
        region=region, city=city, access_result=result, restriction_scope="country", is_traveler=traveler,
    )  # fmt: skip


BERLIN = ("Germany", "DE", "Berlin", "Berlin")
PARIS = ("France", "FR", "Ile-de-France", "Paris")
NEW_YORK = ("United States", "US", "New York", "New York")
OAKLAND = ("United States", "US", "California", "Oakland")


def geo_attempts(now: datetime) -> list[GeoRecord]:
    """Blocks from Germany and France, allowed access from the US, travelers, and a bypass (member 20 is
    blocked from Germany, then allowed in from the US ten minutes later)."""
    return [
        *(geo_attempt(now - timedelta(hours=2), 10 + i, "blocked", BERLIN) for i in range(5)),
        *(geo_attempt(now - timedelta(days=1, hours=1), 20 + i, "blocked", PARIS) for i in range(3)),
        *(geo_attempt(now - timedelta(hours=3), 30 + i, "allowed", NEW_YORK) for i in range(10)),
        *(geo_attempt(now - timedelta(days=1), 40 + i, "allowed", OAKLAND, traveler=True) for i in range(2)),
        geo_attempt(now - timedelta(minutes=50), 50, "blocked", BERLIN),
        geo_attempt(now - timedelta(minutes=40), 50, "allowed", NEW_YORK),
        geo_attempt(now - timedelta(hours=5), 60, "blocked", ("United Kingdom", "GB", None, "London"), community=OTHER),
    ]


SYSTEM_METRICS = {
    "cpu_usage": 35.0, "memory_usage": 61.5, "disk_usage": 42.0, "load_average": 0.8,
    "database_size_bytes": 52_428_800.0, "database_connections": 4.0, "redis_memory_bytes": 2_097_152.0,
    "stream_backlog": 3.0,
}  # fmt: skip


def store_the_rest(url: str, now: datetime) -> None:
    """What the periodic tasks and the error-log API write: presence samples and days, system metrics (with
    the invalidations update_system_metrics records), error logs, and a failed task run."""
    quarter = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    slots = [quarter - timedelta(minutes=15 * k) for k in range(12)]
    with psycopg.connect(url, prepare_threshold=None) as conn:
        cursor = conn.cursor()
        cursor.executemany(
            "INSERT INTO community_presence_samples (community_id, slot, online) VALUES (%s, %s, %s)",
            [(C, slot, 1 + k % 4) for k, slot in enumerate(slots)],
        )
        cursor.executemany(
            "INSERT INTO community_presence_daily (community_id, day, peak_online, average_online, samples) "
            "VALUES (%s, %s, %s, %s, 96)",
            [(C, (now - timedelta(days=d)).date(), 3 + d % 3, 1.5) for d in range(8)],
        )
        cursor.executemany(
            "INSERT INTO system_metrics (metric_type, value, additional_data, recorded_at) VALUES (%s, %s, %s, %s)",
            [
                (name, value + k, Jsonb({}), slot)
                for k, slot in enumerate(slots)
                for name, value in SYSTEM_METRICS.items()
            ],
        )
        record_invalidation(conn, "system_metrics", slots)
        cursor.executemany(
            "INSERT INTO error_logs (user_id, level, message, stack_trace, url, method, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (user, level, f"Community {user} not found", 'File "service/community/api.py", line 9, in report',
                 "/api/community-analytics/", "GET", now - timedelta(hours=hours))
                for user, level, hours in ((1, "error", 1), (2, "error", 2), (3, "critical", 5), (4, "warning", 20))
            ] + [(None, "warning", "Slow query took 812 ms", None, None, None, now - timedelta(minutes=30))],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO task_runs (task_name, started_at, finished_at, status, error) "
            "VALUES ('generate_community_reports', %s, %s, 'failure', 'RuntimeError: the database went away')",
            (now - timedelta(hours=1), now - timedelta(hours=1) + timedelta(seconds=2)),
        )
        cursor.executemany(
            "INSERT INTO annotations (time, time_end, text, tags, community_id) VALUES (%s, %s, %s, %s, %s)",
            [(now - timedelta(hours=4), None, "geo rule: blocks DE", ["geo-rule"], C),
             (now - timedelta(days=30), now - timedelta(hours=6), "raid", ["raid"], OTHER),  # ends inside the range
             (now - timedelta(days=2), now - timedelta(days=2) + timedelta(hours=1), "maintenance", [], None),
             (now - timedelta(hours=1), None, "release 2026.11.3", ["release", "api"], None)],
        )  # fmt: skip


def seed(url: str, settings: Settings, use_copy: bool, refresh: Callable[[], None]) -> None:
    """Fill a migrated database with everything the SQL panels read."""
    now = datetime.now(UTC)
    store(url, activities(now), geo_attempts(now), use_copy=use_copy, batch=100)
    store_the_rest(url, now)
    outcome = execute(settings, "process_error_logs")  # groups the error logs; a successful task run
    assert outcome.status == "success", outcome.error
    refresh()


@dataclass(frozen=True)
class Seeded:
    """A filled database and how Grafana's datasource would be configured for it."""

    url: str
    timescaledb: bool  # the datasource's `timescaledb` flag: time_bucket() exists there


@pytest.fixture(scope="module")
def seeded_test_server(postgres_admin_url: str, template_database: str, redis_server_url: str) -> Iterator[Seeded]:
    """The test server's engine (postgres, or TimescaleDB under TEST_DOCKER=1), filled once for this module."""
    url = create_database(postgres_admin_url, template_database)
    settings = settings_for(url, redis_server_url)
    try:
        with psycopg.connect(url) as conn:
            engine = detect_engine(conn)

        def refresh() -> None:
            outcome = execute(settings, "refresh_rollups")
            assert outcome.status == "success", outcome.error

        seed(url, settings, use_copy=True, refresh=refresh)
        yield Seeded(url, timescaledb=engine == "timescaledb")
    finally:
        drop_database(postgres_admin_url, url)


CONTINUOUS_AGGREGATES = [  # dependency order
    "activity_hourly", "activity_daily", "community_members_daily", "geo_hourly", "geo_daily", "system_metrics_hourly",
]  # fmt: skip


@pytest.fixture(scope="module")
def seeded_timescaledb(tmp_path_factory: pytest.TempPathFactory, redis_server_url: str) -> Iterator[Seeded]:
    """The TimescaleDB harness (Timescale-License build) migrated and filled once for this module."""
    if os.environ.get("TEST_DOCKER") == "1":
        pytest.skip("TEST_DOCKER=1: the test server is TimescaleDB already, and the SQL panels ran there")
    from tests.timescale.conftest import PgliteServer, _not_installed, skip_unless_ci

    if reason := _not_installed():
        skip_unless_ci(reason)
    server = PgliteServer(tmp_path_factory.mktemp("pglite-dashboards"))
    server.start()
    try:
        # One connection at a time, no prepared statements, no COPY FROM STDIN on this build.
        settings = settings_for(server.url, redis_server_url, DATABASE_PREPARED_STATEMENTS="false")
        with psycopg.connect(server.url, autocommit=True, prepare_threshold=None) as conn:
            assert detect_engine(conn) == "timescaledb"
            migrate(conn, "timescaledb")

        def refresh() -> None:
            with psycopg.connect(server.url, autocommit=True, prepare_threshold=None) as conn:
                for view in CONTINUOUS_AGGREGATES:
                    conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
            outcome = execute(settings, "refresh_rollups")  # sessions
            assert outcome.status == "success", outcome.error

        seed(server.url, settings, use_copy=False, refresh=refresh)
        yield Seeded(server.url, timescaledb=True)
    finally:
        server.stop()


# ----------------------------------------------------------------------------- running the SQL


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def run_and_check(seeded: Seeded, query: Query) -> None:
    """Run `query` as Grafana would and check that it shows the seeded data."""
    text = grafana_sql(query, datetime.now(UTC), seeded.timescaledb)
    with psycopg.connect(seeded.url, autocommit=True, prepare_threshold=None) as conn:
        cursor = conn.execute(text)  # type: ignore[call-overload]  # the dashboard's text, literal by nature
        assert cursor.description is not None
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    assert rows, f"no rows for:\n{text}"
    kind = query.panel.get("type")
    if query.source.startswith("variable"):
        assert {"__value", "__text"} <= set(columns)
        assert str(C) in {str(row[columns.index("__value")]) for row in rows}
        return
    if query.source.startswith("annotation"):
        assert {"time", "text"} <= set(columns)
        return
    if query.fmt == "time_series" or kind == "timeseries":
        assert "time" in columns, f"a time series needs a `time` column: {columns}"
        times = [row[columns.index("time")] for row in rows]
        times = [t.timestamp() if isinstance(t, datetime) else float(t) for t in times]
        assert times == sorted(times), "Grafana needs time series sorted by time"
    values = [v for row in rows for name, v in zip(columns, row, strict=True) if name != "time"]
    if kind in {"stat", "timeseries"} or any(is_number(v) for v in values):
        assert any(is_number(v) and v != 0 for v in values), f"only zeros or nothing in {rows}"
    if kind == "geomap":
        for layer in query.panel["options"]["layers"]:
            assert layer["location"]["lookup"] in columns
            assert all(row[columns.index(layer["location"]["lookup"])] for row in rows)
    if kind == "table":
        assert any(v is not None for v in values)


@pytest.mark.parametrize("query", SQL_QUERIES, ids=lambda q: q.id)
def test_sql_on_the_test_server(seeded_test_server: Seeded, query: Query) -> None:
    run_and_check(seeded_test_server, query)


def test_annotations_are_the_communitys_and_the_platforms(seeded_test_server: Seeded) -> None:
    """Each dashboard's "Annotations" query: those overlapping the range, of the community shown (with All, every
    community's) and the platform-wide ones, as Grafana reads them (tags comma-separated)."""
    shown = {}
    for query in SQL_QUERIES:
        if query.source == "annotation Annotations":
            text = grafana_sql(query, datetime.now(UTC), timescaledb=False)
            with psycopg.connect(seeded_test_server.url, autocommit=True) as conn:
                found = conn.execute(text).fetchall()  # type: ignore[call-overload]  # the dashboard's own text
            shown[query.id] = sorted((row[2], row[3]) for row in found)
    rule, raid = ("geo rule: blocks DE", "geo-rule"), ("raid", "raid")
    maintenance, release = ("maintenance", ""), ("release 2026.11.3", "release,api")
    assert shown == {
        "analytics-api: annotation Annotations [Anno]": [release],  # the last 3 hours
        "analytics-overview: annotation Annotations [Anno]": [rule, raid, release],  # 24 hours
        "analytics-system: annotation Annotations [Anno]": [rule, raid, release],
        **{f"analytics-{uid}: annotation Annotations [Anno] community=7": [rule, maintenance, release]  # 7 days
           for uid in ("geo", "communities")},
        "analytics-geo: annotation Annotations [Anno] community=All": [rule, maintenance, raid, release],
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("query", SQL_QUERIES, ids=lambda q: q.id)
def test_sql_on_timescaledb(seeded_timescaledb: Seeded, query: Query) -> None:
    run_and_check(seeded_timescaledb, query)


# ----------------------------------------------------------------------------- running the PromQL


@pytest.mark.parametrize("query", PROMQL_QUERIES, ids=lambda q: q.id)
def test_promql_evaluates_on_prometheus(prometheus: PrometheusStack, query: Query) -> None:
    expr = promql(query, datetime.now(UTC), community=PROMETHEUS_COMMUNITY)
    series = prometheus.query(expr)  # raises with Prometheus's error text on a bad expression
    # The fixture's traffic moves every series the dashboards read, but it causes no 5xx answer.
    if '"5.."' not in expr:
        # On a loaded machine a 1 s scrape can time out and a short-window rate briefly has too few samples:
        # give the next scrapes a few seconds before calling the expression empty.
        deadline = time.monotonic() + 15
        while not series and time.monotonic() < deadline:
            time.sleep(1)
            series = prometheus.query(expr)
        assert series, f"no data for {expr}"

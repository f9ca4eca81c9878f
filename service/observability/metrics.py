"""Prometheus metric definitions, declared once (multiprocess-aware where processes share them).

Counters and histograms are summed over the API's worker processes by prometheus-client's multiprocess mode;
every gauge says how its per-process values combine (`multiprocess_mode`). The figures read from Redis and
PostgreSQL at scrape time (backlog, lag, online members, pool, up) are not declared here as metrics: the
process answering a scrape reads them once (service/web/metrics_api.py); only their names and help live here.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import psutil
from prometheus_client import Counter, Gauge, Histogram

# --- HTTP API (service/observability/request_metrics.py) ---
HTTP_REQUESTS = Counter(
    "analytics_http_requests",
    "HTTP requests answered, by method, route template (`unmatched` when no route matched) and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "analytics_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROCESS_START = Gauge(
    "analytics_process_start_time_seconds",
    "When each process serving metrics started (unix time), one series per process id",
    # `pid` is declared so that single-process exports carry it too; in multiprocess mode the collector adds the
    # same pid (the file's) itself, which merges with ours. `liveall`: a dead worker's series disappears once
    # its process is marked dead.
    ["pid"],
    multiprocess_mode="liveall",
)

# --- Tracking (service/ingest/api.py) and ingest (service/ingest/worker.py) ---
EVENTS_ACCEPTED = Counter(
    "analytics_events_accepted", "Events the tracking API accepted, by kind (activity, geo)", ["kind"]
)
EVENTS_REJECTED = Counter(
    "analytics_events_rejected",
    "Events the tracking API refused, by kind and reason (validation, too_large, backlog, unavailable)",
    ["kind", "reason"],
)
EVENTS_REPEATED = Counter(
    "analytics_events_repeated",
    "Accepted events dropped because their client event_id was accepted in the last day (retries, or ids reused "
    "with another payload: the first event stands), by kind",
    ["kind"],
)
EVENTS_INGESTED = Counter(
    "analytics_events_ingested",
    "Rows the ingest worker committed to the raw tables, by kind (redelivered duplicates are not rows)",
    ["kind"],
)
GEO_DECISIONS = Counter(
    "analytics_geo_decisions",
    "Geo-restriction decisions accepted, by result, restriction scope (`none` when unset) and country code "
    "(`unknown` when the place is not known)",
    ["result", "scope", "country_code"],
)

# --- Reads of the API (service/storage/replicas.py) ---
DB_READS = Counter(
    "analytics_db_reads",
    "Report and listing reads sent to PostgreSQL, by target (`primary`, `replica`); a replica read that failed "
    "and was run again on the primary counts for both",
    ["target"],
)

# --- Error logs (incremented where error logs are recorded) ---
ERRORS_LOGGED = Counter("analytics_errors_logged", "Error logs recorded, by level", ["level"])

# --- Periodic tasks (service/tasks/worker.py, exported by `analytics worker`) ---
TASK_RUNS = Counter("analytics_task_runs", "Runs of periodic tasks by outcome", ["task", "status"])
TASK_DURATION = Histogram(
    "analytics_task_duration_seconds",
    "How long task runs took",
    ["task"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
TASK_LAST_SUCCESS = Gauge(
    "analytics_task_last_success_timestamp_seconds",
    "When each task last succeeded (unix time)",
    ["task"],
    multiprocess_mode="max",
)
SYSTEM_METRIC = Gauge(
    "analytics_system_metric",
    "The latest sample of each system metric (update_system_metrics)",
    ["metric_type"],
    multiprocess_mode="mostrecent",
)


class ScrapeGauge(NamedTuple):
    """A gauge read from the storage servers by the process answering a scrape."""

    name: str
    documentation: str


DB_UP = ScrapeGauge("analytics_db_up", "1 when PostgreSQL answered a query during this scrape, else 0")
REDIS_UP = ScrapeGauge("analytics_redis_up", "1 when Redis answered PING during this scrape, else 0")
DB_POOL = ScrapeGauge(
    "analytics_db_pool_connections",
    "Connection pool of the API process that answered the scrape: size, available, waiting (requests queued)",
)
DB_REPLICA_LAG = ScrapeGauge(
    "analytics_db_replica_lag_seconds",
    "How far each read replica is behind the primary, as last measured by the process answering the scrape (0 "
    "when it has replayed all the primary's WAL); absent while a replica cannot be measured (unreachable)",
)
STREAM_BACKLOG = ScrapeGauge(
    "analytics_stream_backlog", "Ingest stream entries not acknowledged yet (not delivered, or delivered and pending)"
)
INGEST_LAG = ScrapeGauge(
    "analytics_ingest_lag_seconds", "Age of the oldest unacknowledged ingest stream entry, 0 when there is none"
)
ONLINE_MEMBERS = ScrapeGauge(
    "analytics_online_members", "Distinct members active in the last 5 minutes, over all communities"
)
COMMUNITY_ONLINE = ScrapeGauge(
    "analytics_community_online_members",
    "Members active in the last 5 minutes, for the METRICS_TOP_COMMUNITIES communities with most of them",
)
# Surges (service/storage/surges.py): per `signal` (`activity`, `geo_blocked`), only the
# METRICS_SURGE_COMMUNITIES communities with the highest ratio among those with METRICS_SURGE_MIN_EVENTS in the
# last hour, so the series stay bounded however many communities there are.
COMMUNITY_SURGE_RATIO = ScrapeGauge(
    "analytics_community_surge_ratio",
    "A community's events (signal=activity) or blocked geo decisions (signal=geo_blocked) in the last hour, "
    "divided by its baseline; only for the METRICS_SURGE_COMMUNITIES communities with the highest ratio",
)
COMMUNITY_SURGE_LAST_HOUR = ScrapeGauge(
    "analytics_community_surge_last_hour_events",
    "Events of the signal in the community's last hour (the numerator of analytics_community_surge_ratio)",
)
COMMUNITY_SURGE_BASELINE = ScrapeGauge(
    "analytics_community_surge_baseline_events",
    "Mean events of the signal in the same hour of the previous 7 days, at least 1 (the denominator of "
    "analytics_community_surge_ratio)",
)


def process_started() -> None:
    """Record this process's start time under its pid (each API worker, ingest and task worker process)."""
    PROCESS_START.labels(str(os.getpid())).set(psutil.Process().create_time())

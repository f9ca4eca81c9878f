"""Prometheus metric definitions, declared once (multiprocess-aware where processes share them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

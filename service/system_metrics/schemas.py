"""Bodies of `/api/metrics/`: a stored sample, and what a client may write (constraints mirror the table's checks)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from service.core.listing import variant

MAX_CLOCK_SKEW = timedelta(minutes=5)  # how far in the future a sample's recorded_at may be (clocks differ)
METRIC_TYPE = "^[a-z][a-z0-9_]{0,62}$"  # lower_snake, at most 63 characters (the table's check)
# Samples are summed in the hourly rollup (its average): bounded so that a sum of up to 10^8 samples stays finite,
# and one sample can never make a rollup refresh fail.
VALUE_MAX = 1e300

MetricType = Annotated[
    str, Meta(pattern=METRIC_TYPE, max_length=63, description="lower_snake name, at most 63 characters")
]


class SystemMetric(msgspec.Struct, kw_only=True):
    """One sample (a row of `system_metrics`, also written every 15 minutes by `update_system_metrics`)."""

    id: int
    metric_type: str
    value: float
    additional_data: dict[str, Any]
    recorded_at: datetime


class SystemMetricWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT body of `/api/metrics/{id}/`: every writable field."""

    metric_type: MetricType
    value: Annotated[float, Meta(ge=-VALUE_MAX, le=VALUE_MAX, description="a finite number within ±1e300")]
    additional_data: dict[str, Any]
    recorded_at: Annotated[datetime, Meta(tz=True, description="with a time zone; at most 5 minutes ahead")]


METRIC_READ_ONLY = frozenset({"id"})
# POST: `metric_type` and `value` are required; `additional_data` defaults to {}, `recorded_at` to now.
SystemMetricCreate = variant(SystemMetricWrite, "SystemMetricCreate", required={"metric_type", "value"})
SystemMetricPatch = variant(SystemMetricWrite, "SystemMetricPatch")

"""Communities surging against their own baseline: events (or blocked geo decisions) of the last hour over the
mean of the same hour on the previous 7 days, read from the hourly rollups for all communities in one query.

Why the same hour of day rather than the mean of the last 7x24 hours: community activity follows the day (an
evening peak is often 3-4x the daily mean), so a baseline over all hours would call every evening a surge; the
same hour over a week takes the daily cycle out and averages the weekdays. It also reads 16 hourly buckets per
community instead of 169.

The last hour is a sliding window [at - 1h, at), estimated from the hourly buckets as a sliding-window rate
limiter does: the current (partial) bucket whole plus the share of the previous bucket that lies inside the
window, (1 - f) of it when `at` is a fraction f into its hour. Each baseline day's window [at - 1h - k days,
at - k days) is estimated the same way from complete buckets (f of its bucket at the same hour, 1 - f of the
hour before), so both sides of the ratio are the same kind of figure. Days without events count as 0, and the
baseline is at least BASELINE_FLOOR: a new or silent community has a ratio (its last hour's count), not a
division by zero. Only communities whose last hour reaches `min_events` are ranked, so a tiny community going
from 1 to 5 events is not a surge.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from service.core.settings import Settings
from service.storage.buckets import HOUR, floor

Signal = Literal["activity", "geo_blocked"]
SIGNALS: tuple[Signal, ...] = ("activity", "geo_blocked")
BASELINE_DAYS = 7
BASELINE_FLOOR = 1.0  # events per hour: the least baseline a ratio is taken against
DAY = timedelta(days=1)
CACHE_SECONDS = 60.0  # how long a process serves the figures it read before reading them again

# Weights per hourly bucket: `recent` builds the last hour, `past` the sum of the baseline days' hours (divided
# by BASELINE_DAYS below). `bucket = ANY(...)` lets both rollups use their bucket index: 16 buckets per source.
SURGES_SQL = """
WITH weights (bucket, recent, past) AS (
    SELECT * FROM unnest(%(buckets)s::timestamptz[], %(recent)s::float8[], %(past)s::float8[])
), figures AS (
    SELECT 'activity' AS signal, h.community_id, sum(h.events * w.recent) AS last_hour, sum(h.events * w.past) AS past
    FROM activity_hourly h JOIN weights w USING (bucket)
    WHERE h.community_id IS NOT NULL AND h.bucket = ANY(%(buckets)s::timestamptz[])
    GROUP BY h.community_id
    UNION ALL
    SELECT 'geo_blocked', g.community_id, sum(g.attempts * w.recent), sum(g.attempts * w.past)
    FROM geo_hourly g JOIN weights w USING (bucket)
    WHERE g.access_result = 'blocked' AND g.bucket = ANY(%(buckets)s::timestamptz[])
    GROUP BY g.community_id
), ranked AS (
    SELECT signal, community_id, last_hour, greatest(past / %(days)s, %(floor)s) AS baseline
    FROM figures
    WHERE last_hour >= %(min_events)s
)
SELECT signal, community_id, last_hour, baseline
FROM (SELECT *, row_number() OVER (PARTITION BY signal ORDER BY last_hour / baseline DESC, community_id) AS rank
      FROM ranked) r
WHERE rank <= %(top)s
ORDER BY signal, rank
"""


class Surge(msgspec.Struct, frozen=True):
    """One community's figures for one signal: events in the last hour and its baseline (events per hour)."""

    signal: Signal
    community_id: int
    last_hour: float
    baseline: float

    @property
    def ratio(self) -> float:
        """How many times its baseline the community's last hour is."""
        return self.last_hour / self.baseline


def bucket_weights(at: datetime) -> dict[datetime, tuple[float, float]]:
    """Hourly bucket -> (weight in the last hour, weight in the baseline days' sum) for the moment `at`."""
    current = floor(at, HOUR)
    fraction = (at - current) / HOUR
    weights = {current: (1.0, 0.0), current - HOUR: (1.0 - fraction, 0.0)}
    for day in range(1, BASELINE_DAYS + 1):
        weights[current - day * DAY] = (0.0, fraction)
        weights[current - HOUR - day * DAY] = (0.0, 1.0 - fraction)
    return weights


async def surges(conn: AsyncConnection[Any], at: datetime, min_events: int, top: int) -> list[Surge]:
    """Per signal, the `top` communities with the highest ratio among those with at least `min_events` in the
    hour before `at` (highest first, ties: lower id first)."""
    weights = bucket_weights(at)
    cur = await conn.execute(
        SURGES_SQL,
        {
            "buckets": list(weights),
            "recent": [recent for recent, _ in weights.values()],
            "past": [past for _, past in weights.values()],
            "days": BASELINE_DAYS,
            "floor": BASELINE_FLOOR,
            "min_events": min_events,
            "top": top,
        },
    )
    return [
        Surge(signal=signal, community_id=int(community), last_hour=float(last), baseline=float(baseline))
        for signal, community, last, baseline in await cur.fetchall()
    ]


class SurgeCache:
    """The surge figures one API process read last, served for CACHE_SECONDS (also while PostgreSQL is down: they
    are at most that old); concurrent readers wait for one read rather than each running the query."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self.pool, self.settings = pool, settings
        self._lock = asyncio.Lock()
        self._rows: list[Surge] = []
        self._expires = -math.inf

    async def read(self, at: datetime) -> list[Surge]:
        """The figures (for the moment `at` when they are read again); a failed read raises and caches nothing,
        so the next caller asks again."""
        settings = self.settings
        async with self._lock:
            if time.monotonic() < self._expires:
                return self._rows
            async with self.pool.connection(timeout=settings.db_timeout) as conn, asyncio.timeout(settings.db_timeout):
                rows = await surges(conn, at, settings.metrics_surge_min_events, settings.metrics_surge_communities)
            self._rows, self._expires = rows, time.monotonic() + CACHE_SECONDS
            return rows

"""Time buckets as the rollups cut them, and ranges of time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # bucket origin shared with time_bucket() and the rollup files

Range = tuple[datetime, datetime]


def merge(ranges: Iterable[Range], slack: timedelta = timedelta(0)) -> list[Range]:
    """Sorted, non-overlapping ranges covering `ranges`; ranges closer than `slack` are joined."""
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + slack:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def floor(t: datetime, width: timedelta) -> datetime:
    """The start of the bucket of `width` holding `t` (aligned like time_bucket and date_bin)."""
    return ORIGIN + ((t - ORIGIN) // width) * width

"""Report windows and rounding shared by the read endpoints (DESIGN.md section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

import msgspec
from litestar.params import QueryParameter

Days = Annotated[int, QueryParameter(ge=1, le=365, description="Report window: today and the N days before it")]


class DateRange(msgspec.Struct):
    start: date
    end: date


def midnight(day: date) -> datetime:
    """00:00 UTC of `day`: where a UTC day starts."""
    return datetime.combine(day, time(), UTC)


@dataclass(frozen=True)
class Window:
    """Days `today - N` to `today` inclusive (UTC), as [start, end) instants, and the window of equal length
    just before it (`previous_start` to `start`)."""

    start: datetime
    end: datetime
    previous_start: datetime

    @classmethod
    def last(cls, days: int, now: datetime | None = None) -> Window:
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        start = midnight(today - timedelta(days=days))
        end = midnight(today + timedelta(days=1))
        return cls(start=start, end=end, previous_start=start - (end - start))

    @property
    def date_range(self) -> DateRange:
        return DateRange(start=self.start.date(), end=(self.end - timedelta(days=1)).date())


def percent(part: float, whole: float, places: int = 1) -> float | None:
    """part / whole x 100, rounded half up (450 attempts with 127 blocked: 28.2); None (no defined value, shown as
    null) when whole is 0."""
    if not whole:
        return None
    quantum = Decimal(1).scaleb(-places)
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(quantum, rounding=ROUND_HALF_UP))


def minutes(seconds: float | None) -> float | None:
    """A mean visit length in seconds in minutes, two decimals, as the reports show it; None (null) for no visits."""
    return None if seconds is None else round(float(seconds) / 60, 2)


def quarter_hour(now: datetime) -> datetime:
    """The start of the quarter hour holding `now`: the sample slot of the quarter-hourly tasks."""
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)

"""The endpoints' answers in the form the bench compares, built from figures any twin computed."""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Any


def patterns_answer(rows: Iterable[tuple[int | None, int | None, date | None, int]]) -> dict[str, Any]:
    """The activity patterns answer from (hour, weekday, week, events) rows, one of the three set per row."""
    by_hour: Counter[int] = Counter()
    by_weekday: Counter[int] = Counter()
    by_week: Counter[date] = Counter()
    for hour, weekday, week, events in rows:
        if hour is not None:
            by_hour[hour] = events
        elif weekday is not None:
            by_weekday[weekday] = events
        elif week is not None:
            by_week[week] = events
    peak = sorted((h for h in by_hour if by_hour[h] > 0), key=lambda h: (-by_hour[h], h))[:3]
    return {
        "hourly": [{"hour": h, "events": by_hour[h]} for h in range(24)],
        "daily": [{"weekday": d, "name": calendar.day_name[d], "events": by_weekday[d]} for d in range(7)],
        "weekly": [{"week_start": w.isoformat(), "events": by_week[w]} for w in sorted(by_week)],
        "peak_hours": peak,
    }

"""Five-field cron expressions (minute hour day month weekday), as huey reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from huey import crontab


def parse_cron(expression: str) -> Callable[[datetime], bool]:
    """A five-field cron expression as huey's crontab test; ValueError when it is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 cron fields (minute hour day month weekday), got {expression!r}")
    minute, hour, day, month, weekday = fields
    test: Callable[[datetime], bool] = crontab(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, strict=True
    )
    return test


def next_run(expression: str, after: datetime, horizon: timedelta = timedelta(days=32)) -> datetime | None:
    """The first whole minute after `after` (UTC) that the schedule matches, if any within `horizon`."""
    test = parse_cron(expression)
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = moment + horizon
    while moment < end:
        if test(moment.replace(tzinfo=None)):
            return moment
        moment += timedelta(minutes=1)
    return None

"""The endpoints' answers in the form the bench compares, built from figures any twin computed."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import msgspec

from service.community.figures import patterns
from service.core.windows import percent


def patterns_answer(rows: Iterable[tuple[int | None, int | None, date | None, int]]) -> dict[str, Any]:
    """The activity patterns answer from (hour, weekday, week, events) rows, one of the three set per row: folded
    as the endpoint folds its SQL's rows (`service.community.figures.patterns`, whose arithmetic the tests check
    by hand), so that a twin checks the figures its own SQL computed."""
    answer: dict[str, Any] = msgspec.to_builtins(patterns(list(rows)))
    return answer


def effectiveness_answer(totals: Sequence[int], top: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """The geo effectiveness answer from (attempts, blocked, traveler attempts, bypasses) and the most blocked
    (country, code, city, attempts)."""
    total, blocked, travelers, bypasses = totals
    return {
        "restriction_effectiveness": {
            "total_attempts": total,
            "blocked_attempts": blocked,
            "allowed_attempts": total - blocked,
            "effectiveness_percentage": percent(blocked, total),
        },
        "top_blocked_locations": [
            {"country": country, "country_code": code, "city": city, "attempts": n} for country, code, city, n in top
        ],
        "traveler_attempts": travelers,
        "bypass_attempts": bypasses,
    }


def funnel_members(events: Iterable[tuple[int, str, float]], steps: Sequence[str], within: float) -> list[int]:
    """Members at each funnel step from (member, activity type, epoch seconds) rows, in any order: an event of step
    k continues the funnel when an event kept at step k-1 comes strictly before it and at most `within` seconds
    earlier (computed here member by member, apart from the endpoint's SQL)."""
    by_member: dict[int, dict[str, list[float]]] = {}
    for member, kind, at in events:
        by_member.setdefault(member, {}).setdefault(kind, []).append(at)
    reached = [0] * len(steps)
    for times in by_member.values():
        kept = sorted(times.get(steps[0], []))
        for k, step in enumerate(steps):
            if k:
                candidates = sorted(times.get(step, []))
                kept = [t for t in candidates if (i := bisect_left(kept, t)) and t - kept[i - 1] <= within]
            if not kept:
                break
            reached[k] += 1
    return reached

"""The report generators run through the task runner on hand-built fixtures; every expected number is worked out
here. The fixtures are those of the community and geo report tests, plus a few events that make the day before
today (the day reported when the task runs today) interesting."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Any

import psycopg

from service.core.settings import Settings
from service.live.records import ActivityRecord
from service.tasks.worker import execute
from tests.community.test_report import OTHER, C, report_events, store_presence
from tests.geo.test_geo_reports import C as GEO
from tests.geo.test_geo_reports import geo_records
from tests.support import act, at, refresh_rollups, rows, store

ZERO_TYPES = dict.fromkeys(
    ["view", "join", "leave", "post", "comment", "like", "share", "message", "session_start", "session_end",
     "page_view", "content_view", "register", "follow", "unfollow", "recommendation_shown", "recommendation_clicked"],
    0,
)  # fmt: skip
DAY1 = at(1, 0).date().isoformat()  # the day reported by a run today
DAY2 = at(2, 0).date().isoformat()


def today(hour: int = 3) -> datetime:
    """A run today at `hour`: it reports on yesterday (day -1)."""
    return at(0, hour)


def events() -> list[ActivityRecord]:
    """The community report fixture (see tests/community/test_report.py), and for day -1 (and the day before):"""
    return [
        *report_events(),
        # Members 3 and 4 on day -2 too: with member 1, C's members of the day before day -1.
        act(at(2, 18, 0), C, 3, "view"),
        act(at(2, 18, 5), C, 4, "like"),
        # Member 1 comes back on day -1: 20:00 comment, 20:25 view -> one visit of 25 min.
        act(at(1, 20, 0), C, 1, "comment"),
        act(at(1, 20, 25), C, 1, "view"),
        # Platform-level events on day -1: two registrations; member 10's visit lasts 10 min, member 11's 0.
        act(at(1, 8, 0), None, 10, "register"),
        act(at(1, 8, 10), None, 10, "page_view"),
        act(at(1, 8, 5), None, 11, "register"),
    ]


def seed(database_url: str) -> None:
    store(database_url, events(), geo_records())
    store_presence(database_url)  # C: day -3 (4) and day -9 (10); OTHER: day -2 (12)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO community_presence_daily (community_id, day, peak_online, average_online) "
            "VALUES (%s, %s, 5, 2.0)",
            (C, at(1, 0).date()),
        )
        conn.execute(
            "INSERT INTO error_logs (level, message, created_at) VALUES "
            "('error', 'a', %s), ('error', 'b', %s), ('warning', 'c', %s), ('critical', 'd', %s), ('error', 'e', %s)",
            (at(1, 10), at(1, 10, 30), at(1, 23, 59), at(2, 23, 59), at(0, 0, 1)),
        )
    refresh_rollups(database_url)  # the visits; the rollups would answer without it


def reports(database_url: str, kind: str, day: str = DAY1) -> dict[str, Any]:
    """scope -> (period_start, period_end, payload) of the stored reports of `kind` starting on `day`."""
    found = rows(
        database_url,
        "SELECT scope, period_start, period_end, payload FROM reports WHERE kind = %s AND period_start = %s::date",
        kind,
        day,
    )
    return {scope: (start.isoformat(), end.isoformat(), payload) for scope, start, end, payload in found}


def run(settings: Settings, task: str, now: datetime) -> dict[str, Any]:
    outcome = execute(settings, task, now=now)
    assert (outcome.status, outcome.error) == ("success", None)
    return outcome.details


def day_patterns(hours: dict[int, int], peak_hours: list[int]) -> dict[str, Any]:
    """The activity patterns of day -1 whose events fall in `hours` (hour of day -> events)."""
    day, total = at(1, 0), sum(hours.values())
    return {
        "hourly": [{"hour": h, "events": hours.get(h, 0)} for h in range(24)],
        "daily": [
            {"weekday": d, "name": calendar.day_name[d], "events": total if d == day.weekday() else 0} for d in range(7)
        ],
        "weekly": [{"week_start": (day - timedelta(days=day.weekday())).date().isoformat(), "events": total}],
        "peak_hours": peak_hours,
    }


def counts(attempts: int, allowed: int = 0, blocked: int = 0, travelers: int = 0) -> dict[str, int]:
    return {"attempts": attempts, "allowed": allowed, "blocked": blocked, "travelers": travelers}


def place(country: str, code: str, total: dict[str, int], regions: list[Any]) -> dict[str, Any]:
    """A country of a location breakdown: regions as (region, counts, [(city, counts)])."""
    return {
        "country": country, "country_code": code, "counts": total,
        "regions": [
            {"region": region, "counts": region_counts,
             "cities": [{"city": city, "counts": city_counts} for city, city_counts in cities]}
            for region, region_counts, cities in regions
        ],
    }  # fmt: skip


def trend(bucket: datetime, attempts: int, allowed: int = 0, blocked: int = 0, travelers: int = 0) -> dict[str, Any]:
    return {"bucket": bucket, **counts(attempts, allowed, blocked, travelers), "bypasses": 0}


def categories(**found: int) -> dict[str, int]:
    """The eight geo categories, zero unless given."""
    names = ("country_blocked", "country_allowed", "city_blocked", "city_allowed", "region_blocked",
             "region_allowed", "traveler_access", "restriction_bypass")  # fmt: skip
    return {name: found.get(name, 0) for name in names}


def test_platform_report(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert run(settings, "generate_analytics_reports", today()) == {"period": DAY1, "reports": 1}
    assert reports(database_url, "analytics") == {
        "platform": (DAY1, DAY1, {
            "date_range": {"start": DAY1, "end": DAY1},
            "events": {
                # C: member 2 view + post, anonymous view, member 1 comment + view; OTHER: member 6 view;
                # platform: 2 registrations, 1 page view.
                "total": 9,
                "by_type": {**ZERO_TYPES, "view": 4, "post": 1, "comment": 1, "register": 2, "page_view": 1},
            },
            "active_users": 5,  # members 1, 2 (C), 6 (OTHER), 10, 11 (platform)
            "active_communities": 2,  # C and OTHER; the geo community has no activity
            "new_registrations": 2,
            # C: member 2 10 min, member 1 25 min; OTHER: member 6 0 min; platform: member 10 10 min, 11 0 min.
            "sessions": {"count": 5, "average_duration": 9.0},  # 45 / 5
            "geo": {
                # Day -1: Berlin 60 + Paris 40 blocked, 15 + 8 allowed (GEO); 1 blocked in GEO + 1.
                "restriction_effectiveness": {
                    "total_attempts": 124,
                    "blocked_attempts": 101,
                    "allowed_attempts": 23,
                    "effectiveness_percentage": 81.5,  # 101 / 124 = 81.45 %
                },
                "traveler_attempts": 15,
                "bypass_attempts": 0,
            },
            # The critical of day -2 and the error of today are other days.
            "errors": {"total": 3, "by_level": {"debug": 0, "info": 0, "warning": 1, "error": 2, "critical": 0}},
        })
    }  # fmt: skip


def test_community_reports(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert run(settings, "generate_community_reports", today()) == {"period": DAY1, "reports": 2}
    assert reports(database_url, "community") == {
        f"community:{C}": (DAY1, DAY1, {
            "community_id": C,
            "date_range": {"start": DAY1, "end": DAY1},
            "metrics": {
                "total_views": 3,  # member 2, anonymous, member 1
                "unique_visitors": 2,  # members 1 and 2
                "peak_online_members": 5,  # stored for day -1
                "average_session_duration": 17.5,  # (10 + 25) / 2 minutes
                "member_retention": 33.3,  # of members 1, 3 and 4 (day -2), member 1 came back: 1 / 3
                # Member 2 at 09:00 and 09:10, the anonymous view at 13:00, member 1 at 20:00 and 20:25; 9 and 20
                # tie, the earlier first.
                "activity_patterns": day_patterns({9: 2, 13: 1, 20: 2}, peak_hours=[9, 20, 13]),
            },
            "events_by_type": {**ZERO_TYPES, "view": 3, "post": 1, "comment": 1},
        }),
        f"community:{OTHER}": (DAY1, DAY1, {
            "community_id": OTHER,
            "date_range": {"start": DAY1, "end": DAY1},
            "metrics": {
                "total_views": 1,
                "unique_visitors": 1,  # member 6
                "peak_online_members": 0,  # its 12 is of day -2
                "average_session_duration": 0.0,  # one single-event visit
                "member_retention": None,  # nobody was active the day before: no share to give
                "activity_patterns": day_patterns({13: 1}, peak_hours=[13]),
            },
            "events_by_type": {**ZERO_TYPES, "view": 1},
        }),
    }  # fmt: skip


def test_community_reports_of_an_earlier_day(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert run(settings, "generate_community_reports", at(1, 3, 30)) == {"period": DAY2, "reports": 1}
    (period_start, period_end, payload) = reports(database_url, "community", DAY2)[f"community:{C}"]
    assert (period_start, period_end) == (DAY2, DAY2)
    payload = {**payload["metrics"], "events_by_type": payload["events_by_type"]}
    # Day -2: member 1's visits of 45 and 0 min, members 3 and 4 once each (0 min); day -3 had member 5 only.
    assert payload["total_views"] == 4  # member 1: 3, member 3: 1
    assert payload["unique_visitors"] == 3
    assert payload["average_session_duration"] == 11.25  # (45 + 0 + 0 + 0) / 4
    assert payload["member_retention"] == 0.0
    assert payload["events_by_type"] == {**ZERO_TYPES, "view": 4, "like": 2}


def test_geo_effectiveness_reports(settings: Settings, database_url: str) -> None:
    seed(database_url)
    assert run(settings, "generate_geo_effectiveness_reports", today(4)) == {"period": DAY1, "reports": 2}
    stored = reports(database_url, "geo_effectiveness")
    for _, _, payload in stored.values():
        payload["trends"] = [{**p, "bucket": datetime.fromisoformat(p["bucket"])} for p in payload["trends"]]
    assert stored == {
        f"community:{GEO}": (DAY1, DAY1, {
            "community_id": GEO,
            "date_range": {"start": DAY1, "end": DAY1},
            "restriction_effectiveness": {
                "total_attempts": 123,  # 60 + 40 blocked, 15 + 8 allowed
                "blocked_attempts": 100,
                "allowed_attempts": 23,
                "effectiveness_percentage": 81.3,  # 100 / 123 = 81.30 %
            },
            "top_blocked_locations": [
                {"country": "Germany", "country_code": "DE", "city": "Berlin", "attempts": 60},
                {"country": "France", "country_code": "FR", "city": "Paris", "attempts": 40},
            ],
            # Every attempt of the fixture is decided by a country rule.
            "categories": categories(country_blocked=100, country_allowed=23, traveler_access=15),
            "traveler_attempts": 15,
            "bypass_attempts": 0,
            "location_breakdown": [
                place("Germany", "DE", counts(60, blocked=60), [("Berlin", counts(60, blocked=60), [
                    ("Berlin", counts(60, blocked=60))])]),
                place("France", "FR", counts(40, blocked=40), [("Ile-de-France", counts(40, blocked=40), [
                    ("Paris", counts(40, blocked=40))])]),
                place("United States", "US", counts(23, allowed=23, travelers=15), [
                    ("California", counts(23, allowed=23, travelers=15), [
                        ("Oakland", counts(15, allowed=15, travelers=15)), (None, counts(8, allowed=8))])]),
            ],
            "trends": [
                trend(at(1, 10), 60, blocked=60),  # Berlin
                trend(at(1, 11), 40, blocked=40),  # Paris
                trend(at(1, 12), 23, allowed=23, travelers=15),  # California
            ],
        }),
        f"community:{GEO + 1}": (DAY1, DAY1, {
            "community_id": GEO + 1,
            "date_range": {"start": DAY1, "end": DAY1},
            "restriction_effectiveness": {
                "total_attempts": 1, "blocked_attempts": 1, "allowed_attempts": 0, "effectiveness_percentage": 100.0,
            },
            "top_blocked_locations": [
                {"country": "Germany", "country_code": "DE", "city": "Berlin", "attempts": 1},
            ],
            "categories": categories(country_blocked=1),
            "traveler_attempts": 0,
            "bypass_attempts": 0,
            "location_breakdown": [
                place("Germany", "DE", counts(1, blocked=1), [("Berlin", counts(1, blocked=1), [
                    ("Berlin", counts(1, blocked=1))])]),
            ],
            "trends": [trend(at(1, 12), 1, blocked=1)],
        }),
    }  # fmt: skip
    # Day -2: Munich's 27 blocked of 327 attempts (300 allowed from New York).
    assert run(settings, "generate_geo_effectiveness_reports", at(1, 4)) == {"period": DAY2, "reports": 1}
    payload = reports(database_url, "geo_effectiveness", DAY2)[f"community:{GEO}"]
    assert payload[2]["restriction_effectiveness"]["effectiveness_percentage"] == 8.3  # 27 / 327 = 8.26 %
    assert payload[2]["top_blocked_locations"] == [
        {"country": "Germany", "country_code": "DE", "city": "Munich", "attempts": 27}
    ]


def test_a_quiet_day(settings: Settings, database_url: str) -> None:
    assert run(settings, "generate_community_reports", today()) == {"period": DAY1, "reports": 0}
    assert run(settings, "generate_geo_effectiveness_reports", today()) == {"period": DAY1, "reports": 0}
    assert run(settings, "generate_analytics_reports", today()) == {"period": DAY1, "reports": 1}
    payload = reports(database_url, "analytics")["platform"][2]
    assert payload["events"] == {"total": 0, "by_type": ZERO_TYPES}
    assert payload["sessions"] == {"count": 0, "average_duration": None}
    assert payload["geo"]["restriction_effectiveness"]["effectiveness_percentage"] is None
    assert payload["errors"]["total"] == 0


def test_regenerating_a_day_replaces_its_reports(settings: Settings, database_url: str) -> None:
    seed(database_url)
    query = "SELECT id, kind, scope, period_start, generated_at, payload FROM reports ORDER BY id"
    for task in ("generate_analytics_reports", "generate_community_reports", "generate_geo_effectiveness_reports"):
        run(settings, task, today())
    first = rows(database_url, query)
    assert len(first) == 5  # platform, 2 communities, 2 geo communities
    for task in ("generate_analytics_reports", "generate_community_reports", "generate_geo_effectiveness_reports"):
        run(settings, task, today())
    assert rows(database_url, query) == first

    # A late view of day -1 arrives: a later run replaces the report, same row, new figures.
    store(database_url, [act(at(1, 21), C, 2, "view")])
    refresh_rollups(database_url)
    run(settings, "generate_community_reports", today(5))
    after = rows(database_url, "SELECT id, generated_at, payload FROM reports WHERE scope = %s AND kind = 'community'",
                 f"community:{C}")  # fmt: skip
    (report_id, generated_at, payload) = after[0]
    assert len(after) == 1 and report_id == next(r[0] for r in first if r[1:3] == ("community", f"community:{C}"))
    assert generated_at == today(5)
    assert payload["metrics"]["total_views"] == 4
    assert rows(database_url, "SELECT count(*) FROM reports") == [(5,)]

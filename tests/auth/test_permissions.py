"""The permission matrix: every route x every kind of caller, from one table.

A route the application serves but the table lacks fails `test_every_route_is_in_the_matrix`, so a new route
cannot ship without its permissions written down (README "Permissions" is the same table in prose).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.auth.keys import digest
from service.core.settings import Settings
from tests.support import bearer

# Staff last: its writes succeed. The API keys are limited to COMMUNITY: one may read its reports, one may track.
ROLES = ("anonymous", "user", "other_user", "moderator", "service", "read_key", "track_key", "staff")
USER, OTHER_USER, MODERATOR, COMMUNITY, OTHER_COMMUNITY = 7, 8, 9, 5, 6
READ_KEY, TRACK_KEY = "ak_" + "r" * 43, "ak_" + "t" * 43

# (method, route template, body) -> expected status per role, in ROLES order. The user's own data belongs to
# USER; the moderator moderates COMMUNITY; every path below is about USER's data or COMMUNITY.
TRACK = {"community_id": COMMUNITY, "user_id": USER, "activity_type": "view"}
GEO = {"community_id": COMMUNITY, "user_id": USER, "access_result": "blocked", "restriction_scope": "country",
       "location": {"country_code": "DE", "country": "Germany"}}  # fmt: skip
EVENT = {"user_id": USER, "activity_type": "page_view"}
MATRIX: list[tuple[str, str, Any, str]] = [
    #  method   route                                                 body     anon user other mod  svc  rkey tkey staff
    ("GET", "/health", None, "                                                 200  200  200  200  200  200  200  200"),
    ("GET", "/ready", None, "                                                  200  200  200  200  200  200  200  200"),
    ("GET", "/api/auth/me/", None, "                                           401  200  200  200  200  200  200  200"),
    ("POST", "/api/auth/session/", None, "                                     401  201  201  201  201  403  403  201"),
    ("DELETE", "/api/auth/session/", None, "                                   401  204  204  204  204  403  403  204"),
    ("POST", "/api/community-analytics/track/", TRACK, "                       401  202  403  403  202  403  202  202"),
    ("POST", "/api/community-analytics/track/batch/", [TRACK], "               401  202  403  403  202  403  202  202"),
    ("POST", "/api/geo-analytics/track/", GEO, "                               401  202  403  403  202  403  202  202"),
    ("POST", "/api/geo-analytics/track/batch/", [GEO], "                       401  202  403  403  202  403  202  202"),
    ("POST", "/api/events/", [EVENT], "                                        401  202  403  403  202  403  403  202"),
    ("GET", "/api/community-analytics/", None, "                               401  403  403  403  403  403  403  200"),
    ("GET", "/api/community-analytics/{community}/realtime/", None, "          401  403  403  200  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/live/", None, "              401  403  403  200  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/report/", None, "            401  403  403  200  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/activity-patterns/", None, " 401  403  403  200  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/cohorts/", None, "           401  403  403  200  403  200  403  200"),
    (
        "GET",
        "/api/community-analytics/{community}/funnel/?steps=view,join",
        None,
        "401  403  403  200  403  200  403  200",
    ),
    ("GET", "/api/community-analytics/{other_community}/report/", None, "      401  403  403  403  403  403  403  200"),
    ("GET", "/api/geo-analytics/{other_community}/trends/", None, "            401  403  403  403  403  403  403  200"),
    ("GET", "/api/geo-analytics/{community}/effectiveness/", None, "           401  403  403  200  403  200  403  200"),
    ("GET", "/api/geo-analytics/{community}/locations/", None, "               401  403  403  200  403  200  403  200"),
    ("GET", "/api/geo-analytics/{community}/trends/", None, "                  401  403  403  200  403  200  403  200"),
    ("GET", "/api/reports/", None, "                                           401  403  403  403  403  403  403  200"),
    ("GET", "/api/reports/{report}/", None, "                                  401  403  403  200  403  200  403  200"),
    ("GET", "/api/reports/{report}/csv/", None, "                              401  403  403  200  403  200  403  200"),
    ("GET", "/api/export/{dataset}/", None, "                                  401  403  403  403  403  403  403  200"),
    ("GET", "/api/tasks/", None, "                                             401  403  403  403  403  403  403  200"),
    ("GET", "/api/tasks/{task}/", None, "                                      401  403  403  403  403  403  403  200"),
    ("PATCH", "/api/tasks/{task}/", {"enabled": True}, "                       401  403  403  403  403  403  403  200"),
    ("POST", "/api/tasks/{task}/run/", None, "                                 401  403  403  403  403  403  403  202"),
    ("GET", "/api/tasks/runs/", None, "                                        401  403  403  403  403  403  403  200"),
    ("GET", "/metrics", None, "                                                200  200  200  200  200  200  200  200"),
    ("GET", "/api/daily/", None, "                                             401  403  403  403  403  403  403  200"),
    ("POST", "/api/daily/", {"date": "2020-01-01"}, "                          401  403  403  403  403  403  403  201"),
    ("GET", "/api/daily/{daily}/", None, "                                     401  403  403  403  403  403  403  200"),
    ("PUT", "/api/daily/{daily}/", "daily", "                                  401  403  403  403  403  403  403  200"),
    ("PATCH", "/api/daily/{daily}/", {"active_users": 3}, "                    401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/daily/{daily}/", None, "                                  401  403  403  403  403  403  403  204"),
    ("GET", "/api/user-analytics/?user={user}", None, "                        401  200  403  403  403  403  403  200"),
    ("POST", "/api/user-analytics/", {"user_id": USER, "date": "2020-01-01"}, "401  403  403  403  403  403  403  201"),
    ("GET", "/api/user-analytics/{user_analytics}/", None, "                   401  200  403  403  403  403  403  200"),
    ("PUT", "/api/user-analytics/{user_analytics}/", "user_analytics", "       401  403  403  403  403  403  403  200"),
    ("PATCH", "/api/user-analytics/{user_analytics}/", {"page_views": 2}, "    401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/user-analytics/{user_analytics}/", None, "                401  403  403  403  403  403  403  204"),
    ("GET", "/api/metrics/", None, "                                           401  403  403  403  403  403  403  200"),
    ("POST", "/api/metrics/", {"metric_type": "cpu_percent", "value": 1.5}, "  401  403  403  403  201  403  403  201"),
    ("GET", "/api/metrics/{metric}/", None, "                                  401  403  403  403  403  403  403  200"),
    ("PUT", "/api/metrics/{metric}/", "metric", "                              401  403  403  403  403  403  403  200"),
    ("PATCH", "/api/metrics/{metric}/", {"value": 2.0}, "                      401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/metrics/{metric}/", None, "                               401  403  403  403  403  403  403  204"),
    ("GET", "/api/errors/?user={user}", None, "                                401  200  403  403  403  403  403  200"),
    (
        "POST",
        "/api/errors/",
        {"level": "error", "message": "x", "user_id": USER},
        "401  201  403  403  201  403  403  201",
    ),
    ("GET", "/api/errors/{error}/", None, "                                    401  200  403  403  403  403  403  200"),
    ("PUT", "/api/errors/{error}/", "error", "                                 401  403  403  403  403  403  403  200"),
    ("PATCH", "/api/errors/{error}/", {"level": "critical"}, "                 401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/errors/{error}/", None, "                                 401  403  403  403  403  403  403  204"),
    ("POST", "/api/errors/{error}/resolve/", None, "                           401  403  403  403  403  403  403  200"),
    ("POST", "/api/errors/{error}/unresolve/", None, "                         401  403  403  403  403  403  403  200"),
    ("GET", "/api/annotations/", None, "                                       401  403  403  403  403  403  403  200"),
    ("GET", "/api/annotations/?community_id={community}", None, "              401  403  403  200  403  200  403  200"),
    (
        "POST",
        "/api/annotations/",
        {"time": "2026-01-01T00:00:00Z", "text": "x"},
        "401  403  403  403  403  403  403  201",
    ),
    ("GET", "/api/annotations/{annotation}/", None, "                          401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/annotations/{annotation}/", None, "                       401  403  403  403  403  403  403  204"),
    ("POST", "/api/keys/", {"name": "n", "scope": "read"}, "                  401  403  403  403  403  403  403  201"),
    ("GET", "/api/keys/", None, "                                              401  403  403  403  403  403  403  200"),
    ("DELETE", "/api/keys/{key}/", None, "                                     401  403  403  403  403  403  403  204"),
    ("GET", "/api/error-groups/", None, "                                      401  403  403  403  403  403  403  200"),
    ("GET", "/api/error-groups/{group}/", None, "                              401  403  403  403  403  403  403  200"),
    ("POST", "/api/error-groups/{group}/resolve/", None, "                     401  403  403  403  403  403  403  200"),
    ("POST", "/api/error-groups/{group}/unresolve/", None, "                   401  403  403  403  403  403  403  200"),
]
# Full bodies for PUT, by the row they replace (every writable field).
PUT_BODIES: dict[str, dict[str, Any]] = {
    "daily": {"date": "2020-02-02", **dict.fromkeys(
        ("total_users", "active_users", "new_registrations", "community_views", "community_joins",
         "peak_community_activity", "geo_access_attempts", "geo_blocked_attempts", "geo_allowed_access",
         "traveler_access_count", "content_views", "content_interactions", "new_posts", "new_comments", "total_likes",
         "total_shares", "total_interactions", "api_requests", "error_count"), 1),
        "average_online_members": 1.0, "avg_session_duration": 1.0, "bounce_rate": 10.0, "avg_response_time": 5.0},
    "user_analytics": {"user_id": USER, "date": "2020-02-02", **dict.fromkeys(
        ("page_views", "actions_performed", "communities_viewed", "communities_joined", "community_interactions",
         "geo_restricted_attempts", "total_posts", "total_comments", "total_likes_given", "total_likes_received",
         "followers_gained", "followers_lost", "total_sessions", "recommendations_shown",
         "recommendations_clicked"), 1),
        "community_online_time": 1.0, "total_time_spent": 1.0, "avg_session_duration": 1.0,
        "locations_accessed_from": [], "travel_detected": False},
    "metric": {"metric_type": "cpu_percent", "value": 3.0, "additional_data": {},
               "recorded_at": "2026-01-01T00:00:00Z"},
    "error": {"user_id": USER, "level": "warning", "message": "replaced", "stack_trace": None, "url": None,
              "method": None, "ip_address": None, "user_agent": None, "extra_data": {}, "is_resolved": False},
}  # fmt: skip


def _normalised(template: str) -> str:
    """`/api/x/{id:int}/` and `/api/x/{id}` alike: parameter names and types dropped, no trailing slash."""
    return re.sub(r"\{[^}]*\}", "{}", template.partition("?")[0]).rstrip("/") or "/"


def test_every_route_is_in_the_matrix(settings: Settings) -> None:
    served = {
        (method, _normalised(route.path))
        for route in create_app(settings).routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS") and not route.path.startswith("/docs")
    }
    listed = {(method, _normalised(template)) for method, template, _, _ in MATRIX}
    assert served - listed == set(), "routes without a row in the permission matrix"
    assert listed - served == set(), "matrix rows for routes the application does not serve"


@pytest.fixture
def ids(settings: Settings, database_url: str) -> Iterator[dict[str, Any]]:
    """The rows the paths point at: a report of COMMUNITY, USER's user analytics and error log, a daily row, a
    system metric, an annotation, the API keys."""
    with psycopg.connect(database_url) as conn:

        def one(query: str, *params: Any) -> Any:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return row[0]

        report = one(
            "INSERT INTO reports (kind, scope, period_start, period_end, payload) "
            "VALUES ('community', %s, current_date - 7, current_date, '{\"total_views\": 3}') RETURNING id",
            f"community:{COMMUNITY}",
        )
        daily = one("INSERT INTO daily_analytics (date) VALUES ('2021-03-03') RETURNING id")
        user_analytics = one("INSERT INTO user_analytics (user_id, date) VALUES (%s, '2021-03-03') RETURNING id", USER)
        metric = one("INSERT INTO system_metrics (metric_type, value) VALUES ('cpu_percent', 1) RETURNING id")
        annotation = one("INSERT INTO annotations (time, text) VALUES (now(), 'raid') RETURNING id")
        for name, secret in (("read", READ_KEY), ("track", TRACK_KEY)):
            conn.execute(
                "INSERT INTO api_keys (name, scope, communities, prefix, secret_hash, created_by) "
                "VALUES (%s, %s, %s, %s, %s, 'staff')",
                (f"{name} key", name, [COMMUNITY], secret[:11], digest(secret)),
            )
        key = one("INSERT INTO api_keys (name, scope, prefix, secret_hash, created_by) "
                  "VALUES ('to revoke', 'read', 'ak_x', '\\x00', 'staff') RETURNING id")  # fmt: skip
    with TestClient(create_app(settings)) as client:  # an error log as the API records it, with its group
        logged = client.post(
            "/api/errors/",
            json={"level": "error", "message": "boom 1", "user_id": USER},
            headers=_headers(settings, "staff"),
        )
        assert logged.status_code == 201, logged.text
    yield {
        "community": COMMUNITY, "report": report, "task": "process_error_logs", "user": USER, "daily": daily,
        "user_analytics": user_analytics, "metric": metric, "error": logged.json()["id"],
        "group": logged.json()["group_id"], "dataset": "activity", "annotation": annotation,
        "key": key, "other_community": OTHER_COMMUNITY,
    }  # fmt: skip


def _headers(settings: Settings, role: str) -> dict[str, str]:
    match role:
        case "anonymous":
            return {}
        case "user":
            return bearer(settings, str(USER))
        case "other_user":
            return bearer(settings, str(OTHER_USER))
        case "moderator":
            return bearer(settings, str(MODERATOR), moderated=[COMMUNITY])
        case "service":
            return bearer(settings, "platform-backend", service=True)
        case "read_key":
            return {"Authorization": f"Bearer {READ_KEY}"}
        case "track_key":
            return {"Authorization": f"Bearer {TRACK_KEY}"}
        case "staff":
            return bearer(settings, "1", staff=True)
    raise AssertionError(role)


@pytest.mark.parametrize(("method", "template", "body", "expected"), MATRIX, ids=[f"{m} {t}" for m, t, _, _ in MATRIX])
def test_permissions(
    settings: Settings, ids: dict[str, Any], method: str, template: str, body: Any, expected: str
) -> None:
    path = template.format(**ids)
    want = dict(zip(ROLES, map(int, expected.split()), strict=True))
    got = {}
    with TestClient(create_app(settings)) as client:
        for role in ROLES:
            client.cookies.clear()
            payload = PUT_BODIES[body] if isinstance(body, str) else body
            if template.endswith("/live/") and want[role] == 200:  # a stream never ends: its headers tell
                response = client.head(path, headers=_headers(settings, role))
            else:
                response = client.request(method, path, json=payload, headers=_headers(settings, role))
            got[role] = response.status_code
            if response.status_code in (401, 403):
                assert response.json()["detail"], f"{role}: a refusal names its reason"
    assert got == want

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
from service.settings import Settings
from tests.support import bearer

ROLES = ("anonymous", "user", "other_user", "moderator", "service", "staff")  # staff last: its writes succeed
USER, OTHER_USER, MODERATOR, COMMUNITY = 7, 8, 9, 5

# (method, route template, body) -> expected status per role, in ROLES order. The user's own data belongs to
# USER; the moderator moderates COMMUNITY; every path below is about USER's data or COMMUNITY.
TRACK = {"community_id": COMMUNITY, "user_id": USER, "activity_type": "view"}
GEO = {"community_id": COMMUNITY, "user_id": USER, "access_result": "blocked", "restriction_scope": "country",
       "location": {"country_code": "DE", "country": "Germany"}}  # fmt: skip
EVENT = {"user_id": USER, "activity_type": "page_view"}
MATRIX: list[tuple[str, str, Any, str]] = [
    #  method   route                                                 body     anon user other mod  svc  staff
    ("GET", "/health", None, "                                                 200  200  200  200  200  200"),
    ("GET", "/ready", None, "                                                  200  200  200  200  200  200"),
    ("GET", "/api/auth/me/", None, "                                           401  200  200  200  200  200"),
    ("POST", "/api/auth/session/", None, "                                     401  201  201  201  201  201"),
    ("DELETE", "/api/auth/session/", None, "                                   401  204  204  204  204  204"),
    ("POST", "/api/community-analytics/track/", TRACK, "                       401  202  403  403  202  202"),
    ("POST", "/api/community-analytics/track/batch/", [TRACK], "               401  202  403  403  202  202"),
    ("POST", "/api/geo-analytics/track/", GEO, "                               401  202  403  403  202  202"),
    ("POST", "/api/geo-analytics/track/batch/", [GEO], "                       401  202  403  403  202  202"),
    ("POST", "/api/events/", [EVENT], "                                        401  202  403  403  202  202"),
    ("GET", "/api/community-analytics/", None, "                               401  403  403  403  403  200"),
    ("GET", "/api/community-analytics/{community}/realtime/", None, "          401  403  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/report/", None, "            401  403  403  200  403  200"),
    ("GET", "/api/community-analytics/{community}/activity-patterns/", None, " 401  403  403  200  403  200"),
    ("GET", "/api/geo-analytics/{community}/effectiveness/", None, "           401  403  403  200  403  200"),
    ("GET", "/api/geo-analytics/{community}/locations/", None, "               401  403  403  200  403  200"),
    ("GET", "/api/geo-analytics/{community}/trends/", None, "                  401  403  403  200  403  200"),
    ("GET", "/api/reports/", None, "                                           401  403  403  403  403  200"),
    ("GET", "/api/reports/{report}/", None, "                                  401  403  403  200  403  200"),
    ("GET", "/api/reports/{report}/csv/", None, "                              401  403  403  200  403  200"),
    ("GET", "/api/tasks/", None, "                                             401  403  403  403  403  200"),
    ("POST", "/api/tasks/{task}/run/", None, "                                 401  403  403  403  403  202"),
    ("GET", "/api/tasks/runs/", None, "                                        401  403  403  403  403  200"),
]


def _normalised(template: str) -> str:
    """`/api/x/{id:int}/` and `/api/x/{id}` alike: parameter names and types dropped, no trailing slash."""
    return re.sub(r"\{[^}]*\}", "{}", template).rstrip("/") or "/"


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
def ids(database_url: str) -> Iterator[dict[str, Any]]:
    """The rows the paths point at: a report of COMMUNITY."""
    with psycopg.connect(database_url) as conn:
        report = conn.execute(
            "INSERT INTO reports (kind, scope, period_start, period_end, payload) "
            "VALUES ('community', %s, current_date - 7, current_date, '{\"total_views\": 3}') RETURNING id",
            (f"community:{COMMUNITY}",),
        ).fetchone()
    assert report is not None
    yield {"community": COMMUNITY, "report": report[0], "task": "process_error_logs", "user": USER}


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
            response = client.request(method, path, json=body, headers=_headers(settings, role))
            got[role] = response.status_code
            if response.status_code in (401, 403):
                assert response.json()["detail"], f"{role}: a refusal names its reason"
    assert got == want

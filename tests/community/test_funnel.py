"""`GET /api/community-analytics/{id}/funnel/`: members through a sequence of steps, each within `within` seconds
of the one before, on a hand-built fixture (every expected number is worked out here), and what is refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from service.live.records import ActivityRecord
from service.tools.bench.shapes import funnel_members
from tests.support import act, at, store

C, OTHER = 5, 6
T0 = at(2, 10)  # two days ago, 10:00 UTC
HOUR = 3600


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def funnel_events() -> list[ActivityRecord]:
    return [
        # Member 1: view, join 10 min later, post 10 min after that: all three steps.
        act(T0, C, 1, "view"), act(T0 + minutes(10), C, 1, "join"), act(T0 + minutes(20), C, 1, "post"),
        # Member 2: views at 10:00 and 10:30, joins at 12:00 (90 min after the last view): step 1 only.
        act(T0, C, 2, "view"), act(T0 + minutes(30), C, 2, "view"), act(T0 + minutes(120), C, 2, "join"),
        # Member 3: a view at 10:00 is too early for the join at 11:40, the view at 11:30 is not: step 2 (the later
        # start counts); the post comes 3 h 20 min after the join: not step 3.
        act(T0, C, 3, "view"), act(T0 + minutes(90), C, 3, "view"), act(T0 + minutes(100), C, 3, "join"),
        act(T0 + minutes(300), C, 3, "post"),
        # Member 4: joins before viewing: step 1 only (the join must come after the view).
        act(T0, C, 4, "join"), act(T0 + minutes(5), C, 4, "view"),
        # Member 5: view and join at the same instant: the join is not after the view.
        act(T0, C, 5, "view"), act(T0, C, 5, "join"),
        # Member 9: join exactly an hour after the view (within, inclusive), post an hour and a second later (not).
        act(T0, C, 9, "view"), act(T0 + timedelta(seconds=HOUR), C, 9, "join"),
        act(T0 + timedelta(seconds=2 * HOUR + 1), C, 9, "post"),
        # Member 6 only posts; member 7 viewed another community; member 8's view is before the 30-day window.
        act(T0, C, 6, "post"),
        act(T0, OTHER, 7, "view"), act(T0 + minutes(1), C, 7, "join"),
        act(at(40, 10), C, 8, "view"), act(T0, C, 8, "join"),
        # Anonymous events are no member's.
        act(T0, C, None, "view"), act(T0 + minutes(1), C, None, "join"),
    ]  # fmt: skip


@pytest.fixture
def seeded(client: TestClient[Any], database_url: str) -> TestClient[Any]:
    store(database_url, funnel_events())
    return client


def funnel(client: TestClient[Any], query: str) -> dict[str, Any]:
    response = client.get(f"/api/community-analytics/{C}/funnel/{query}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_members_at_each_step(seeded: TestClient[Any]) -> None:
    answer = funnel(seeded, "?steps=view,join,post&days=30&within=3600")
    assert answer == {
        "community_id": C,
        "date_range": {"start": str(at(30, 0).date()), "end": str(at(0, 0).date())},
        "within": 3600,
        "steps": [
            # Members 1, 2, 3, 4, 5, 9 viewed; 1, 3, 9 joined within the hour; 1 posted within the hour after.
            {"activity_type": "view", "members": 6, "conversion": 100.0, "step_conversion": 100.0},
            {"activity_type": "join", "members": 3, "conversion": 50.0, "step_conversion": 50.0},
            {"activity_type": "post", "members": 1, "conversion": 16.7, "step_conversion": 33.3},
        ],
    }


def test_the_time_limit_and_the_window(seeded: TestClient[Any]) -> None:
    # A day between steps: member 2's join (90 min), member 3's post (3 h 20 min) and member 9's count too.
    members = [s["members"] for s in funnel(seeded, "?steps=view,join,post&within=86400")["steps"]]
    assert members == [6, 4, 3]
    # The default window is 30 days and the default limit a day.
    assert (
        funnel(seeded, "?steps=view,join,post")["steps"]
        == funnel(seeded, "?steps=view,join,post&within=86400&days=30")["steps"]
    )
    # Two days back start at midnight two days ago: T0 is inside. With 90 days (as long as raw events are kept),
    # member 8's old view is in, but its join comes 38 days later.
    assert [s["members"] for s in funnel(seeded, "?steps=view,join&days=2&within=3600")["steps"]] == [6, 3]
    assert [s["members"] for s in funnel(seeded, "?steps=view,join&days=90&within=3600")["steps"]] == [7, 3]
    # Only yesterday and today: nobody.
    answer = funnel(seeded, "?steps=view,join&days=1")
    assert [(s["members"], s["conversion"], s["step_conversion"]) for s in answer["steps"]] == [
        (0, None, None), (0, None, None)
    ]  # fmt: skip


def test_a_step_may_come_back(seeded: TestClient[Any]) -> None:
    # Two views within the hour, strictly one after the other: member 2 (10:00, 10:30) only.
    assert [s["members"] for s in funnel(seeded, "?steps=view,view&within=3600")["steps"]] == [6, 1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?steps=view", "steps"),
        ("?steps=view,join,post,like,share,comment,view", "steps"),
        ("?steps=view,fly", "steps"),
        ("?steps=view,,join", "steps"),
        ("?steps=" + "view," * 200 + "join", "steps"),
        ("?within=60", "steps"),
        ("?steps=view,join&within=0", "within"),
        ("?steps=view,join&within=31536001", "within"),
        ("?steps=view,join&days=0", "days"),
        ("?steps=view,join&days=91", "days"),  # raw events are kept 90 days (RETENTION_RAW_DAYS)
    ],
)
def test_refused(client: TestClient[Any], query: str, field: str) -> None:
    response = client.get(f"/api/community-analytics/{C}/funnel/{query}")
    assert response.status_code == 400, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field], response.text


@pytest.mark.parametrize(
    ("steps", "within"),
    [("view,join,post", 3600), ("view,join,post", 86400), ("view,view", 3600), ("join,view,post,view", 600)],
)
def test_the_benchs_twin_agrees(seeded: TestClient[Any], steps: str, within: int) -> None:
    """`bench queries` checks the endpoint against a computation member by member in Python (its raw twin)."""
    start = at(30, 0)
    rows = [(e.user_id, e.activity_type, e.time.timestamp()) for e in funnel_events()
            if e.community_id == C and e.user_id is not None and e.time >= start]  # fmt: skip
    answer = funnel(seeded, f"?steps={steps}&within={within}")
    assert [s["members"] for s in answer["steps"]] == funnel_members(rows, steps.split(","), within)

"""`/api/annotations/`: create (and what is refused), list with each filter, get, delete; moderators read their
community's; a task's schedule change and a failing rollup refresh annotate the dashboards by themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from service.core.task_catalog import BY_NAME
from service.tasks.worker import execute
from tests.support import act, bearer, rows, store

Client = TestClient[Any]
T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def create(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/annotations/", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def texts(client: Client, query: str = "", **kwargs: Any) -> list[str]:
    response = client.get(f"/api/annotations/{query}", **kwargs)
    assert response.status_code == 200, response.text
    return [row["text"] for row in response.json()["results"]]


def seed(client: Client) -> None:
    create(client, time=iso(T0), text="release 2026.11.3", tags=["release"])
    create(client, time=iso(T0 + timedelta(hours=2)), time_end=iso(T0 + timedelta(hours=5)), text="raid",
           tags=["raid", "moderation"], community_id=5)  # fmt: skip
    create(client, time=iso(T0 + timedelta(hours=3)), text="geo rule: blocks DE", tags=["geo-rule"], community_id=6)


def test_create_get_and_delete(client: Client, settings: Settings, database_url: str) -> None:
    created = create(client, time="2026-11-20T13:00:00+01:00", text="geo rule changed", tags=["geo-rule"],
                     community_id=5)  # fmt: skip
    assert created == {
        "id": created["id"], "time": "2026-11-20T12:00:00Z", "time_end": None, "text": "geo rule changed",
        "tags": ["geo-rule"], "community_id": 5, "source": "api", "created_by": "1",
        "created_at": created["created_at"],
    }  # fmt: skip
    assert client.get(f"/api/annotations/{created['id']}/").json() == created
    # A region, and the defaults: no tags, the whole platform.
    region = create(client, time=iso(T0), time_end=iso(T0 + timedelta(minutes=30)), text="maintenance")
    assert (region["time_end"], region["tags"], region["community_id"]) == ("2026-11-20T12:30:00Z", [], None)
    assert client.delete(f"/api/annotations/{created['id']}/").status_code == 204
    assert client.get(f"/api/annotations/{created['id']}/").status_code == 404
    assert client.delete(f"/api/annotations/{created['id']}/").status_code == 404
    assert rows(database_url, "SELECT text FROM annotations") == [("maintenance",)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "no time"}, "time"),
        ({"time": "2026-11-20T12:00:00Z"}, "text"),
        ({"time": "2026-11-20T12:00:00", "text": "no zone"}, "time"),
        ({"time": "2026-11-20T12:00:00Z", "text": ""}, "text"),
        ({"time": "2026-11-20T12:00:00Z", "text": "x" * 2001}, "text"),
        ({"time": "2026-11-20T12:00:00Z", "time_end": "2026-11-20T11:00:00Z", "text": "backwards"}, "time_end"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "tags": ["Not A Tag"]}, "tags[0]"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "tags": ["raid\n"]}, "tags[0]"),
        ({"time": "9999-12-31T23:00:00-05:00", "text": "past year 9999 in UTC"}, "time"),
        ({"time": "2026-11-20T12:00:00Z", "time_end": "0001-01-01T00:00:00+05:00", "text": "t"}, "time_end"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "community_id": 0}, "community_id"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "source": "task-schedule"}, "source"),
        ({"time": "2026-11-20T12:00:00Z", "text": "t", "colour": "red"}, "colour"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(
    client: Client, database_url: str, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/annotations/", json=body)
    assert response.status_code == 400, response.text
    assert field in [error["field"] for error in response.json()["errors"]], response.text
    assert rows(database_url, "SELECT count(*) FROM annotations") == [(0,)]


def test_list_filters_newest_first(client: Client) -> None:
    seed(client)
    assert texts(client) == ["geo rule: blocks DE", "raid", "release 2026.11.3"]
    assert texts(client, "?ordering=time") == ["release 2026.11.3", "raid", "geo rule: blocks DE"]
    assert texts(client, "?community_id=5") == ["raid"]
    assert texts(client, "?tag=moderation") == ["raid"]
    # A region counts from its start to its end: the raid (14:00 to 17:00) overlaps [16:00, 16:30).
    window = f"?since={iso(T0 + timedelta(hours=4))}&until={iso(T0 + timedelta(hours=4, minutes=30))}"
    assert texts(client, window) == ["raid"]
    assert texts(client, f"?until={iso(T0 + timedelta(hours=2))}") == ["release 2026.11.3"]  # strictly before
    page = client.get("/api/annotations/?page_size=2").json()
    assert (page["count"], len(page["results"]), page["next"]) == (3, 2, "/api/annotations/?page_size=2&page=2")
    for query, field in (("?tag=Raid", "tag"), ("?community_id=0", "community_id"), ("?ordering=text", "ordering"),
                         (f"?since={iso(T0)}&until={iso(T0 - timedelta(hours=1))}", "until")):  # fmt: skip
        response = client.get(f"/api/annotations/{query}")
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == field, response.text


def test_moderators_read_their_communitys_annotations_only(client: Client, settings: Settings) -> None:
    seed(client)
    moderator = bearer(settings, "9", moderated=[5])
    assert texts(client, "?community_id=5", headers=moderator) == ["raid"]
    for query in ("", "?community_id=6"):
        assert client.get(f"/api/annotations/{query}", headers=moderator).status_code == 403
    assert client.post("/api/annotations/", json={"time": iso(T0), "text": "t", "community_id": 5},
                       headers=moderator).status_code == 403  # fmt: skip


def test_a_schedule_change_is_annotated(client: Client, database_url: str) -> None:
    before = datetime.now(UTC)
    assert client.patch("/api/tasks/update-daily-analytics/", json={"schedule": "*/5 * * * *"}).status_code == 200
    assert (
        client.patch("/api/tasks/update_daily_analytics/", json={"enabled": False, "schedule": None}).status_code == 200
    )
    [second, first] = client.get("/api/annotations/?tag=task-schedule").json()["results"]
    assert first["text"] == "Task update_daily_analytics: schedule '*/5 * * * *' (changed by 1)"
    assert (
        second["text"] == "Task update_daily_analytics: schedule back to the configuration, switched off (changed by 1)"
    )
    assert (first["tags"], first["source"], first["created_by"]) == (
        ["task-schedule", "update_daily_analytics"], "task-schedule", "1"
    )  # fmt: skip
    assert datetime.fromisoformat(first["time"]) >= before - timedelta(seconds=1)
    # A refused change writes nothing.
    assert client.patch("/api/tasks/update-daily-analytics/", json={"schedule": "every day"}).status_code == 400
    assert rows(database_url, "SELECT count(*) FROM annotations") == [(2,)]


def test_a_failing_rollup_refresh_is_one_region_per_outage(settings: Settings, database_url: str) -> None:
    assert BY_NAME["refresh_rollups"].annotate_failures
    assert not any(spec.annotate_failures for name, spec in BY_NAME.items() if name != "refresh_rollups")
    stored = "SELECT time, time_end, text, tags, source FROM annotations ORDER BY id"
    broken = "ALTER TABLE activity_hourly_mat RENAME TO activity_hourly_mat_away"
    mended = "ALTER TABLE activity_hourly_mat_away RENAME TO activity_hourly_mat"

    def refresh(sql: str | None = None) -> str:
        """The refresh run by the task worker, with an event to roll up (after `sql`, when given)."""
        if sql:
            rows_of(sql)
        store(database_url, [act(datetime.now(UTC) - timedelta(hours=3), 5, 7)])  # below the watermark
        return execute(settings, "refresh_rollups").status

    def rows_of(sql: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # the test's own DDL

    assert refresh() == "success"
    assert rows(database_url, stored) == []
    assert refresh(broken) == "failure"
    [(start, end, text, tags, source)] = rows(database_url, stored)
    assert start == end and text.startswith("Rollup refresh failing: RefreshFailed: activity_hourly: ")
    assert (tags, source) == (["rollup-refresh", "failure"], "rollup-refresh")
    assert refresh() == "failure"  # still failing: the same region, longer
    [(start_again, later_end, *_)] = rows(database_url, stored)
    assert start_again == start and later_end > end
    assert refresh(mended) == "success"  # success adds nothing
    # An outage more than an hour after the last failure is a region of its own.
    rows_of("UPDATE annotations SET time = time - interval '2 hours', time_end = time_end - interval '2 hours'")
    assert refresh(broken) == "failure"
    assert len(rows(database_url, stored)) == 2
    refresh(mended)

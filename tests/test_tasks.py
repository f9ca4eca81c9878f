"""Periodic tasks run through huey (immediate mode) against the real servers."""

from __future__ import annotations

from service.settings import Settings
from service.tasks import create_huey
from tests.support import act, at, rows, store


def test_refresh_rollups_task_consumes_the_invalidation_log(settings: Settings, database_url: str) -> None:
    store(database_url, [act(at(1, 10), 3, 1), act(at(1, 10, 5), 3, 1)])
    huey = create_huey(settings, immediate=True)
    task = huey._registry.string_to_task("service.tasks.refresh_rollups")
    huey.enqueue(task())
    assert rows(database_url, "SELECT count(*) FROM rollup_invalidations") == [(0,)]
    assert rows(database_url, "SELECT user_id, community_id, events FROM sessions") == [(1, 3, 2)]
    assert rows(database_url, "SELECT sum(events)::int FROM activity_daily_mat WHERE community_id = 3") == [(2,)]

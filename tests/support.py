"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from litestar.testing import TestClient

from service.app import create_app
from service.auth.tokens import issue_token
from service.core.db import detect_engine
from service.core.settings import Settings
from service.ingest.worker import IngestWorker
from service.ingest.writer import write_batch
from service.live.keys import shards
from service.live.records import ActivityRecord, GeoRecord
from service.storage.rollups import refresh

TEST_JWT_SECRET = "test-secret-of-at-least-32-characters"  # the JWT_SECRET of settings_for()


def bearer(
    settings: Settings,
    subject: str = "1",
    *,
    staff: bool = False,
    moderated: Sequence[int] = (),
    service: bool = False,
) -> dict[str, str]:
    """An Authorization header carrying a token these settings accept."""
    token = issue_token(settings, subject, staff=staff, moderated=moderated, service=service)
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def staff_client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The API on these settings, lifespan included, sending a staff token unless a request replaces it."""
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(settings, "1", staff=True))
        yield client


def drain(worker: IngestWorker) -> int:
    """Run the worker until the stream has nothing for it; returns the entries handled."""
    handled = 0
    while n := worker.step(block_ms=50):
        handled += n
    return handled


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def at(days_ago: int, hour: int, minute: int = 0) -> datetime:
    """A moment `days_ago` days before today (UTC) at hour:minute."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago) + timedelta(hours=hour, minutes=minute)


def act(when: datetime, community: int | None, user: int | None, kind: str = "view", **changes: Any) -> ActivityRecord:
    """An activity record as the API would accept it."""
    fields: dict[str, Any] = dict(
        time=when, event_id=uuid.uuid4(), community_id=community, user_id=user, activity_type=kind,
        session_id=None, duration=None, section=None, metadata={},
    )  # fmt: skip
    fields.update(changes)
    return ActivityRecord(**fields)


def store(
    database_url: str,
    activities: Sequence[ActivityRecord] = (),
    geos: Sequence[GeoRecord] = (),
    use_copy: bool = True,
    batch: int = 1000,
) -> None:
    """Write records through the ingest worker's write path, in batches of `batch`."""
    with psycopg.connect(database_url, prepare_threshold=None) as conn:
        for i in range(0, max(len(activities), len(geos)), batch):
            write_batch(conn, activities[i : i + batch], geos[i : i + batch], 3600, use_copy)


def refresh_rollups(database_url: str) -> None:
    """Run the rollup refresh as the periodic job does."""
    with psycopg.connect(database_url) as conn:
        refresh(conn, detect_engine(conn))


SINGLE = shards(1, False)  # one Redis without INGEST_SHARDS: the key names from before sharding
STREAM, DEAD_LETTERS = SINGLE.all[0].stream, SINGLE.all[0].dead_letters

"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from service.ingest.worker import IngestWorker


def drain(worker: IngestWorker) -> int:
    """Run the worker until the stream has nothing for it; returns the entries handled."""
    handled = 0
    while n := worker.step(block_ms=50):
        handled += n
    return handled


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

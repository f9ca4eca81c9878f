"""`/health`, `/ready` and the OpenAPI document, against real and really stopped servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from litestar.testing import TestClient

from service.core.db import detect_engine
from service.core.settings import Settings
from service.storage.migrations import migrate
from service.tools.localstack import PostgresServer, RedisServer
from tests.support import staff_client

SettingsFor = Callable[..., Settings]


def test_health(client: TestClient) -> None:  # type: ignore[type-arg]
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_names_the_engine_and_each_check(client: TestClient) -> None:  # type: ignore[type-arg]
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "engine": "postgres",
        "checks": {"database": {"ok": True}, "redis": {"ok": True}, "migrations": {"ok": True}},
        "failing": [],
    }


def test_openapi_is_served(client: TestClient) -> None:  # type: ignore[type-arg]
    response = client.get("/docs/openapi.json")
    assert response.status_code == 200
    assert {"/health", "/ready"} <= set(response.json()["paths"])


def test_ready_fails_when_redis_is_down(database_url: str, tmp_path: Path, settings_for: SettingsFor) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        with staff_client(settings_for(database_url, server.url)) as client:
            assert client.get("/ready").status_code == 200
            server.stop()
            response = client.get("/ready")
            body = response.json()
            assert response.status_code == 503
            assert body["status"] == "not ready"
            assert body["failing"] == ["redis"]
            assert body["checks"]["redis"]["ok"] is False
            assert "connect" in body["checks"]["redis"]["error"].lower()
            assert client.get("/health").status_code == 200  # alive, just not ready
    finally:
        server.stop()


def test_ready_fails_when_postgres_is_down_and_recovers(
    redis_url: str, scratch_dir: Path, settings_for: SettingsFor
) -> None:
    server = PostgresServer(scratch_dir / "ready-pg", options={"fsync": "off"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            migrate(conn, detect_engine(conn))
        with staff_client(settings_for(server.url(), redis_url)) as client:
            assert client.get("/ready").status_code == 200
            server.stop()
            response = client.get("/ready")
            body = response.json()
            assert response.status_code == 503
            assert body["failing"] == ["database", "migrations"]
            assert body["checks"]["database"]["ok"] is False
            assert body["checks"]["database"]["error"]
            assert body["checks"]["redis"] == {"ok": True}
            server.start()
            assert client.get("/ready").status_code == 200  # the pool reconnects by itself
    finally:
        server.stop()


def test_ready_fails_while_migrations_are_pending(
    empty_database_url: str, redis_url: str, settings_for: SettingsFor
) -> None:
    with staff_client(settings_for(empty_database_url, redis_url)) as client:
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.json()["failing"] == ["migrations"]
        assert "analytics migrate" in response.json()["checks"]["migrations"]["error"]

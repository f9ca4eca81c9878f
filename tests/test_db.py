"""Storage-engine detection."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from service.core.db import detect_engine, engine_from


@pytest.mark.parametrize(
    ("installed", "license", "engine"),
    [
        (True, "timescale", "timescaledb"),
        (True, "apache", "postgres"),  # the Apache-2 build has no continuous aggregates or policies
        (False, "timescale", "postgres"),
        (False, None, "postgres"),
        (True, None, "postgres"),
    ],
)
def test_engine_from(installed: bool, license: str | None, engine: str) -> None:
    assert engine_from(installed, license) == engine


def test_plain_postgresql_is_the_postgres_engine(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert detect_engine(conn) == "postgres"


def test_license_setting_without_the_extension_is_still_postgres(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(sql.SQL("ALTER DATABASE {} SET timescaledb.license = 'timescale'").format(sql.Identifier(name)))
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone() == ("timescale",)
        assert detect_engine(conn) == "postgres"

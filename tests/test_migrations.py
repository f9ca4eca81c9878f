"""The migration runner: order, checksums, idempotence, edits refused, transactions, engines, rollups."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from service.storage.migrations import DB_DIR, MigrationError, migrate, plan, split_sql


def write(db_dir: Path, name: str, text: str) -> Path:
    path = db_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    write(tmp_path, "migrations/0001_first.sql", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);")
    write(tmp_path, "migrations/0002_second.sql", "ALTER TABLE a ADD COLUMN note text;")
    (tmp_path / "rollups").mkdir()
    (tmp_path / "continuous_aggregates").mkdir()
    return tmp_path


@pytest.fixture
def conn(empty_database_url: str) -> psycopg.Connection:
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        yield connection


def recorded(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def test_applies_in_order_and_records_each_file(conn: psycopg.Connection, db_dir: Path) -> None:
    outcome = migrate(conn, "postgres", db_dir)
    assert outcome.applied == ["migrations/0001_first.sql", "migrations/0002_second.sql"]
    assert recorded(conn) == outcome.applied
    assert conn.execute("SELECT id, note FROM a").fetchall() == [(1, None)]


def test_second_run_applies_nothing(conn: psycopg.Connection, db_dir: Path) -> None:
    migrate(conn, "postgres", db_dir)
    assert migrate(conn, "postgres", db_dir).applied == []
    assert conn.execute("SELECT count(*) FROM a").fetchone() == (1,)  # the INSERT did not run twice


def test_new_file_is_applied_alone(conn: psycopg.Connection, db_dir: Path) -> None:
    migrate(conn, "postgres", db_dir)
    write(db_dir, "migrations/0003_third.sql", "CREATE TABLE b (id int);")
    assert migrate(conn, "postgres", db_dir).applied == ["migrations/0003_third.sql"]


def test_edited_migration_is_refused_naming_the_file(conn: psycopg.Connection, db_dir: Path) -> None:
    migrate(conn, "postgres", db_dir)
    write(db_dir, "migrations/0002_second.sql", "ALTER TABLE a ADD COLUMN note varchar(10);")
    write(db_dir, "migrations/0003_third.sql", "CREATE TABLE b (id int);")
    with pytest.raises(MigrationError, match=r"db/migrations/0002_second.sql was edited after it was applied"):
        migrate(conn, "postgres", db_dir)
    assert conn.execute("SELECT to_regclass('b')").fetchone() == (None,)  # nothing after the refusal ran


def test_failing_migration_leaves_nothing_behind(conn: psycopg.Connection, db_dir: Path) -> None:
    write(db_dir, "migrations/0003_broken.sql", "CREATE TABLE c (id int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"db/migrations/0003_broken.sql: .*no_such_function"):
        migrate(conn, "postgres", db_dir)
    assert conn.execute("SELECT to_regclass('c')").fetchone() == (None,)
    assert recorded(conn) == ["migrations/0001_first.sql", "migrations/0002_second.sql"]


def test_no_transaction_file_runs_statements_that_refuse_transactions(conn: psycopg.Connection, db_dir: Path) -> None:
    write(
        db_dir,
        "migrations/0003_concurrently.sql",
        "-- analytics: no-transaction\nCREATE INDEX CONCURRENTLY a_id_idx ON a (id);\nVACUUM a;\n",
    )
    assert migrate(conn, "postgres", db_dir).applied[-1] == "migrations/0003_concurrently.sql"
    assert conn.execute("SELECT to_regclass('a_id_idx')").fetchone() is not None


def test_without_the_marker_such_statements_fail(conn: psycopg.Connection, db_dir: Path) -> None:
    write(db_dir, "migrations/0003_concurrently.sql", "CREATE INDEX CONCURRENTLY a_id_idx ON a (id);")
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        migrate(conn, "postgres", db_dir)


def test_engine_specific_files(conn: psycopg.Connection, db_dir: Path) -> None:
    write(db_dir, "migrations/0003_only.postgres.sql", "CREATE TABLE pg_only (id int);")
    write(db_dir, "migrations/0003_only.timescaledb.sql", "SELECT create_hypertable('a', 'x');")
    applied = migrate(conn, "postgres", db_dir).applied
    assert "migrations/0003_only.postgres.sql" in applied
    assert "migrations/0003_only.timescaledb.sql" not in applied
    names = [f.name for f in plan("timescaledb", db_dir)]
    assert "migrations/0003_only.timescaledb.sql" in names
    assert "migrations/0003_only.postgres.sql" not in names


def test_unknown_engine_in_a_file_name_is_refused(db_dir: Path) -> None:
    write(db_dir, "migrations/0003_x.mysql.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"0003_x.mysql.sql: unknown engine 'mysql'"):
        plan("postgres", db_dir)


def test_rollups_follow_the_engine_and_are_reapplied_with_later_files_when_edited(
    conn: psycopg.Connection, db_dir: Path
) -> None:
    write(db_dir, "rollups/010_hourly.sql", "DROP TABLE IF EXISTS hourly CASCADE;\nCREATE TABLE hourly (n int);")
    write(db_dir, "rollups/020_daily.sql", "DROP TABLE IF EXISTS daily;\nCREATE TABLE daily (n int);")
    write(db_dir, "continuous_aggregates/010_hourly.sql", "SELECT this_would_fail();")
    assert migrate(conn, "postgres", db_dir).applied[-2:] == ["rollups/010_hourly.sql", "rollups/020_daily.sql"]
    assert migrate(conn, "postgres", db_dir).applied == []
    write(db_dir, "rollups/010_hourly.sql", "DROP TABLE IF EXISTS hourly CASCADE;\nCREATE TABLE hourly (n bigint);")
    assert migrate(conn, "postgres", db_dir).applied == ["rollups/010_hourly.sql", "rollups/020_daily.sql"]
    assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'hourly'").fetchone() == (
        "bigint",
    )


def test_concurrent_runs_apply_each_file_once(empty_database_url: str, db_dir: Path) -> None:
    results: list[list[str]] = []

    def run() -> None:
        with psycopg.connect(empty_database_url, autocommit=True) as c:
            results.append(migrate(c, "postgres", db_dir).applied)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=len) == [[], [], ["migrations/0001_first.sql", "migrations/0002_second.sql"]]


def test_needs_autocommit(empty_database_url: str, db_dir: Path) -> None:
    with psycopg.connect(empty_database_url) as c, pytest.raises(MigrationError, match="autocommit"):
        migrate(c, "postgres", db_dir)


def test_project_schema_applies_on_postgres(conn: psycopg.Connection) -> None:
    applied = migrate(conn, "postgres").applied
    assert applied == [f.name for f in plan("postgres")]
    tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {
        "activity_events",
        "geo_access_events",
        "system_metrics",
        "error_logs",
        "error_groups",
        "daily_analytics",
        "user_analytics",
        "reports",
        "task_runs",
        "user_home_locations",
        "schema_migrations",
    } <= tables


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url},
        cwd=DB_DIR.parent,
        capture_output=True,
        text=True,
    )


def test_cli_migrate_twice_then_refuses_an_edited_file(empty_database_url: str) -> None:
    first = run_cli(empty_database_url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout and "db/migrations/0001_core.sql" in first.stdout
    second = run_cli(empty_database_url, "migrate")
    assert (second.returncode, second.stdout) == (0, "engine postgres: schema is current, nothing to apply\n")
    # What an edit of the file on disk looks like to the runner: the recorded checksum no longer matches.
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE name = 'migrations/0001_core.sql'")
    third = run_cli(empty_database_url, "migrate")
    assert third.returncode == 1
    assert "db/migrations/0001_core.sql was edited after it was applied" in third.stderr


@pytest.mark.parametrize(
    ("script", "statements"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
        ("SELECT 'it''s;'; SELECT E'\\';'", ["SELECT 'it''s;'", "SELECT E'\\';'"]),
        ('CREATE TABLE "we;ird" (x int);', ['CREATE TABLE "we;ird" (x int)']),
        ("-- a; comment\nSELECT 1; /* b; /* nested; */ c; */ SELECT 2;", ["SELECT 1", "SELECT 2"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; SELECT $$;$$;",
            ["CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql", "SELECT $$;$$"],
        ),
        ("PREPARE p AS SELECT $1; EXECUTE p(1);", ["PREPARE p AS SELECT $1", "EXECUTE p(1)"]),
        ("-- only a comment\n;;  \n", []),
    ],
)
def test_split_sql(script: str, statements: list[str]) -> None:
    assert split_sql(script) == statements


def test_split_sql_unterminated_quote() -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_sql("SELECT 'oops;")

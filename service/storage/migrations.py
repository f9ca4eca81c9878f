"""Schema migrations: numbered SQL files applied once in order, then the engine's rollup definitions.

Layout (paths relative to `db/`):

- `migrations/NNNN_name.sql` runs on every engine; `NNNN_name.<engine>.sql` only on that engine.
- `continuous_aggregates/*.sql` (timescaledb) or `rollups/*.sql` (postgres): rollup definitions, written to be
  re-runnable (drop if exists, then create). They are re-applied when edited, together with every later file in
  the same folder, since a dropped rollup may take the ones built on it along (`DROP ... CASCADE`).

Each applied file is recorded with its SHA-256 in `schema_migrations`. A migration edited after it was applied
stops the run. A file whose first line is `-- analytics: no-transaction` runs statement by statement in
autocommit (for `CREATE INDEX CONCURRENTLY`, `CALL refresh_continuous_aggregate(...)`, ...); every other file
runs in one transaction, so a failing file leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from service.core.db import Engine

log = logging.getLogger(__name__)

# The SQL is the package's data folder service/db/, installed with it (an editable install, a wheel or the image).
DB_DIR = Path(str(resources.files("service") / "db"))
ROLLUP_DIRS: dict[Engine, str] = {"timescaledb": "continuous_aggregates", "postgres": "rollups"}
NO_TRANSACTION = "-- analytics: no-transaction"
# Any constant distinct from other advisory locks the service takes; serialises concurrent `migrate` runs.
_LOCK_ID = 0x616E616C79746963

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('migration', 'rollup')),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migrations cannot be applied; the message names the file and the reason."""


@dataclass(frozen=True)
class SqlFile:
    """One migration or rollup definition as found on disk."""

    name: str  # path relative to db/, e.g. "migrations/0001_core.sql"
    sql: str
    kind: str  # "migration" or "rollup"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION)


@dataclass(frozen=True)
class Outcome:
    """What a run did: the files applied, in order."""

    applied: list[str]


def _engine_of(path: Path) -> str | None:
    """`0002_x.timescaledb.sql` -> "timescaledb"; `0001_core.sql` -> None (every engine)."""
    parts = path.name.split(".")
    return parts[-2] if len(parts) > 2 else None


def plan(engine: Engine, db_dir: Path = DB_DIR) -> list[SqlFile]:
    """Every file that belongs on `engine`, migrations first, each group in file-name order."""
    files: list[SqlFile] = []
    for folder, kind in (("migrations", "migration"), (ROLLUP_DIRS[engine], "rollup")):
        for path in sorted((db_dir / folder).glob("*.sql")):
            target = _engine_of(path)
            if target is not None and target not in ROLLUP_DIRS:
                raise MigrationError(f"db/{folder}/{path.name}: unknown engine {target!r} in the file name")
            if target in (None, engine):
                files.append(SqlFile(f"{folder}/{path.name}", path.read_text(encoding="utf-8"), kind))
    return files


def pending(files: list[SqlFile], applied: dict[str, str]) -> list[str]:
    """Names of the files not yet applied or (rollups only) applied in another version."""
    return [f.name for f in files if applied.get(f.name) != f.checksum]


def applied_checksums(conn: psycopg.Connection) -> dict[str, str]:
    """name -> checksum of every applied file; empty before the first run."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    return dict(conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())


def migrate(conn: psycopg.Connection, engine: Engine, db_dir: Path = DB_DIR) -> Outcome:
    """Apply what is pending on an autocommit connection; safe to run from several processes at once."""
    if not conn.autocommit:
        raise MigrationError("migrate() needs a connection in autocommit mode")
    files = plan(engine, db_dir)
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        conn.execute(_BOOTSTRAP)
        applied = applied_checksums(conn)
        for f in files:
            if f.kind == "migration" and f.name in applied and applied[f.name] != f.checksum:
                raise MigrationError(
                    f"db/{f.name} was edited after it was applied (recorded checksum {applied[f.name][:12]}, "
                    f"now {f.checksum[:12]}); restore it and put the change in a new migration"
                )
        done: list[str] = []
        reapply_rollups = False
        for f in files:
            if f.name in applied and applied[f.name] == f.checksum and not (f.kind == "rollup" and reapply_rollups):
                continue
            _apply(conn, f)
            done.append(f.name)
            reapply_rollups = reapply_rollups or f.kind == "rollup"
        return Outcome(done)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _apply(conn: psycopg.Connection, f: SqlFile) -> None:
    log.info("applying db/%s", f.name)
    record = (
        "INSERT INTO schema_migrations (name, checksum, kind) VALUES (%s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()"
    )
    statements = split_sql(f.sql)
    try:
        if f.transactional:
            with conn.transaction():
                for statement in statements:
                    _execute(conn, f, statement)
                conn.execute(record, (f.name, f.checksum, f.kind))
        else:
            for statement in statements:
                _execute(conn, f, statement)
            conn.execute(record, (f.name, f.checksum, f.kind))
    except psycopg.Error as exc:
        raise MigrationError(f"db/{f.name}: {exc}".strip()) from exc


def _execute(conn: psycopg.Connection, f: SqlFile, statement: str) -> None:
    try:
        # File contents are the project's own code, never user input.
        conn.execute(statement)
    except psycopg.Error as exc:
        first_line = statement.strip().splitlines()[0]
        raise MigrationError(f"db/{f.name}: {str(exc).strip()} (in statement starting {first_line!r})") from exc


def split_sql(text: str) -> list[str]:
    """Split a SQL script into statements on `;`, respecting quotes, dollar quotes and comments."""
    statements: list[str] = []
    start = i = 0
    n = len(text)
    has_code = False
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if c == ";":
            if has_code:
                statements.append(text[start:i].strip())
            has_code = False
            i += 1
            continue
        if not has_code and not c.isspace():
            has_code, start = True, i  # a statement starts at its first code, after comments
        if c in ("'", '"'):
            i = _skip_quoted(text, i, c, backslash=c == "'" and i > 0 and text[i - 1] in "eE")
        elif c == "$":
            i = _skip_dollar_quoted(text, i)
        else:
            i += 1
    if has_code:
        statements.append(text[start:].strip())
    return statements


def _skip_block_comment(text: str, i: int) -> int:
    depth = 0
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise MigrationError("unterminated /* comment")


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    i += 1
    while i < len(text):
        c = text[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if text.startswith(quote * 2, i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise MigrationError(f"unterminated {quote} quote")


def _skip_dollar_quoted(text: str, i: int) -> int:
    end = text.find("$", i + 1)
    tag = text[i : end + 1] if end > 0 else ""
    if not tag or not all(ch.isalnum() or ch == "_" for ch in tag[1:-1]) or tag[1:2].isdigit():
        return i + 1  # a positional parameter such as $1, or a lone dollar sign
    close = text.find(tag, end + 1)
    if close < 0:
        raise MigrationError(f"unterminated {tag} quote")
    return close + len(tag)

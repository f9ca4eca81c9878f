"""`analytics bench queries --peer clickhouse`: the read endpoints' figures from the raw events, in an embedded
ClickHouse (chdb) that holds its own copy of them."""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from service.core.windows import Window, minutes, percent
from service.geo.figures import nest
from service.tools.bench.harness import BenchError, Progress
from service.tools.bench.shapes import effectiveness_answer, patterns_answer

NAME = "clickhouse"
MISSING = "--peer clickhouse needs chdb, the bench extra: pip install -e '.[bench]'"

# (column, ClickHouse type) of each raw table, as PostgreSQL defines it; `time` is converted on the way in.
_COLUMNS = {
    "activity_events": (
        ("time", "DateTime64(6, 'UTC')"),
        ("event_id", "UUID"),
        ("community_id", "Nullable(Int64)"),
        ("user_id", "Nullable(Int64)"),
        ("activity_type", "LowCardinality(String)"),
        ("session_id", "Nullable(String)"),
        ("duration", "Nullable(Float64)"),
        ("section", "LowCardinality(Nullable(String))"),
        ("metadata", "String"),
    ),
    "geo_access_events": (
        ("time", "DateTime64(6, 'UTC')"),
        ("event_id", "UUID"),
        ("community_id", "Int64"),
        ("user_id", "Nullable(Int64)"),
        ("country", "LowCardinality(Nullable(String))"),
        ("country_code", "LowCardinality(Nullable(String))"),
        ("region", "LowCardinality(Nullable(String))"),
        ("city", "LowCardinality(Nullable(String))"),
        ("access_result", "LowCardinality(String)"),
        ("restriction_scope", "LowCardinality(Nullable(String))"),
        ("is_traveler", "Bool"),
        ("restriction_bypass", "Bool"),
    ),
}

# Query parameters: {community:Int64}, instants {start:...} etc. in UTC (see _text).
_REPORT = """
SELECT countIf(activity_type = 'view' AND time >= {start:DateTime64(6, 'UTC')}),
       uniqExactIf(user_id, time >= {start:DateTime64(6, 'UTC')}),
       uniqExactIf(user_id, time < {start:DateTime64(6, 'UTC')}),
       length(arrayIntersect(groupUniqArrayIf(user_id, time >= {start:DateTime64(6, 'UTC')}),
                             groupUniqArrayIf(user_id, time < {start:DateTime64(6, 'UTC')})))
FROM activity_events
WHERE community_id = {community:Int64}
  AND time >= {previous_start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}
"""

# Visits that start in the window: each member's event times (microseconds, sorted) split where more than the gap
# passes; events from one gap before the window on decide whether the first events in it start a visit.
_SESSIONS = """
SELECT sum(visit[-1] - visit[1]), count()
FROM (
    SELECT arrayJoin(arraySplit((t, step) -> step > {gap:Int64}, times, arrayDifference(times))) AS visit
    FROM (
        SELECT arraySort(groupArray(toUnixTimestamp64Micro(time))) AS times
        FROM activity_events
        WHERE community_id = {community:Int64} AND user_id IS NOT NULL AND time >= {lo:DateTime64(6, 'UTC')}
        GROUP BY user_id
    )
)
WHERE visit[1] >= toUnixTimestamp64Micro({start:DateTime64(6, 'UTC')})
  AND visit[1] < toUnixTimestamp64Micro({end:DateTime64(6, 'UTC')})
"""

_PATTERNS = """
SELECT toHour(time) AS hour, toDayOfWeek(time) - 1 AS weekday, toMonday(time) AS week, count()
FROM activity_events
WHERE community_id = {community:Int64}
  AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}
GROUP BY GROUPING SETS ((hour), (weekday), (week))
SETTINGS group_by_use_nulls = 1
"""

_TODAY = """
SELECT community_id, count(), countIf(activity_type = 'view'), countIf(activity_type = 'join'), uniqExact(user_id)
FROM activity_events
WHERE time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')} AND community_id IS NOT NULL
GROUP BY community_id
ORDER BY 2 DESC, community_id
LIMIT {limit:UInt32}
"""

_GEO_TOTALS = """
SELECT count(), countIf(access_result = 'blocked'), countIf(is_traveler), countIf(restriction_bypass)
FROM geo_access_events
WHERE community_id = {community:Int64}
  AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}
"""

_TOP_BLOCKED = """
SELECT country, country_code, city, count() AS blocked
FROM geo_access_events
WHERE community_id = {community:Int64}
  AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')} AND access_result = 'blocked'
GROUP BY country, country_code, city
ORDER BY blocked DESC, country ASC NULLS LAST, city ASC NULLS LAST
LIMIT {limit:UInt32}
"""

_LOCATIONS = """
SELECT country, country_code, region, city, count(), countIf(access_result = 'allowed'),
       countIf(access_result = 'blocked'), countIf(is_traveler)
FROM geo_access_events
WHERE community_id = {community:Int64}
  AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}
GROUP BY country, country_code, region, city
"""

_TRENDS = """
SELECT toDate(time) AS day, count(), countIf(access_result = 'allowed'), countIf(access_result = 'blocked'),
       countIf(is_traveler), countIf(restriction_bypass)
FROM geo_access_events
WHERE community_id = {community:Int64}
  AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}
GROUP BY day
ORDER BY day
"""


@dataclass(frozen=True)
class Limits:
    """What the bench asks the endpoints for, which the figures must follow."""

    gap: timedelta  # the longest pause inside one visit
    top: int  # communities of the communities-today list
    blocked: int  # places of the effectiveness report's most blocked ones


@dataclass
class ClickHouse:
    """An embedded ClickHouse holding a copy of the raw events, and what its figures need besides them."""

    session: Any  # chdb.session.Session
    peak: Callable[[int | None, Window], int]  # the report's peak_online_members: no raw table holds it
    limits: Limits
    version: str
    rows: dict[str, int]
    load_seconds: float

    def all(self, query: str, params: dict[str, Any]) -> list[list[Any]]:
        """Every row of `query`."""
        answer = self.session.query(query, "JSONCompact", params=_text(params))
        data: list[list[Any]] = msgspec.json.decode(answer.bytes())["data"]
        return data

    def one(self, query: str, params: dict[str, Any]) -> list[Any]:
        """The single row of `query`."""
        (row,) = self.all(query, params)
        return row


def _text(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters as ClickHouse reads them: instants in UTC, to the microsecond."""

    def text(value: Any) -> Any:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value

    return {name: text(value) for name, value in params.items()}


def _chdb() -> Any:
    """The chdb package, imported only when the peer runs (it is no dependency of the service)."""
    try:
        return importlib.import_module("chdb")
    except ImportError:
        raise BenchError(MISSING) from None


def require() -> None:
    """Fail at once when chdb is missing, before the long load."""
    _chdb()


def _plain(kind: str) -> str:
    """A column type without LowCardinality, which the PostgreSQL engine does not read."""
    return kind.removeprefix("LowCardinality(").removesuffix(")") if kind.startswith("LowCardinality(") else kind


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def embedded(conn: psycopg.Connection[Any], parent: Path, peak: Callable[[int | None, Window], int], limits: Limits,
             progress: Progress) -> Iterator[ClickHouse]:  # fmt: skip
    """An embedded ClickHouse in a new directory under `parent`, holding the raw tables of the database of `conn`
    in MergeTree tables ordered by (community_id, time); closed and removed after the block."""
    chdb = _chdb()
    info = conn.info
    if not info.host or info.host.startswith("/"):
        raise BenchError("--peer clickhouse reads PostgreSQL over TCP: DATABASE_URL must name a host, not a socket")
    with tempfile.TemporaryDirectory(prefix="clickhouse-", dir=parent) as directory:
        session = chdb.session.Session(directory)
        try:
            session.query("SET output_format_json_quote_64bit_integers = 0")  # counts as JSON numbers, in any version
            with progress.step("ClickHouse: copying the raw tables from PostgreSQL"):
                start = time.perf_counter()
                rows = {table: _copy(session, table, info) for table in _COLUMNS}
                seconds = time.perf_counter() - start
            version = f"chdb {chdb.__version__} (ClickHouse {chdb.engine_version})"
            yield ClickHouse(session, peak, limits, version, rows, seconds)
        finally:
            session.close()


def create(session: Any, table: str) -> None:
    """The MergeTree table `table` (a raw table of _COLUMNS), empty."""
    columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS[table])
    # The time index plays the part of PostgreSQL's BRIN on time (the communities-today list reads by time only).
    session.query(
        f"CREATE TABLE {table} ({columns}, INDEX time_minmax time TYPE minmax GRANULARITY 1) ENGINE = MergeTree "
        "ORDER BY (community_id, time) SETTINGS allow_nullable_key = 1"
    )


def _copy(session: Any, table: str, info: psycopg.ConnectionInfo) -> int:
    """Copy `table` from PostgreSQL into a MergeTree table of the same name; its rows."""
    columns = _COLUMNS[table]
    server = (f"{info.host}:{info.port}", info.dbname, table, info.user, info.password)
    # ClickHouse reads PostgreSQL itself (its PostgreSQL engine streams `COPY ... TO STDOUT`): no row passes through
    # Python, about five times faster than piping COPY's CSV through the bench. `time` comes in as PostgreSQL's text
    # with its UTC offset, which ClickHouse's own timestamp parsing would drop (wrong unless the server's TimeZone is
    # UTC), so it is parsed with the offset instead.
    source = ", ".join(f"{name} {'String' if name == 'time' else _plain(kind)}" for name, kind in columns)
    session.query(f"CREATE TABLE pg_{table} ({source}) ENGINE = PostgreSQL({', '.join(map(_literal, server))})")
    create(session, table)
    names = ", ".join("parseDateTime64BestEffort(time, 6, 'UTC')" if n == "time" else n for n, _ in columns)
    session.query(f"INSERT INTO {table} SELECT {names} FROM pg_{table}")  # noqa: S608 - names of _COLUMNS
    session.query(f"DROP TABLE pg_{table}")
    # One part per table: no background merge runs during the timed queries, each reads one sorted part.
    session.query(f"OPTIMIZE TABLE {table} FINAL")
    answer = session.query(f"SELECT count() FROM {table}", "JSONCompact")  # noqa: S608 - a name of _COLUMNS
    return int(msgspec.json.decode(answer.bytes())["data"][0][0])


# --- the figures, in the shapes of the raw computations of service/tools/bench/queries.py ---------------------


def _window(community: int | None, window: Window) -> dict[str, Any]:
    return {"community": community, "start": window.start, "end": window.end}


def report(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """The community report's figures (the peak from where the raw computation takes it)."""
    params = {**_window(community, window), "previous_start": window.previous_start}
    views, visitors, previous, returning = ch.one(_REPORT, params)
    gap = ch.limits.gap
    total, visits = ch.one(_SESSIONS, {**params, "lo": window.start - gap, "gap": gap // timedelta(microseconds=1)})
    seconds = Decimal(total) / visits / 1_000_000 if visits else None  # in decimal, as PostgreSQL's numeric avg
    metrics = {
        "total_views": views,
        "unique_visitors": visitors,
        "peak_online_members": ch.peak(community, window),
        "average_session_duration": minutes(seconds),
        "member_retention": percent(returning, previous),
    }
    return {"metrics": metrics}


def patterns(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """Events by hour of day, weekday and week, and the peak hours."""
    rows = ch.all(_PATTERNS, _window(community, window))
    return patterns_answer((h, d, None if w is None else date.fromisoformat(w), n) for h, d, w, n in rows)


def today(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """Today's busiest communities with their events, views, joins and visitors."""
    params = {"start": window.end - timedelta(days=1), "end": window.end, "limit": ch.limits.top}
    return {"rows": ch.all(_TODAY, params)}


def effectiveness(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """Attempts, blocked share, travelers, bypasses and the most blocked places."""
    params = _window(community, window)
    totals = ch.one(_GEO_TOTALS, params)
    return effectiveness_answer(totals, ch.all(_TOP_BLOCKED, {**params, "limit": ch.limits.blocked}))


def locations(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """Attempts by country, region and city, as the endpoint's tree."""
    return {"countries": msgspec.to_builtins(nest(ch.all(_LOCATIONS, _window(community, window))))}


def trends(ch: ClickHouse, community: int | None, window: Window) -> dict[str, Any]:
    """Allowed, blocked, travelers and bypasses per day."""
    rows = ch.all(_TRENDS, _window(community, window))
    return {"points": [[datetime.combine(date.fromisoformat(day), day_start(), UTC), *rest] for day, *rest in rows]}

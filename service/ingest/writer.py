"""Writing accepted events into the raw tables, each event once however often it is delivered.

Activity: an optimistic COPY straight into `activity_events` inside a savepoint; only when it hits a
duplicate (a redelivery after a crash) the batch goes the slower way: COPY into a staging table, then
INSERT ... ON CONFLICT (event_id, time) DO NOTHING. Geo decisions always take the staging path, since the
insert also infers travelers (home country = first country recorded for the user) and restriction bypasses.
Without COPY (`use_copy=False`, for servers that lack COPY FROM STDIN such as PGlite) rows go in as one
INSERT ... SELECT FROM unnest(arrays) per table, duplicates skipped the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from service.live.records import ActivityRecord, GeoRecord
from service.storage.rollups import record_invalidation

ACTIVITY_COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("time", "event_id", "community_id", "user_id", "activity_type", "session_id", "duration",
                         "section", "metadata"))
)  # fmt: skip
GEO_COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("time", "event_id", "community_id", "user_id", "country", "country_code", "region", "city",
                         "access_result", "restriction_scope", "is_traveler"))
)  # fmt: skip

# PostgreSQL types of the columns above, in order: of the binary COPY, and of INSERT ... SELECT FROM unnest(typed
# arrays).
ACTIVITY_TYPES = ("timestamptz", "uuid", "int8", "int8", "text", "text", "float8", "text", "jsonb")
GEO_TYPES = ("timestamptz", "uuid", "int8", "int8", "text", "text", "text", "text", "text", "text", "bool")

_NOTHING = sql.SQL("")
_ACTIVITY_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS activity_staging
    (LIKE activity_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS  -- emptied by every commit
"""
_GEO_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS geo_staging (
    time timestamptz, event_id uuid, community_id bigint, user_id bigint, country text, country_code text,
    region text, city text, access_result text, restriction_scope text, is_traveler boolean
) ON COMMIT DELETE ROWS
"""
_HOMES = """
INSERT INTO user_home_locations (user_id, country_code, country, first_seen_at)
SELECT DISTINCT ON (user_id) user_id, country_code, country, time
FROM geo_staging
WHERE user_id IS NOT NULL AND country_code IS NOT NULL
ORDER BY user_id, time
ON CONFLICT (user_id) DO NOTHING
"""
# A bypass: allowed into a community from one country within the window after being blocked from it in
# another, blocks of the same batch included.
_GEO_INSERT = """
INSERT INTO geo_access_events (time, event_id, community_id, user_id, country, country_code, region, city,
                               access_result, restriction_scope, is_traveler, restriction_bypass)
SELECT s.time, s.event_id, s.community_id, s.user_id, s.country, s.country_code, s.region, s.city,
       s.access_result, s.restriction_scope,
       COALESCE(s.is_traveler, s.country_code <> h.country_code, false),
       s.access_result = 'allowed' AND s.user_id IS NOT NULL AND s.country_code IS NOT NULL AND (
           EXISTS (SELECT 1 FROM geo_access_events b
                   WHERE b.user_id = s.user_id AND b.community_id = s.community_id
                     AND b.access_result = 'blocked' AND b.country_code <> s.country_code
                     AND b.time BETWEEN s.time - make_interval(secs => %(window)s) AND s.time)
           OR EXISTS (SELECT 1 FROM geo_staging b
                      WHERE b.user_id = s.user_id AND b.community_id = s.community_id
                        AND b.access_result = 'blocked' AND b.country_code <> s.country_code
                        AND b.time BETWEEN s.time - make_interval(secs => %(window)s) AND s.time))
FROM geo_staging s
LEFT JOIN user_home_locations h ON h.user_id = s.user_id
ON CONFLICT (event_id, time) DO NOTHING
"""


# The other order: a block stored now turns accesses allowed shortly after it (stored before, as delivery
# order may differ from event order) into bypasses.
_EARLIER_ALLOWED = """
UPDATE geo_access_events a SET restriction_bypass = true
FROM geo_staging b
WHERE b.access_result = 'blocked' AND a.access_result = 'allowed' AND NOT a.restriction_bypass
  AND a.user_id = b.user_id AND a.community_id = b.community_id AND a.country_code <> b.country_code
  AND a.time BETWEEN b.time AND b.time + make_interval(secs => %(window)s)
RETURNING a.time
"""


def activity_rows(records: Sequence[ActivityRecord]) -> list[tuple[object, ...]]:
    """The records as rows of ACTIVITY_COLUMNS."""
    return [
        (r.time, r.event_id, r.community_id, r.user_id, r.activity_type, r.session_id, r.duration, r.section,
         Jsonb(r.metadata, dumps=msgspec.json.encode))  # several times faster than the json module
        for r in records
    ]  # fmt: skip


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: sql.Composable, types: tuple[str, ...],
    rows: Sequence[Sequence[object]],
) -> None:  # fmt: skip
    # Binary: the server parses no text (times, uuids, numbers, json); about 15 % more rows/s than text COPY.
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), columns)
    with cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _unnest(
    cur: psycopg.Cursor[Any], table: str, columns: sql.Composable, types: tuple[str, ...],
    rows: Sequence[Sequence[object]], suffix: sql.Composable = _NOTHING,
) -> None:  # fmt: skip
    arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in types)
    query = sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) {}").format(
        sql.Identifier(table), columns, arrays, suffix
    )
    cur.execute(query, [list(column) for column in zip(*rows, strict=True)])


def _fill(cur: psycopg.Cursor[Any], table: str, columns: sql.Composable, types: tuple[str, ...],
          rows: Sequence[Sequence[object]], use_copy: bool) -> None:  # fmt: skip
    if use_copy:
        _copy(cur, table, columns, types, rows)
    else:
        _unnest(cur, table, columns, types, rows)


class Written(NamedTuple):
    """Rows a batch inserted, by kind (events stored before are skipped, so not counted)."""

    activity: int = 0
    geo: int = 0


def write_activity(
    conn: psycopg.Connection[Any], records: Sequence[ActivityRecord], use_copy: bool = True,
    rows: list[tuple[object, ...]] | None = None,
) -> int:  # fmt: skip
    """Insert activity events (`rows`: their `activity_rows`, when made already), skipping those already stored;
    runs inside the caller's transaction. Returns the rows inserted."""
    rows = activity_rows(records) if rows is None else rows
    with conn.cursor() as cur:
        if not use_copy:
            _unnest(cur, "activity_events", ACTIVITY_COLUMNS, ACTIVITY_TYPES, rows,
                    sql.SQL("ON CONFLICT (event_id, time) DO NOTHING"))  # fmt: skip
            return cur.rowcount
        try:
            with conn.transaction():
                _copy(cur, "activity_events", ACTIVITY_COLUMNS, ACTIVITY_TYPES, rows)
            return cur.rowcount
        except psycopg.errors.UniqueViolation:
            pass  # some of these were stored before: keep the others
        cur.execute(_ACTIVITY_STAGING)
        _copy(cur, "activity_staging", ACTIVITY_COLUMNS, ACTIVITY_TYPES, rows)
        cur.execute(
            sql.SQL(
                "INSERT INTO activity_events ({cols}) SELECT {cols} FROM activity_staging "
                "ON CONFLICT (event_id, time) DO NOTHING"
            ).format(cols=ACTIVITY_COLUMNS)
        )
        return cur.rowcount


def write_geo(
    conn: psycopg.Connection[Any], records: Sequence[GeoRecord], bypass_window: int, use_copy: bool = True
) -> int:
    """Insert geo decisions with traveler and bypass inference, skipping those already stored; the rows
    inserted."""
    rows = [
        (r.time, r.event_id, r.community_id, r.user_id, r.country, r.country_code, r.region, r.city,
         r.access_result, r.restriction_scope, r.is_traveler)
        for r in records
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(_GEO_STAGING)
        _fill(cur, "geo_staging", GEO_COLUMNS, GEO_TYPES, rows, use_copy)
        cur.execute(_HOMES)
        cur.execute(_GEO_INSERT, {"window": bypass_window})
        inserted = cur.rowcount
        cur.execute(_EARLIER_ALLOWED, {"window": bypass_window})
        flagged = [row[0] for row in cur.fetchall()]
    record_invalidation(conn, "geo", flagged)  # their buckets' bypass counts changed
    return inserted


def write_batch(
    conn: psycopg.Connection[Any],
    activities: Sequence[ActivityRecord],
    geos: Sequence[GeoRecord],
    bypass_window: int,
    use_copy: bool = True,
    rows: list[tuple[object, ...]] | None = None,
) -> Written:
    """Write one batch in one transaction: all of it is stored, or none, with the time ranges it touched
    recorded for the rollup refresh. Returns the rows inserted."""
    activity = geo = 0
    with conn.transaction():
        if activities:
            activity = write_activity(conn, activities, use_copy, rows)
            record_invalidation(conn, "activity", (r.time for r in activities))
        if geos:
            geo = write_geo(conn, geos, bypass_window, use_copy)
            record_invalidation(conn, "geo", (r.time for r in geos))
    return Written(activity, geo)

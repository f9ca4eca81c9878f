-- postgres engine: what every rollup twin stands on.
--
-- A rollup `x` is three objects: the table `x_mat` of materialized buckets, the function `x_between(lo, hi)`
-- that aggregates its source over [lo, hi), and the view `x` the queries read: materialized buckets below the
-- rollup's watermark plus a live aggregation from the watermark on (what TimescaleDB's real-time continuous
-- aggregates do). `service/rollups.py` refreshes them in `rollup_registry` order: it recomputes the buckets
-- that invalidated ranges touch, then materializes up to the last complete bucket and moves the watermark.
CREATE TABLE IF NOT EXISTS rollup_registry (
    name     text     PRIMARY KEY,
    position integer  NOT NULL UNIQUE,
    width    interval NOT NULL,
    source   text     NOT NULL CHECK (source IN ('activity', 'geo', 'system_metrics'))
);

CREATE TABLE IF NOT EXISTS rollup_watermarks (
    name      text        PRIMARY KEY REFERENCES rollup_registry (name) ON DELETE CASCADE,
    watermark timestamptz NOT NULL
);

-- No row yet (never refreshed, or just redefined): nothing is materialized, the view aggregates everything live.
CREATE OR REPLACE FUNCTION rollup_watermark(rollup text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT watermark FROM rollup_watermarks WHERE name = rollup), '-infinity'::timestamptz)
$$;

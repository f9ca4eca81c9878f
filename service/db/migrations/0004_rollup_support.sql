-- What the rollups, sessions and reports need on both engines.

-- Time ranges of raw rows written (or changed) since the last refresh, by source table. Writers record one row
-- per batch in the same transaction; the refresh job recomputes exactly the buckets and sessions these ranges
-- touch, then deletes them (TimescaleDB keeps its own log for continuous aggregates; sessions use this one).
CREATE TABLE rollup_invalidations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text        NOT NULL CHECK (source IN ('activity', 'geo', 'system_metrics')),
    lo         timestamptz NOT NULL,
    hi         timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (hi >= lo)
);

-- Visits: a member's activity in one community (NULL: platform-level), split on 30 minutes of inactivity.
-- Built incrementally by the refresh job from the invalidated ranges; reports read this table.
CREATE TABLE sessions (
    user_id      bigint      NOT NULL,
    community_id bigint,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    events       integer     NOT NULL CHECK (events > 0),
    CHECK (ended_at >= started_at)
);
CREATE INDEX sessions_user_idx ON sessions (user_id, started_at);
CREATE INDEX sessions_community_idx ON sessions (community_id, started_at);

-- Presence persisted from Redis per community and day (UTC): the peak and the average of sampled online counts.
CREATE TABLE community_presence_daily (
    community_id   bigint           NOT NULL,
    day            date             NOT NULL,
    peak_online    integer          NOT NULL CHECK (peak_online >= 0),
    average_online double precision NOT NULL CHECK (average_online >= 0),
    samples        integer          NOT NULL DEFAULT 0 CHECK (samples >= 0),
    PRIMARY KEY (community_id, day)
);

-- Errors per hour and level: error logs are few, so this is a plain view on both engines.
CREATE VIEW errors_hourly AS
SELECT date_trunc('hour', created_at, 'UTC') AS bucket, level, count(*) AS errors
FROM error_logs
GROUP BY 1, 2;

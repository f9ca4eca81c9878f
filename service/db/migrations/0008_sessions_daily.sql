-- Visits per community and UTC day of their start: how many and their summed length in seconds, so that a report's
-- mean visit length reads one row per day instead of every visit (55,000 visits in the 30-day report of a busy
-- community). The refresh job keeps it with `sessions`: the days whose visits it rewrote are summed again.
-- Platform-level visits (no community) are not summed: no report reads them per day.
CREATE TABLE sessions_daily (
    community_id     bigint  NOT NULL,
    day              date    NOT NULL,
    sessions         bigint  NOT NULL CHECK (sessions > 0),
    duration_seconds numeric NOT NULL CHECK (duration_seconds >= 0),
    PRIMARY KEY (community_id, day)
);

INSERT INTO sessions_daily (community_id, day, sessions, duration_seconds)
SELECT community_id, (started_at AT TIME ZONE 'UTC')::date, count(*), sum(extract(epoch FROM ended_at - started_at))
FROM sessions
WHERE community_id IS NOT NULL
GROUP BY 1, 2;

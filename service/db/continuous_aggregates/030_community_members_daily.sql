-- Members per community per day: who was active, how much, first and last seen.
DROP MATERIALIZED VIEW IF EXISTS community_members_daily CASCADE;
CREATE MATERIALIZED VIEW community_members_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 day', time) AS bucket, community_id, user_id,
       count(*) AS events, min(time) AS first_seen, max(time) AS last_seen
FROM activity_events
WHERE user_id IS NOT NULL
GROUP BY 1, 2, 3
WITH NO DATA;
CREATE INDEX community_members_daily_community_idx ON community_members_daily (community_id, bucket);
SELECT add_continuous_aggregate_policy('community_members_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '5 minutes');

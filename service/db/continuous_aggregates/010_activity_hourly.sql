-- Activity per hour, community and type. Real-time (materialized_only = false): buckets past the last refresh
-- are aggregated from the hypertable at query time. The policy refreshes the last 35 days, which covers every
-- late event the API accepts (TRACK_MAX_AGE is at most 30 days); only invalidated buckets are recomputed. The
-- window stays inside raw retention (at least 36 days on this engine), as a refresh over dropped raw chunks
-- would empty those buckets.
DROP MATERIALIZED VIEW IF EXISTS activity_hourly CASCADE;
CREATE MATERIALIZED VIEW activity_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 hour', time) AS bucket, community_id, activity_type,
       count(*) AS events, coalesce(sum(duration), 0) AS duration_sum, count(duration) AS duration_count
FROM activity_events
GROUP BY 1, 2, 3
WITH NO DATA;
CREATE INDEX activity_hourly_community_idx ON activity_hourly (community_id, bucket);
SELECT add_continuous_aggregate_policy('activity_hourly',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 minute');

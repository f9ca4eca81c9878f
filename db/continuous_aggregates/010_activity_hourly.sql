-- Activity per hour, community and type. Real-time (materialized_only = false): buckets past the last refresh
-- are aggregated from the hypertable at query time. The policy refreshes from the start (start_offset NULL), so
-- late events in old buckets are picked up too: only invalidated buckets are recomputed.
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
    start_offset => NULL, end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 minute');

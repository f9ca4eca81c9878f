-- Activity per day, community and type: a hierarchical aggregate on activity_hourly.
DROP MATERIALIZED VIEW IF EXISTS activity_daily CASCADE;
CREATE MATERIALIZED VIEW activity_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 day', bucket) AS bucket, community_id, activity_type,
       sum(events)::bigint AS events, sum(duration_sum) AS duration_sum,
       sum(duration_count)::bigint AS duration_count
FROM activity_hourly
GROUP BY 1, 2, 3
WITH NO DATA;
CREATE INDEX activity_daily_community_idx ON activity_daily (community_id, bucket);
SELECT add_continuous_aggregate_policy('activity_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '5 minutes');

-- System metrics per hour and type: samples, min, max, average and the last value.
DROP MATERIALIZED VIEW IF EXISTS system_metrics_hourly CASCADE;
CREATE MATERIALIZED VIEW system_metrics_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 hour', recorded_at) AS bucket, metric_type,
       count(*) AS samples, min(value) AS min_value, max(value) AS max_value, avg(value) AS avg_value,
       last(value, recorded_at) AS last_value
FROM system_metrics
GROUP BY 1, 2
WITH NO DATA;
SELECT add_continuous_aggregate_policy('system_metrics_hourly',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');

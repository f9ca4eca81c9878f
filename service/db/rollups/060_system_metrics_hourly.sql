-- System metrics per hour and type: samples, min, max, average and the last value (twin of
-- continuous_aggregates/060_system_metrics_hourly.sql).
DROP VIEW IF EXISTS system_metrics_hourly CASCADE;
DROP FUNCTION IF EXISTS system_metrics_hourly_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS system_metrics_hourly_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'system_metrics_hourly';

CREATE TABLE system_metrics_hourly_mat (
    bucket      timestamptz      NOT NULL,
    metric_type text             NOT NULL,
    samples     bigint           NOT NULL,
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    avg_value   double precision NOT NULL,
    last_value  double precision NOT NULL,
    UNIQUE (metric_type, bucket)
);
CREATE INDEX system_metrics_hourly_mat_bucket_idx ON system_metrics_hourly_mat (bucket);

CREATE FUNCTION system_metrics_hourly_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, metric_type text, samples bigint, min_value double precision,
               max_value double precision, avg_value double precision, last_value double precision)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 hour', m.recorded_at, '2000-01-03 00:00:00+00'), m.metric_type, count(*), min(m.value),
           max(m.value), avg(m.value), (array_agg(m.value ORDER BY m.recorded_at DESC))[1]
    FROM system_metrics m
    WHERE m.recorded_at >= lo AND m.recorded_at < hi
    GROUP BY 1, 2
$$;

CREATE VIEW system_metrics_hourly AS
SELECT bucket, metric_type, samples, min_value, max_value, avg_value, last_value
FROM system_metrics_hourly_mat WHERE bucket < rollup_watermark('system_metrics_hourly')
UNION ALL
SELECT * FROM system_metrics_hourly_between(rollup_watermark('system_metrics_hourly'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source)
VALUES ('system_metrics_hourly', 60, '1 hour', 'system_metrics');

-- Activity per hour, community and type (twin of continuous_aggregates/010_activity_hourly.sql).
DROP VIEW IF EXISTS activity_hourly CASCADE;
DROP FUNCTION IF EXISTS activity_hourly_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS activity_hourly_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'activity_hourly';

CREATE TABLE activity_hourly_mat (
    bucket         timestamptz      NOT NULL,
    community_id   bigint,
    activity_type  text             NOT NULL,
    events         bigint           NOT NULL,
    duration_sum   double precision NOT NULL,
    duration_count bigint           NOT NULL,
    UNIQUE NULLS NOT DISTINCT (community_id, bucket, activity_type)
);
CREATE INDEX activity_hourly_mat_bucket_idx ON activity_hourly_mat (bucket);

CREATE FUNCTION activity_hourly_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, community_id bigint, activity_type text, events bigint,
               duration_sum double precision, duration_count bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 hour', e.time, '2000-01-03 00:00:00+00'), e.community_id, e.activity_type,
           count(*), coalesce(sum(e.duration), 0), count(e.duration)
    FROM activity_events e
    WHERE e.time >= lo AND e.time < hi
    GROUP BY 1, 2, 3
$$;

CREATE VIEW activity_hourly AS
SELECT bucket, community_id, activity_type, events, duration_sum, duration_count
FROM activity_hourly_mat WHERE bucket < rollup_watermark('activity_hourly')
UNION ALL
SELECT * FROM activity_hourly_between(rollup_watermark('activity_hourly'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source) VALUES ('activity_hourly', 10, '1 hour', 'activity');

-- Activity per day, community and type, built on activity_hourly (twin of continuous_aggregates/020_...).
DROP VIEW IF EXISTS activity_daily CASCADE;
DROP FUNCTION IF EXISTS activity_daily_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS activity_daily_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'activity_daily';

CREATE TABLE activity_daily_mat (
    bucket         timestamptz      NOT NULL,
    community_id   bigint,
    activity_type  text             NOT NULL,
    events         bigint           NOT NULL,
    duration_sum   double precision NOT NULL,
    duration_count bigint           NOT NULL,
    UNIQUE NULLS NOT DISTINCT (community_id, bucket, activity_type)
);
CREATE INDEX activity_daily_mat_bucket_idx ON activity_daily_mat (bucket);

CREATE FUNCTION activity_daily_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, community_id bigint, activity_type text, events bigint,
               duration_sum double precision, duration_count bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 day', h.bucket, '2000-01-03 00:00:00+00'), h.community_id, h.activity_type,
           sum(h.events)::bigint, sum(h.duration_sum), sum(h.duration_count)::bigint
    FROM activity_hourly h
    WHERE h.bucket >= lo AND h.bucket < hi
    GROUP BY 1, 2, 3
$$;

CREATE VIEW activity_daily AS
SELECT bucket, community_id, activity_type, events, duration_sum, duration_count
FROM activity_daily_mat WHERE bucket < rollup_watermark('activity_daily')
UNION ALL
SELECT * FROM activity_daily_between(rollup_watermark('activity_daily'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source) VALUES ('activity_daily', 20, '1 day', 'activity');

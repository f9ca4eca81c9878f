-- Members per community per day: who was active, how much, first and last seen (twin of
-- continuous_aggregates/030_...). Unique visitors and retention are counted from here.
DROP VIEW IF EXISTS community_members_daily CASCADE;
DROP FUNCTION IF EXISTS community_members_daily_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS community_members_daily_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'community_members_daily';

CREATE TABLE community_members_daily_mat (
    bucket       timestamptz NOT NULL,
    community_id bigint,
    user_id      bigint      NOT NULL,
    events       bigint      NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (community_id, bucket, user_id)
);
CREATE INDEX community_members_daily_mat_bucket_idx ON community_members_daily_mat (bucket);

CREATE FUNCTION community_members_daily_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, community_id bigint, user_id bigint, events bigint,
               first_seen timestamptz, last_seen timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 day', e.time, '2000-01-03 00:00:00+00'), e.community_id, e.user_id,
           count(*), min(e.time), max(e.time)
    FROM activity_events e
    WHERE e.user_id IS NOT NULL AND e.time >= lo AND e.time < hi
    GROUP BY 1, 2, 3
$$;

CREATE VIEW community_members_daily AS
SELECT bucket, community_id, user_id, events, first_seen, last_seen
FROM community_members_daily_mat WHERE bucket < rollup_watermark('community_members_daily')
UNION ALL
SELECT * FROM community_members_daily_between(rollup_watermark('community_members_daily'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source) VALUES ('community_members_daily', 30, '1 day', 'activity');

-- Geo access decisions per day, built on geo_hourly (twin of continuous_aggregates/050_geo_daily.sql).
DROP VIEW IF EXISTS geo_daily CASCADE;
DROP FUNCTION IF EXISTS geo_daily_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS geo_daily_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'geo_daily';

CREATE TABLE geo_daily_mat (LIKE geo_hourly_mat INCLUDING ALL);

CREATE FUNCTION geo_daily_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, community_id bigint, country text, country_code text, region text, city text,
               access_result text, restriction_scope text, is_traveler boolean, attempts bigint, bypasses bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 day', h.bucket, '2000-01-03 00:00:00+00'), h.community_id, h.country, h.country_code,
           h.region, h.city, h.access_result, h.restriction_scope, h.is_traveler,
           sum(h.attempts)::bigint, sum(h.bypasses)::bigint
    FROM geo_hourly h
    WHERE h.bucket >= lo AND h.bucket < hi
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
$$;

CREATE VIEW geo_daily AS
SELECT bucket, community_id, country, country_code, region, city, access_result, restriction_scope, is_traveler,
       attempts, bypasses
FROM geo_daily_mat WHERE bucket < rollup_watermark('geo_daily')
UNION ALL
SELECT * FROM geo_daily_between(rollup_watermark('geo_daily'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source) VALUES ('geo_daily', 50, '1 day', 'geo');

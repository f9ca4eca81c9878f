-- Geo access decisions per hour, community, place, result, scope and traveler flag (twin of
-- continuous_aggregates/040_geo_hourly.sql).
DROP VIEW IF EXISTS geo_hourly CASCADE;
DROP FUNCTION IF EXISTS geo_hourly_between(timestamptz, timestamptz) CASCADE;
DROP TABLE IF EXISTS geo_hourly_mat CASCADE;
DELETE FROM rollup_registry WHERE name = 'geo_hourly';

CREATE TABLE geo_hourly_mat (
    bucket            timestamptz NOT NULL,
    community_id      bigint      NOT NULL,
    country           text,
    country_code      text,
    region            text,
    city              text,
    access_result     text        NOT NULL,
    restriction_scope text,
    is_traveler       boolean     NOT NULL,
    attempts          bigint      NOT NULL,
    bypasses          bigint      NOT NULL,
    UNIQUE NULLS NOT DISTINCT (community_id, bucket, country, country_code, region, city, access_result,
                               restriction_scope, is_traveler)
);
CREATE INDEX geo_hourly_mat_bucket_idx ON geo_hourly_mat (bucket);

CREATE FUNCTION geo_hourly_between(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, community_id bigint, country text, country_code text, region text, city text,
               access_result text, restriction_scope text, is_traveler boolean, attempts bigint, bypasses bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 hour', g.time, '2000-01-03 00:00:00+00'), g.community_id, g.country, g.country_code,
           g.region, g.city, g.access_result, g.restriction_scope, g.is_traveler,
           count(*), count(*) FILTER (WHERE g.restriction_bypass)
    FROM geo_access_events g
    WHERE g.time >= lo AND g.time < hi
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
$$;

CREATE VIEW geo_hourly AS
SELECT bucket, community_id, country, country_code, region, city, access_result, restriction_scope, is_traveler,
       attempts, bypasses
FROM geo_hourly_mat WHERE bucket < rollup_watermark('geo_hourly')
UNION ALL
SELECT * FROM geo_hourly_between(rollup_watermark('geo_hourly'), 'infinity');

INSERT INTO rollup_registry (name, position, width, source) VALUES ('geo_hourly', 40, '1 hour', 'geo');

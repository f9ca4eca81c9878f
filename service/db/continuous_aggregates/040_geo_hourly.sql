-- Geo access decisions per hour, community, place, result, scope and traveler flag.
DROP MATERIALIZED VIEW IF EXISTS geo_hourly CASCADE;
CREATE MATERIALIZED VIEW geo_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 hour', time) AS bucket, community_id, country, country_code, region, city, access_result,
       restriction_scope, is_traveler,
       count(*) AS attempts, count(*) FILTER (WHERE restriction_bypass) AS bypasses
FROM geo_access_events
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
WITH NO DATA;
CREATE INDEX geo_hourly_community_idx ON geo_hourly (community_id, bucket);
SELECT add_continuous_aggregate_policy('geo_hourly',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 minute');

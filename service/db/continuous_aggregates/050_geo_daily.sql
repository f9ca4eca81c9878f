-- Geo access decisions per day: a hierarchical aggregate on geo_hourly.
DROP MATERIALIZED VIEW IF EXISTS geo_daily CASCADE;
CREATE MATERIALIZED VIEW geo_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 day', bucket) AS bucket, community_id, country, country_code, region, city, access_result,
       restriction_scope, is_traveler,
       sum(attempts)::bigint AS attempts, sum(bypasses)::bigint AS bypasses
FROM geo_hourly
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
WITH NO DATA;
CREATE INDEX geo_daily_community_idx ON geo_daily (community_id, bucket);
SELECT add_continuous_aggregate_policy('geo_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '5 minutes');

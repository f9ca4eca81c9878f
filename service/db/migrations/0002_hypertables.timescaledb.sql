-- timescaledb engine: the raw time-series tables become hypertables (chunks of one day, a week for metrics).
-- create_hypertable adds a (time DESC) index of its own.
SELECT create_hypertable('activity_events', by_range('time', INTERVAL '1 day'));
SELECT create_hypertable('geo_access_events', by_range('time', INTERVAL '1 day'));
SELECT create_hypertable('system_metrics', by_range('recorded_at', INTERVAL '7 days'));

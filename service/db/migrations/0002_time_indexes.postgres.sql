-- postgres engine: the raw tables stay ordinary tables, appended to in time order, so a BRIN index on the
-- time column serves time-range scans at a fraction of a btree's size.
CREATE INDEX activity_events_time_brin ON activity_events USING brin (time);
CREATE INDEX geo_access_events_time_brin ON geo_access_events USING brin (time);
CREATE INDEX system_metrics_time_brin ON system_metrics USING brin (recorded_at);

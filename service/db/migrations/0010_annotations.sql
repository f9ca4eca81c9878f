-- Annotations: marks on the dashboards' time axis saying why something happened ("geo rule changed", "raid").
-- Written through /api/annotations/ and by the service itself (a task's schedule changed, the rollup refresh
-- failing); Grafana reads them through the PostgreSQL datasource (each dashboard's "Annotations" query).
CREATE TABLE annotations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time         timestamptz NOT NULL,
    time_end     timestamptz CHECK (time_end >= time),  -- a region when set, a point in time otherwise
    text         text        NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    tags         text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
    community_id bigint      CHECK (community_id > 0),  -- null: the whole platform
    source       text        NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'task-schedule', 'rollup-refresh')),
    created_by   text,  -- the principal that wrote it through the API (`7`, a service's name); null for the service
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX annotations_time_idx ON annotations (time);
CREATE INDEX annotations_community_time_idx ON annotations (community_id, time) WHERE community_id IS NOT NULL;

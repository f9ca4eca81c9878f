-- Core schema, the same relations and columns on both engines (DESIGN.md section 5).
-- Raw time-series tables become hypertables on timescaledb in 0002_hypertables.timescaledb.sql.

-- Raw community and platform activity. `event_id` is the client's or the API's UUID; a redelivered event
-- is written once thanks to the (event_id, time) key (unique keys on a hypertable must include its time column).
CREATE TABLE activity_events (
    time          timestamptz NOT NULL,
    event_id      uuid        NOT NULL,
    community_id  bigint,                 -- NULL for platform-level events
    user_id       bigint,                 -- NULL for anonymous visitors
    activity_type text        NOT NULL CHECK (activity_type IN (
        'view', 'join', 'leave', 'post', 'comment', 'like', 'share', 'message',
        'session_start', 'session_end', 'page_view', 'content_view', 'register',
        'follow', 'unfollow', 'recommendation_shown', 'recommendation_clicked')),
    session_id    text,
    duration      double precision CHECK (duration >= 0),  -- seconds
    section       text,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT activity_events_event_key UNIQUE (event_id, time)
);
CREATE INDEX activity_events_community_time_idx ON activity_events (community_id, time DESC);
CREATE INDEX activity_events_user_time_idx ON activity_events (user_id, time DESC) WHERE user_id IS NOT NULL;

-- Geo-restriction access decisions. The client's IP address is resolved to a location and never stored.
CREATE TABLE geo_access_events (
    time              timestamptz NOT NULL,
    event_id          uuid        NOT NULL,
    community_id      bigint      NOT NULL,
    user_id           bigint,
    country           text,
    country_code      text        CHECK (country_code ~ '^[A-Z]{2}$'),
    region            text,
    city              text,
    access_result     text        NOT NULL CHECK (access_result IN ('allowed', 'blocked')),
    restriction_scope text        CHECK (restriction_scope IN ('country', 'region', 'city')),
    is_traveler       boolean     NOT NULL DEFAULT false,
    CONSTRAINT geo_access_events_event_key UNIQUE (event_id, time)
);
CREATE INDEX geo_access_events_community_time_idx ON geo_access_events (community_id, time DESC);
CREATE INDEX geo_access_events_user_time_idx ON geo_access_events (user_id, time DESC) WHERE user_id IS NOT NULL;

-- Where a user lives, for traveler detection: the first country recorded, unless set explicitly.
CREATE TABLE user_home_locations (
    user_id       bigint      PRIMARY KEY,
    country_code  text        NOT NULL CHECK (country_code ~ '^[A-Z]{2}$'),
    country       text,
    set_explicitly boolean    NOT NULL DEFAULT false,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- System metrics (CPU, memory, database size, stream backlog, ...), addressable by id for CRUD.
CREATE TABLE system_metrics (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    metric_type     text        NOT NULL CHECK (metric_type ~ '^[a-z][a-z0-9_]{0,62}$'),
    value           double precision NOT NULL,
    additional_data jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(additional_data) = 'object'),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, recorded_at)
);
CREATE INDEX system_metrics_id_idx ON system_metrics (id);
CREATE INDEX system_metrics_type_time_idx ON system_metrics (metric_type, recorded_at DESC);

-- Groups of repeated errors: a fingerprint of the normalised message and the top stack frame.
CREATE TABLE error_groups (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint    text        NOT NULL UNIQUE,
    level          text        NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical')),
    sample_message text        NOT NULL,
    top_frame      text,
    occurrences    bigint      NOT NULL DEFAULT 0 CHECK (occurrences >= 0),
    users_affected bigint      NOT NULL DEFAULT 0 CHECK (users_affected >= 0),
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    status         text        NOT NULL DEFAULT 'unresolved' CHECK (status IN ('unresolved', 'resolved', 'regressed')),
    resolved_at    timestamptz,
    CHECK (last_seen >= first_seen)
);

CREATE TABLE error_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint,
    level       text        NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical')),
    message     text        NOT NULL,
    stack_trace text,
    url         text,
    method      text        CHECK (method ~ '^[A-Z]{1,16}$'),
    ip_address  inet,
    user_agent  text,
    extra_data  jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(extra_data) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    is_resolved boolean     NOT NULL DEFAULT false,
    fingerprint text,
    group_id    bigint      REFERENCES error_groups (id) ON DELETE SET NULL,
    CHECK (is_resolved = (resolved_at IS NOT NULL))
);
CREATE INDEX error_logs_created_idx ON error_logs (created_at DESC);
CREATE INDEX error_logs_group_idx ON error_logs (group_id, created_at DESC);
CREATE INDEX error_logs_user_idx ON error_logs (user_id, created_at DESC) WHERE user_id IS NOT NULL;

-- Platform-wide figures, one row per day (the seed's DailyAnalytics).
CREATE TABLE daily_analytics (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    date                    date        NOT NULL,
    total_users             bigint      NOT NULL DEFAULT 0 CHECK (total_users >= 0),
    active_users            bigint      NOT NULL DEFAULT 0 CHECK (active_users >= 0),
    new_registrations       bigint      NOT NULL DEFAULT 0 CHECK (new_registrations >= 0),
    community_views         bigint      NOT NULL DEFAULT 0 CHECK (community_views >= 0),
    community_joins         bigint      NOT NULL DEFAULT 0 CHECK (community_joins >= 0),
    average_online_members  double precision NOT NULL DEFAULT 0 CHECK (average_online_members >= 0),
    peak_community_activity bigint      NOT NULL DEFAULT 0 CHECK (peak_community_activity >= 0),
    geo_access_attempts     bigint      NOT NULL DEFAULT 0 CHECK (geo_access_attempts >= 0),
    geo_blocked_attempts    bigint      NOT NULL DEFAULT 0 CHECK (geo_blocked_attempts >= 0),
    geo_allowed_access      bigint      NOT NULL DEFAULT 0 CHECK (geo_allowed_access >= 0),
    traveler_access_count   bigint      NOT NULL DEFAULT 0 CHECK (traveler_access_count >= 0),
    content_views           bigint      NOT NULL DEFAULT 0 CHECK (content_views >= 0),
    content_interactions    bigint      NOT NULL DEFAULT 0 CHECK (content_interactions >= 0),
    new_posts               bigint      NOT NULL DEFAULT 0 CHECK (new_posts >= 0),
    new_comments            bigint      NOT NULL DEFAULT 0 CHECK (new_comments >= 0),
    total_likes             bigint      NOT NULL DEFAULT 0 CHECK (total_likes >= 0),
    total_shares            bigint      NOT NULL DEFAULT 0 CHECK (total_shares >= 0),
    total_interactions      bigint      NOT NULL DEFAULT 0 CHECK (total_interactions >= 0),
    avg_session_duration    double precision NOT NULL DEFAULT 0 CHECK (avg_session_duration >= 0),  -- minutes
    bounce_rate             double precision NOT NULL DEFAULT 0 CHECK (bounce_rate BETWEEN 0 AND 100),  -- percent
    api_requests            bigint      NOT NULL DEFAULT 0 CHECK (api_requests >= 0),
    avg_response_time       double precision NOT NULL DEFAULT 0 CHECK (avg_response_time >= 0),  -- milliseconds
    error_count             bigint      NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT daily_analytics_date_key UNIQUE (date)
);

-- Per-user figures, one row per user per day (the seed's UserAnalytics).
CREATE TABLE user_analytics (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                 bigint      NOT NULL,
    date                    date        NOT NULL,
    page_views              bigint      NOT NULL DEFAULT 0 CHECK (page_views >= 0),
    actions_performed       bigint      NOT NULL DEFAULT 0 CHECK (actions_performed >= 0),
    communities_viewed      bigint      NOT NULL DEFAULT 0 CHECK (communities_viewed >= 0),
    communities_joined      bigint      NOT NULL DEFAULT 0 CHECK (communities_joined >= 0),
    community_online_time   double precision NOT NULL DEFAULT 0 CHECK (community_online_time >= 0),  -- minutes
    community_interactions  bigint      NOT NULL DEFAULT 0 CHECK (community_interactions >= 0),
    geo_restricted_attempts bigint      NOT NULL DEFAULT 0 CHECK (geo_restricted_attempts >= 0),
    locations_accessed_from jsonb       NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(locations_accessed_from) = 'array'),
    travel_detected         boolean     NOT NULL DEFAULT false,
    total_posts             bigint      NOT NULL DEFAULT 0 CHECK (total_posts >= 0),
    total_comments          bigint      NOT NULL DEFAULT 0 CHECK (total_comments >= 0),
    total_likes_given       bigint      NOT NULL DEFAULT 0 CHECK (total_likes_given >= 0),
    total_likes_received    bigint      NOT NULL DEFAULT 0 CHECK (total_likes_received >= 0),
    followers_gained        bigint      NOT NULL DEFAULT 0 CHECK (followers_gained >= 0),
    followers_lost          bigint      NOT NULL DEFAULT 0 CHECK (followers_lost >= 0),
    total_sessions          bigint      NOT NULL DEFAULT 0 CHECK (total_sessions >= 0),
    total_time_spent        double precision NOT NULL DEFAULT 0 CHECK (total_time_spent >= 0),  -- minutes
    avg_session_duration    double precision NOT NULL DEFAULT 0 CHECK (avg_session_duration >= 0),  -- minutes
    recommendations_shown   bigint      NOT NULL DEFAULT 0 CHECK (recommendations_shown >= 0),
    recommendations_clicked bigint      NOT NULL DEFAULT 0 CHECK (recommendations_clicked >= 0),
    last_calculated         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_analytics_user_date_key UNIQUE (user_id, date)
);
CREATE INDEX user_analytics_date_idx ON user_analytics (date);

-- Generated reports (JSON), one per kind, scope and period: regenerating a period replaces it.
CREATE TABLE reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('analytics', 'community', 'geo_effectiveness')),
    scope        text        NOT NULL DEFAULT 'platform',  -- 'platform' or e.g. 'community:42'
    period_start date        NOT NULL,
    period_end   date        NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT now(),
    payload      jsonb       NOT NULL,
    CHECK (period_end >= period_start),
    CONSTRAINT reports_period_key UNIQUE (kind, scope, period_start, period_end)
);

-- Every run of a periodic task.
CREATE TABLE task_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_name   text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'failure', 'skipped')),
    error       text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CHECK (finished_at IS NULL OR finished_at >= started_at),
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX task_runs_task_started_idx ON task_runs (task_name, started_at DESC);

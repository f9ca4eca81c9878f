-- Long-lived API keys (`Authorization: Bearer ak_...`), beside the JWTs: a name, a scope (`track`: the tracking
-- routes; `read`: the community reports) and optionally the communities they are limited to. Only the SHA-256 of
-- a key is stored (a key is 256 random bits: a fast hash is enough, as for other random API tokens); `prefix`,
-- its first characters, tells keys apart in lists. Revoked keys stay, with `revoked_at`, for the record.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scope        text        NOT NULL CHECK (scope IN ('track', 'read')),
    communities  bigint[]    CHECK (cardinality(communities) BETWEEN 1 AND 1000),  -- null: every community
    prefix       text        NOT NULL,
    secret_hash  bytea       NOT NULL UNIQUE,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

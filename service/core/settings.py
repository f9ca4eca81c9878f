"""Service configuration: one frozen Struct read from the environment (and an optional `.env`) at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from dotenv import dotenv_values
from msgspec import Meta

from service.core.cron import parse_cron
from service.core.task_catalog import lookup


class ConfigError(Exception):
    """A setting is missing or has a wrong value; the message is one line naming the variable."""


Port = Annotated[int, Meta(ge=1, le=65535)]
FreePort = Annotated[int, Meta(ge=0, le=65535, description="0 picks a free port")]
Days = Annotated[int, Meta(ge=1, le=36500)]
Seconds = Annotated[float, Meta(gt=0, le=3600)]
CLUSTER_SHARDS = 12  # ingest streams on a Redis Cluster unless INGEST_SHARDS says otherwise: 4 per master of 3


def _doc(text: str) -> Any:
    return Meta(description=text)


class Settings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=False,
    rename={
        "database_url": "DATABASE_URL",
        "redis_url": "REDIS_URL",
        "redis_cluster": "REDIS_CLUSTER",
        "task_redis_url_raw": "TASK_REDIS_URL",
        "database_replica_urls_raw": "DATABASE_REPLICA_URLS",
        "database_replica_max_lag": "DATABASE_REPLICA_MAX_LAG",
        "host": "ANALYTICS_HOST",
        "port": "ANALYTICS_PORT",
        "workers": "ANALYTICS_WORKERS",
        "log_level": "ANALYTICS_LOG_LEVEL",
        "data_dir": "ANALYTICS_DATA_DIR",
        "dev_postgres_port": "ANALYTICS_DEV_POSTGRES_PORT",
        "dev_redis_port": "ANALYTICS_DEV_REDIS_PORT",
        "db_pool_min": "DATABASE_POOL_MIN",
        "db_pool_max": "DATABASE_POOL_MAX",
        "db_timeout": "DATABASE_TIMEOUT",
        "db_wait": "DATABASE_WAIT",
        "db_prepared_statements": "DATABASE_PREPARED_STATEMENTS",
        "redis_timeout": "REDIS_TIMEOUT",
        "jwt_algorithm": "JWT_ALGORITHM",
        "jwt_secret": "JWT_SECRET",
        "jwt_public_key_file": "JWT_PUBLIC_KEY_FILE",
        "jwt_audience": "JWT_AUDIENCE",
        "jwt_issuer": "JWT_ISSUER",
        "jwt_leeway": "JWT_LEEWAY",
        "geoip_database": "GEOIP_DATABASE",
        "retention_raw_days": "RETENTION_RAW_DAYS",
        "retention_rollup_days": "RETENTION_ROLLUP_DAYS",
        "retention_resolved_errors_days": "RETENTION_RESOLVED_ERRORS_DAYS",
        "metrics_token": "METRICS_TOKEN",
        "metrics_top_communities": "METRICS_TOP_COMMUNITIES",
        "metrics_surge_communities": "METRICS_SURGE_COMMUNITIES",
        "metrics_surge_min_events": "METRICS_SURGE_MIN_EVENTS",
        "ingest_metrics_port": "INGEST_METRICS_PORT",
        "worker_metrics_port": "WORKER_METRICS_PORT",
        "session_ttl": "SESSION_TTL",
        "session_cookie_secure": "SESSION_COOKIE_SECURE",
        "rate_limit_track": "RATE_LIMIT_TRACK",
        "rate_limit_auth": "RATE_LIMIT_AUTH",
        "track_max_batch": "TRACK_MAX_BATCH",
        "track_max_body_bytes": "TRACK_MAX_BODY_BYTES",
        "track_max_age": "TRACK_MAX_AGE",
        "track_max_future": "TRACK_MAX_FUTURE",
        "trusted_proxies": "TRUSTED_PROXIES",
        "error_log_ip": "ERROR_LOG_IP",
        "cors_allow_origins": "CORS_ALLOW_ORIGINS",
        "geo_bypass_window": "GEO_BYPASS_WINDOW",
        "live_max_streams_per_principal": "LIVE_MAX_STREAMS_PER_PRINCIPAL",
        "live_heartbeat": "LIVE_HEARTBEAT",
        "ingest_max_backlog": "INGEST_MAX_BACKLOG",
        "ingest_batch_size": "INGEST_BATCH_SIZE",
        "ingest_claim_idle": "INGEST_CLAIM_IDLE",
        "ingest_consumer": "INGEST_CONSUMER",
        "ingest_use_copy": "INGEST_USE_COPY",
        "ingest_shards_raw": "INGEST_SHARDS",
        "task_schedules_raw": "TASK_SCHEDULES",
        "tasks_disabled_raw": "TASKS_DISABLED",
    },
):
    """Every setting of the service; field docs become the README's configuration table."""

    database_url: Annotated[
        str | None, _doc("PostgreSQL URL. Unset: `analytics dev` starts its own server in the data directory")
    ] = None
    redis_url: Annotated[
        str | None, _doc("Redis URL. Unset: `analytics dev` starts its own server in the data directory")
    ] = None
    redis_cluster: Annotated[
        bool, _doc("`REDIS_URL` names a node of a Redis Cluster; the client discovers the others")
    ] = False
    task_redis_url_raw: Annotated[
        str | None,
        _doc("Plain Redis of the task queue (huey cannot use a cluster); unset: `REDIS_URL`, needed with a cluster"),
    ] = None
    database_replica_urls_raw: Annotated[
        str, _doc("Comma-separated URLs of PostgreSQL read replicas for the report and listing reads; empty: none")
    ] = ""
    database_replica_max_lag: Annotated[
        Seconds, _doc("Seconds a replica may lag behind the primary before its reads go to the primary")
    ] = 30.0
    host: Annotated[str, _doc("Address the API listens on")] = "127.0.0.1"
    port: Annotated[Port, _doc("Port the API listens on")] = 8000
    workers: Annotated[int, Meta(ge=1, le=64, description="API worker processes")] = 1
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _doc("Log level")] = "INFO"
    data_dir: Annotated[str, _doc("Directory of the embedded PostgreSQL and Redis (`analytics dev`)")] = ".analytics"
    dev_postgres_port: Annotated[FreePort, _doc("Port of the embedded PostgreSQL; 0 picks a free one")] = 0
    dev_redis_port: Annotated[FreePort, _doc("Port of the embedded Redis; 0 picks a free one")] = 0
    db_pool_min: Annotated[int, Meta(ge=0, le=1000, description="Connections kept open per process")] = 1
    db_pool_max: Annotated[int, Meta(ge=1, le=1000, description="Most connections per process")] = 10
    db_timeout: Annotated[Seconds, _doc("Seconds to wait for a pooled connection before failing")] = 5.0
    db_wait: Annotated[
        Annotated[float, Meta(ge=0, le=3600)], _doc("Seconds to wait at start-up for PostgreSQL to accept connections")
    ] = 30.0
    db_prepared_statements: Annotated[
        bool, _doc("Prepare repeated statements; `false` behind a transaction-pooling PgBouncer")
    ] = True
    redis_timeout: Annotated[Seconds, _doc("Seconds to wait for Redis to connect or answer")] = 2.0
    jwt_algorithm: Annotated[Literal["HS256", "RS256"], _doc("JWT signature algorithm")] = "HS256"
    jwt_secret: Annotated[str | None, _doc("HS256 shared secret (at least 32 characters)")] = None
    jwt_public_key_file: Annotated[str | None, _doc("RS256: path of the issuer's PEM public key")] = None
    jwt_audience: Annotated[str | None, _doc("Expected `aud` claim; unset: not checked")] = None
    jwt_issuer: Annotated[str | None, _doc("Expected `iss` claim; unset: not checked")] = None
    jwt_leeway: Annotated[
        Annotated[float, Meta(ge=0, le=600)], _doc("Seconds of clock skew tolerated on `exp`/`nbf`")
    ] = 30.0
    geoip_database: Annotated[str | None, _doc("Path of a MaxMind-format (.mmdb) city database")] = None
    retention_raw_days: Annotated[Days, _doc("Days raw events and metrics are kept")] = 90
    retention_rollup_days: Annotated[Days, _doc("Days hourly and daily rollups are kept")] = 730
    retention_resolved_errors_days: Annotated[Days, _doc("Days resolved error logs are kept")] = 30
    metrics_token: Annotated[str | None, _doc("Bearer token required on `/metrics`; unset: open")] = None
    metrics_top_communities: Annotated[
        int, Meta(ge=0, le=1000, description="Communities with their own online-members series on `/metrics`")
    ] = 20
    metrics_surge_communities: Annotated[
        int,
        Meta(
            ge=0,
            le=1000,
            description="Communities per signal (activity, blocked geo decisions) with their own surge series on "
            "`/metrics`: those with the highest last hour against their baseline; 0: none",
        ),
    ] = 10
    metrics_surge_min_events: Annotated[
        int,
        Meta(
            ge=1,
            description="Events (or blocked geo decisions) a community needs in the last hour to have surge series",
        ),
    ] = 50
    ingest_metrics_port: Annotated[
        int, Meta(ge=0, le=65535, description="Port of the ingest worker's own `/metrics`; 0: not served")
    ] = 9101
    worker_metrics_port: Annotated[
        int, Meta(ge=0, le=65535, description="Port of the task worker's own `/metrics`; 0: not served")
    ] = 9102
    session_ttl: Annotated[
        int, Meta(ge=60, le=90 * 86400, description="Seconds a browser session lives without use")
    ] = 7 * 86400
    session_cookie_secure: Annotated[
        bool, _doc("Send the session cookie only over HTTPS (`false` for plain-HTTP development)")
    ] = True
    rate_limit_track: Annotated[
        int, Meta(ge=1, description="Tracking requests per principal per minute, shared by all API processes")
    ] = 1200
    rate_limit_auth: Annotated[
        int,
        Meta(
            ge=1,
            description="Session log-ins, and lookups of API keys Redis does not hold, per client address per minute",
        ),
    ] = 20
    track_max_batch: Annotated[int, Meta(ge=1, le=10000, description="Most events in one batch tracking request")] = 500
    track_max_body_bytes: Annotated[
        int, Meta(ge=1024, le=64 * 1024 * 1024, description="Largest tracking request body, in bytes")
    ] = 1024 * 1024
    track_max_age: Annotated[
        int, Meta(ge=0, le=30 * 86400, description="Oldest client `timestamp` accepted, in seconds before now")
    ] = 7 * 86400
    track_max_future: Annotated[
        int, Meta(ge=0, le=3600, description="Furthest client `timestamp` accepted, in seconds after now")
    ] = 300
    trusted_proxies: Annotated[
        str, _doc("Comma-separated addresses or CIDR ranges whose X-Forwarded-For is believed; empty: none")
    ] = ""
    error_log_ip: Annotated[
        Literal["truncated", "full", "none"],
        _doc("Client address kept in the error logs of unhandled errors: IPv4 /24 or IPv6 /48, the whole, or none"),
    ] = "truncated"
    cors_allow_origins: Annotated[
        str, _doc("Comma-separated origins browsers may call the API from (CORS), `*` for any; empty: none")
    ] = ""
    live_max_streams_per_principal: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Live streams one principal may hold open at once, over all API processes"),
    ] = 5
    live_heartbeat: Annotated[
        int, Meta(ge=1, le=30, description="Seconds between two heartbeat comments on a live stream")
    ] = 15
    geo_bypass_window: Annotated[
        int,
        Meta(
            ge=1,
            le=30 * 86400,
            description="Seconds after a block in which an allowed access from another "
            "country of the same user and community counts as a restriction bypass",
        ),
    ] = 3600
    ingest_max_backlog: Annotated[
        int,
        Meta(
            ge=1,
            description="Stream entries (each up to 1,000 events accepted together) waiting for ingest above "
            "which tracking answers 503",
        ),
    ] = 100_000
    ingest_batch_size: Annotated[
        int, Meta(ge=1, le=100_000, description="Stream entries read per ingest batch (each up to 1,000 events)")
    ] = 10
    ingest_claim_idle: Annotated[
        float, Meta(gt=0, le=86400, description="Seconds an entry stays pending before another consumer takes it over")
    ] = 60.0
    ingest_consumer: Annotated[
        str | None, _doc("Consumer name of this ingest worker in the group; unset: the host name")
    ] = None
    ingest_use_copy: Annotated[
        bool, _doc("Write batches with COPY; `false`: multi-row INSERTs, for servers without COPY FROM STDIN")
    ] = True
    ingest_shards_raw: Annotated[
        Annotated[int, Meta(ge=1, le=1024)] | None,
        _doc(
            "Ingest streams (a community's events always go to one); unset: 1 on a single Redis, "
            f"{CLUSTER_SHARDS} on a cluster. Drain the streams before changing it"
        ),
    ] = None
    task_schedules_raw: Annotated[
        str,
        _doc(
            "Schedule overrides, `task=cron;task=cron` (cron: minute hour day month weekday, UTC); a change stored"
            " through `PATCH /api/tasks/{name}/` wins"
        ),
    ] = ""
    tasks_disabled_raw: Annotated[
        str, _doc("Comma-separated tasks that do not run on their schedule; a change stored through the API wins")
    ] = ""

    def __post_init__(self) -> None:
        _check_url("DATABASE_URL", self.database_url, ("postgresql", "postgres"))
        _check_url("REDIS_URL", self.redis_url, ("redis", "rediss", "unix"))
        _check_url("TASK_REDIS_URL", self.task_redis_url_raw, ("redis", "rediss", "unix"))
        for url in self.database_replica_urls():
            _check_url("DATABASE_REPLICA_URLS", url, ("postgresql", "postgres"))
        if self.redis_cluster and self.redis_url is not None and self.task_redis_url_raw is None:
            raise ValueError("TASK_REDIS_URL: expected a plain Redis for the task queue when REDIS_CLUSTER is true")
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(f"DATABASE_POOL_MIN: expected at most DATABASE_POOL_MAX ({self.db_pool_max})")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise ValueError("JWT_SECRET: expected at least 32 characters")
        if self.jwt_algorithm == "RS256" and self.jwt_public_key_file is None:
            raise ValueError("JWT_PUBLIC_KEY_FILE: expected a PEM public key file when JWT_ALGORITHM is RS256")
        try:
            self.proxy_networks()
        except ValueError as exc:
            raise ValueError(
                f"TRUSTED_PROXIES: expected addresses or CIDR ranges separated by commas ({exc})"
            ) from None
        self.task_schedules()
        self.disabled_tasks()
        for var, path in (("JWT_PUBLIC_KEY_FILE", self.jwt_public_key_file), ("GEOIP_DATABASE", self.geoip_database)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{var}: expected an existing file, {path!r} is not one")

    @property
    def ingest_shards(self) -> int:
        """INGEST_SHARDS, or its default for the kind of Redis."""
        if self.ingest_shards_raw is not None:
            return self.ingest_shards_raw
        return CLUSTER_SHARDS if self.redis_cluster else 1

    @property
    def task_redis_url(self) -> str | None:
        """The Redis of the task queue and its locks."""
        return self.task_redis_url_raw or self.redis_url

    def database_replica_urls(self) -> list[str]:
        """DATABASE_REPLICA_URLS parsed."""
        return [url.strip() for url in self.database_replica_urls_raw.split(",") if url.strip()]

    def task_schedules(self) -> dict[str, str]:
        """TASK_SCHEDULES parsed and checked: task name -> cron expression."""
        overrides: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in self.task_schedules_raw.split(";"))):
            name, sep, expression = (x.strip() for x in part.partition("="))
            spec = lookup(name)
            if not sep or spec is None:
                raise ValueError(f"TASK_SCHEDULES: expected `task=cron` with a known task, got {part!r}")
            try:
                parse_cron(expression)
            except ValueError as exc:
                raise ValueError(f"TASK_SCHEDULES: {name}: {exc}") from None
            overrides[spec.name] = expression
        return overrides

    def disabled_tasks(self) -> set[str]:
        """TASKS_DISABLED parsed and checked."""
        names = sorted(n.strip() for n in self.tasks_disabled_raw.split(",") if n.strip())
        specs = {name: lookup(name) for name in names}
        unknown = [name for name, spec in specs.items() if spec is None]
        if unknown:
            raise ValueError(f"TASKS_DISABLED: unknown task {unknown[0]!r}")
        return {spec.name for spec in specs.values() if spec is not None}

    def cors_origins(self) -> list[str]:
        """CORS_ALLOW_ORIGINS parsed: the origins browsers may call the API from."""
        return [origin.strip().rstrip("/") for origin in self.cors_allow_origins.split(",") if origin.strip()]

    def proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        """TRUSTED_PROXIES parsed."""
        return [ip_network(part.strip(), strict=False) for part in self.trusted_proxies.split(",") if part.strip()]


ENV_NAMES: dict[str, str] = dict(zip(Settings.__struct_fields__, Settings.__struct_encode_fields__, strict=True))
"""Field name -> environment variable, e.g. "port" -> "ANALYTICS_PORT"."""


def _check_url(var: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    scheme = url.partition("://")[0]
    if "://" not in url or scheme not in schemes:
        expected = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{var}: expected a URL starting with {expected}")


_PATH = re.compile(r" - at `\$\.(\w+)`$")


def from_env(environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env") -> Settings:
    """Read settings from `environ` (default: the process environment) over the values of a `.env` file."""
    values: dict[str, str] = {}
    if dotenv is not None and Path(dotenv).is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    known = set(ENV_NAMES.values())
    raw = {k: v for k, v in values.items() if k in known and v != ""}
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_one_line(str(exc), raw)) from None


def _one_line(message: str, raw: Mapping[str, str]) -> str:
    """Name the variable, what it expects and what it got, on one line."""
    match = _PATH.search(message)
    if match is None:
        # Raised from __post_init__: the message already starts with the variable name.
        return message.removesuffix(" - at `$`")
    var = match.group(1)
    return f"{var}: expected {_expected(_fields()[var].type)} (got {raw.get(var, '')!r})"


def _fields() -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    return {field.encode_name: field for field in info.fields}


def _expected(t: msgspec.inspect.Type) -> str:
    """Say in words what a field accepts, e.g. `an integer between 1 and 65535`."""
    if isinstance(t, msgspec.inspect.Metadata):
        return _expected(t.type)
    if isinstance(t, msgspec.inspect.UnionType):
        return " or ".join(_expected(x) for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
    if isinstance(t, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(map(str, t.values))
    if isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        kind = "an integer" if isinstance(t, msgspec.inspect.IntType) else "a number"
        low = t.ge if t.ge is not None else t.gt
        high = t.le if t.le is not None else t.lt
        if low is not None and high is not None:
            return f"{kind} between {low} and {high}"
        return kind
    return "a string"


def settings_table() -> str:
    """The README's configuration table, generated from the field declarations."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for field in _fields().values():
        default = "" if field.default in (msgspec.NODEFAULT, None) else f"`{field.default}`"
        rows.append(f"| `{field.encode_name}` | {default} | {_description(field.type)} |")
    return "\n".join(rows)


def _description(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.Metadata):
        extra = t.extra_json_schema or {}
        return str(extra.get("description") or _description(t.type))
    if isinstance(t, msgspec.inspect.UnionType):
        return next((d for d in map(_description, t.types) if d), "")
    return ""

"""Long-lived API keys (`Authorization: Bearer ak_...`) beside the JWTs: created by staff with a scope (`track`,
`read`) and optionally a list of communities, shown once, stored as a SHA-256; revoked at once in every API process.

Checking a key: its principal is cached in Redis by the key's hash (`ApiKeys.CACHE_SECONDS`), else read from
PostgreSQL (the truth) and cached with SET NX. Revoking marks the key revoked in PostgreSQL, then overwrites the
cached principal with a `revoked` marker that outlives any cached copy: the next request with that key, in any
process, is refused. A lookup that read the key before the revocation committed cannot put it back afterwards
(NX). With Redis unavailable, keys are checked against PostgreSQL alone.

A key reaches only the routes marked for its scope (`for_keys`); on those, `Principal.moderates` and
`Principal.covers` limit it to its communities.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import psycopg
from msgspec import Meta
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from service.auth.ratelimit import hit
from service.auth.tokens import KeyScope, Principal
from service.core.errors import REDIS_ERRORS, AuthenticationFailed, NotFound, first_line
from service.core.listing import BIGINT_MAX
from service.live.client import AsyncRedis
from service.live.keys import api_key_key

log = logging.getLogger(__name__)

PREFIX = "ak_"
KEY_FORMAT = re.compile(r"ak_[A-Za-z0-9_-]{43}")  # 32 random bytes, URL-safe base64 without padding
SHOWN = 11  # characters of a key kept as its `prefix`: `ak_` and 8 more
SCOPES_OPT = "api_key_scopes"  # the route option naming the key scopes a route admits
REVOKED, UNKNOWN = b"revoked", b"unknown"  # the marker Redis holds; what PostgreSQL answers for no key
KEY_USE_FLUSH_SECONDS = 15.0  # how often a process writes when its keys were last used


def for_keys(*scopes: KeyScope) -> dict[str, Any]:
    """The `opt` of a route API keys of these scopes may call (keys reach no other route)."""
    return {SCOPES_OPT: frozenset(scopes)}


def new_key() -> str:
    """A new API key: `ak_` and 32 random bytes."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Cached(msgspec.Struct, frozen=True):
    """What Redis keeps of a valid key: enough to build its principal."""

    id: int
    scope: KeyScope
    communities: list[int] | None

    def principal(self, hashed: bytes) -> Principal:
        communities = None if self.communities is None else frozenset(self.communities)
        return Principal(kind="key", subject=str(self.id), user_id=None, scope=self.scope, communities=communities,
                         secret_hash=hashed)  # fmt: skip


class ApiKey(msgspec.Struct, kw_only=True):
    """A key as listed: never its secret."""

    id: int
    name: str
    scope: KeyScope
    communities: list[int] | None  # null: every community
    prefix: str  # the key's first characters
    created_by: str
    created_at: datetime
    last_used_at: datetime | None  # within KEY_USE_FLUSH_SECONDS of the last request
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey, kw_only=True):
    """A new key, with the key itself: shown this once, stored only as a hash."""

    key: str


Community = Annotated[int, Meta(ge=1, le=BIGINT_MAX)]


class ApiKeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST body of `/api/keys/`."""

    name: Annotated[str, Meta(min_length=1, max_length=100, description="what the key is for, 1 to 100 characters")]
    scope: KeyScope
    communities: (
        Annotated[list[Community], Meta(min_length=1, max_length=1000, description="only these communities")] | None
    ) = None


_LOOKUP = "SELECT id, scope, communities, revoked_at IS NOT NULL FROM api_keys WHERE secret_hash = %s"
_HASH = "SELECT secret_hash FROM api_keys WHERE id = %s"
_REVOKE = "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
_USED = """
UPDATE api_keys k SET last_used_at = greatest(k.last_used_at, u.at)
FROM unnest(%s::bigint[], %s::timestamptz[]) AS u(id, at) WHERE k.id = u.id
"""


class ApiKeys:
    """One API process's view of the keys: checking them, and noting when each was last used."""

    CACHE_SECONDS = 300  # a valid key's principal in Redis
    MARKER_SECONDS = 86_400  # the `revoked` marker: it outlives any cached principal

    def __init__(self, pool: AsyncConnectionPool, redis: AsyncRedis) -> None:
        self.pool, self.redis = pool, redis
        self._used: dict[int, float] = {}  # key id -> last request (unix s), flushed by `flush`

    async def principal(self, key: str, client: str, lookups: int) -> Principal:
        """The principal of an API key, or AuthenticationFailed (malformed, unknown, revoked). A key Redis does
        not hold is looked up in PostgreSQL at most `lookups` times a minute per `client` (its address; beyond,
        429): random keys cost neither a query each nor memory (unknown keys are not cached)."""
        if not KEY_FORMAT.fullmatch(key):
            raise AuthenticationFailed("API key is malformed (expected `ak_` and 43 characters)")
        hashed = digest(key)
        name = api_key_key(hashed)
        cached: bytes | None = None
        try:
            cached = await self._cached(name)
            redis_up = True
        except REDIS_ERRORS as exc:
            log.warning("API keys: Redis unavailable, checking against PostgreSQL (%s)", first_line(exc))
            redis_up = False
        if cached is None:
            if redis_up:
                await hit(self.redis, "apikey", client, lookups)
            cached = await self._load(hashed)
            if redis_up and cached != UNKNOWN:
                seconds = self.CACHE_SECONDS if cached != REVOKED else self.MARKER_SECONDS
                try:
                    await self.redis.set(name, cached, nx=True, ex=seconds)
                except REDIS_ERRORS as exc:
                    log.warning("API keys: could not cache a key (%s)", first_line(exc))
        if cached == REVOKED:
            raise AuthenticationFailed("API key has been revoked")
        if cached == UNKNOWN:
            raise AuthenticationFailed("API key is not known")
        found = msgspec.json.decode(cached, type=Cached)
        self._used[found.id] = time.time()
        return found.principal(hashed)

    async def revoked(self, principal: Principal) -> bool:
        """Whether the key of this principal has been revoked since it was checked (for what outlives a request:
        a live stream asks at each heartbeat)."""
        if principal.secret_hash is None:
            return False
        try:
            cached = await self._cached(api_key_key(principal.secret_hash))
        except REDIS_ERRORS:
            cached = None
        if cached is None:
            return await self._load(principal.secret_hash) in (REVOKED, UNKNOWN)
        return cached == REVOKED

    async def _cached(self, name: str) -> bytes | None:
        """What Redis holds for a key (as bytes, whatever the client decodes), or None."""
        value = await self.redis.get(name)
        return value.encode() if isinstance(value, str) else value

    async def _load(self, hashed: bytes) -> bytes:
        """The key's cache entry from PostgreSQL: its principal's JSON, or a marker."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_LOOKUP, (hashed,))
            row = await cur.fetchone()
        if row is None:
            return UNKNOWN
        key_id, scope, communities, revoked = row
        return REVOKED if revoked else msgspec.json.encode(Cached(key_id, scope, communities))

    async def revoke(self, conn: AsyncConnection[Any], key_id: int) -> None:
        """Revoke key `key_id` (again is fine): first the `revoked` marker in Redis, which every process reads,
        then the row; NotFound when no key has this id. If Redis fails, nothing changed and the caller answers
        503; if PostgreSQL fails after the marker, the key is refused already and the caller may retry."""
        cur = await conn.execute(_HASH, (key_id,))
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"No API key {key_id}")
        await self.redis.set(api_key_key(bytes(row[0])), REVOKED, ex=self.MARKER_SECONDS)
        await conn.execute(_REVOKE, (key_id,))

    async def flush(self) -> None:
        """Write when each key used since the last flush was last used (KEY_USE_FLUSH_SECONDS)."""
        used, self._used = self._used, {}
        if not used:
            return
        ids = sorted(used)
        times = [datetime.fromtimestamp(used[i], UTC) for i in ids]
        try:
            async with self.pool.connection() as conn:
                await conn.execute(_USED, (ids, times))
        except (psycopg.Error, PoolTimeout) as exc:  # kept for the next flush (`every` stops on an escape)
            log.warning("API keys: could not note their last use (%s)", first_line(exc))
            for key_id, at in used.items():
                self._used[key_id] = max(at, self._used.get(key_id, 0.0))

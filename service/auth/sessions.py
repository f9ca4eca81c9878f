"""Server-side browser sessions in Redis, established from a valid bearer token, with a CSRF token each.

The session cookie is HttpOnly and SameSite=Lax; writes authenticated by it must echo the session's CSRF token
in the `X-CSRF-Token` header (double submit: the token is also in a cookie JavaScript can read). Requests that
carry a bearer token are not exposed to CSRF and need no such header.
"""

from __future__ import annotations

import secrets

import msgspec
import redis.asyncio as aioredis

from service.auth.tokens import Principal
from service.live import session_key

SESSION_COOKIE = "analytics_session"
CSRF_COOKIE = "analytics_csrf"
CSRF_HEADER = "x-csrf-token"


class Session(msgspec.Struct, frozen=True):
    """What Redis keeps of a session: who it is and the CSRF token of its writes."""

    principal: Principal
    csrf_token: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


async def create_session(client: aioredis.Redis, principal: Principal, ttl: int) -> tuple[str, Session]:
    """A new session for this principal: (the id for the cookie, the session)."""
    session_id = secrets.token_urlsafe(32)
    session = Session(principal=principal, csrf_token=secrets.token_urlsafe(32))
    await client.set(session_key(session_id), _encode(session), ex=ttl)
    return session_id, session


async def load_session(client: aioredis.Redis, session_id: str, ttl: int) -> Session | None:
    """The live session of this id (its expiry renewed: sessions slide), or None when unknown or expired."""
    raw = await client.getex(session_key(session_id), ex=ttl)
    if raw is None:
        return None
    try:
        return _decode(raw)
    except msgspec.DecodeError:  # written by an older release with another shape: treat as logged out
        return None


async def delete_session(client: aioredis.Redis, session_id: str) -> None:
    await client.delete(session_key(session_id))

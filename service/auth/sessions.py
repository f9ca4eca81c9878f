"""Server-side browser sessions in Redis, established from a valid bearer token, with a CSRF token each.

The session cookie is HttpOnly and SameSite=Lax; writes authenticated by it must echo the session's CSRF token
in the `X-CSRF-Token` header (double submit: the token is also in a cookie JavaScript can read). Requests that
carry a bearer token are not exposed to CSRF and need no such header.
"""

from __future__ import annotations

import math
import secrets
import time

import msgspec

from service.auth.tokens import Principal
from service.live.client import AsyncRedis
from service.live.keys import session_key

SESSION_COOKIE = "analytics_session"
CSRF_COOKIE = "analytics_csrf"
CSRF_HEADER = "x-csrf-token"


class Session(msgspec.Struct, frozen=True):
    """What Redis keeps of a session: who it is, the CSRF token of its writes, and when the token it was started
    from expires (a session never outlives that token; None for sessions of earlier releases)."""

    principal: Principal
    csrf_token: str
    expires_at: float | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


async def create_session(client: AsyncRedis, principal: Principal, ttl: int, expires_at: float) -> tuple[str, Session]:
    """A new session for this principal, ending at `expires_at` (its token's `exp`) at the latest: (the id for
    the cookie, the session)."""
    session_id = secrets.token_urlsafe(32)
    session = Session(principal=principal, csrf_token=secrets.token_urlsafe(32), expires_at=expires_at)
    await client.set(session_key(session_id), _encode(session), ex=session_lifetime(ttl, expires_at))
    return session_id, session


async def load_session(client: AsyncRedis, session_id: str, ttl: int) -> Session | None:
    """The live session of this id (its expiry renewed, sessions slide, but never past its token's `exp`), or
    None when unknown or expired."""
    key = session_key(session_id)
    raw = await client.get(key)
    if raw is None:
        return None
    try:
        session = _decode(raw)
    except msgspec.DecodeError:  # written by an older release with another shape: treat as logged out
        return None
    if session.expires_at is not None and time.time() >= session.expires_at:
        await client.delete(key)
        return None
    await client.expire(key, session_lifetime(ttl, session.expires_at))
    return session


def session_lifetime(ttl: int, expires_at: float | None) -> int:
    """Seconds a session key lives: SESSION_TTL, cut at its token's expiry (at least one second)."""
    if expires_at is None:
        return ttl
    return max(1, min(ttl, math.ceil(expires_at - time.time())))


async def delete_session(client: AsyncRedis, session_id: str) -> None:
    await client.delete(session_key(session_id))

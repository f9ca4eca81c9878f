"""The authentication middleware: a bearer token or a session cookie on every route it covers, or 401."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from service.auth.keys import PREFIX as KEY_PREFIX
from service.auth.keys import SCOPES_OPT
from service.auth.sessions import CSRF_HEADER, SESSION_COOKIE, load_session
from service.auth.tokens import Principal
from service.core.errors import AuthenticationFailed, Forbidden
from service.web.limits import address_of
from service.web.resources import Resources

# Open without credentials: probes, the API documentation and /metrics (which has its own optional token).
PUBLIC_PATHS = ["^/health", "^/ready", "^/docs", "^/metrics"]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of an `Authorization: Bearer` header; None when there is no such header."""
    # Read from the raw ASGI headers (names come lower-cased): building the connection's Headers costs more than
    # the whole check on the tracking routes.
    header = next((value for name, value in connection.scope["headers"] if name == b"authorization"), None)
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Authorization header must be `Bearer <token>`")
    return token.strip()


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], resources: Resources) -> AuthenticationResult:
    """The caller of a request: its bearer token (a JWT, or an API key on a route for its scope), or its session
    cookie (writes need the CSRF header); else 401."""
    token = bearer_token(connection)
    if token is not None:
        if token.startswith(KEY_PREFIX):
            client, lookups = address_of(connection, resources), resources.settings.rate_limit_auth
            principal = await resources.keys.principal(token, client, lookups)
            return AuthenticationResult(user=_admitted_key(connection, principal), auth="api_key")
        # Verified once per process while it stays cached (and unexpired), for this app's settings only.
        return AuthenticationResult(user=resources.tokens.principal(token), auth="token")
    session_id = connection.cookies.get(SESSION_COOKIE)
    if session_id:
        session = await load_session(resources.redis, session_id, resources.settings.session_ttl)
        if session is None:
            raise AuthenticationFailed("session expired or logged out; sign in again")
        if connection.scope.get("method", "GET") not in _SAFE_METHODS:
            sent = connection.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise Forbidden(f"CSRF check failed: writes with the session cookie need the {CSRF_HEADER} header")
        return AuthenticationResult(user=session.principal, auth="session")
    raise AuthenticationFailed(
        "authentication required: send `Authorization: Bearer <token>` or a session cookie", invalid_token=False
    )


def _admitted_key(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> Principal:
    """An API key's principal on a route marked for its scope (`service.auth.keys.for_keys`); else 403."""
    handler = connection.scope.get("route_handler")
    admits = handler.opt.get(SCOPES_OPT, frozenset()) if handler is not None else frozenset()
    if principal.scope not in admits:
        method, path = connection.scope.get("method", "GET"), connection.scope.get("path", "")
        raise Forbidden(f"an API key of scope `{principal.scope}` may not call {method} {path}")
    return principal


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], resources: Resources) -> Principal:
    """Authenticate a request of a route the middleware leaves alone (`exclude_from_auth=True`: the tracking
    routes, where the middleware layer costs more than the check), exactly as the middleware would; its caller."""
    result = await authenticate(connection, resources)
    connection.scope["user"], connection.scope["auth"] = result.user, result.auth
    principal: Principal = result.user
    return principal


class AuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Puts the caller's `Principal` in `scope["user"]` (`scope["auth"]`: "token", "api_key" or "session")."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        return await authenticate(connection, connection.app.state.resources)


def authentication_middleware() -> DefineMiddleware:
    """The middleware as the app registers it."""
    return DefineMiddleware(AuthenticationMiddleware, exclude=PUBLIC_PATHS)

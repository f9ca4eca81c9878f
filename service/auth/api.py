"""Signing in and out of browser sessions, who the caller is, and the API keys (`/api/keys/`, staff)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from psycopg import sql

from service.auth.guards import principal_of, staff_only
from service.auth.keys import PREFIX as KEY_PREFIX
from service.auth.keys import SHOWN, ApiKey, ApiKeyCreate, ApiKeyCreated, digest, for_keys, new_key
from service.auth.middleware import bearer_token
from service.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, create_session, delete_session, session_lifetime
from service.auth.tokens import KeyScope, Principal, verify_token
from service.core.errors import AuthenticationFailed, Forbidden
from service.core.listing import (
    DEFAULT_PAGE_SIZE,
    Ordering,
    Page,
    PageNumber,
    PageSize,
    Where,
    build_page,
    columns,
    decode_body,
    fetch_page,
)
from service.core.openapi import json_body
from service.core.rows import fetch_one, valid_id
from service.web.limits import auth_rate_limit
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]


class Identity(msgspec.Struct, frozen=True):
    """The authenticated caller as this service sees it (`scope` and `communities` for API keys only)."""

    kind: str
    subject: str
    user_id: int | None
    staff: bool
    moderated_communities: list[int]
    authenticated_by: str  # `token`, `session` or `api_key`
    scope: KeyScope | msgspec.UnsetType = msgspec.UNSET  # API keys: `track` or `read`
    communities: list[int] | msgspec.UnsetType | None = msgspec.UNSET  # API keys: theirs (null: every one)


class SessionCreated(msgspec.Struct, frozen=True):
    """A new session: echo `csrf_token` in the X-CSRF-Token header of writes made with the session cookie."""

    identity: Identity
    csrf_token: str
    expires_in: int


def _identity(principal: Principal, via: str) -> Identity:
    return Identity(
        kind=principal.kind,
        subject=principal.subject,
        user_id=principal.user_id,
        staff=principal.staff,
        moderated_communities=sorted(principal.moderated),
        authenticated_by=via,
        scope=msgspec.UNSET if principal.scope is None else principal.scope,
        communities=(
            msgspec.UNSET
            if principal.scope is None
            else None
            if principal.communities is None
            else sorted(principal.communities)
        ),
    )


class AuthController(Controller):
    """Browser sessions established from a bearer token, and the caller's identity."""

    path = "/api/auth"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @post(
        "/session/",
        status_code=HTTP_201_CREATED,
        summary="Start a browser session from the bearer token: sets an HttpOnly session cookie",
        exclude_from_auth=True,
        guards=[auth_rate_limit],
    )
    async def sign_in(self, request: AnyRequest) -> Response[SessionCreated]:
        resources: Resources = request.app.state.resources
        token = bearer_token(request)
        if token is None:
            raise AuthenticationFailed(
                "send the token to start a session from as `Authorization: Bearer <token>`", invalid_token=False
            )
        if token.startswith(KEY_PREFIX):
            raise Forbidden("API keys do not open browser sessions: sign in with a JWT")
        settings = resources.settings
        principal, expires_at = verify_token(settings, token)
        session_id, session = await create_session(resources.redis, principal, settings.session_ttl, expires_at)
        lifetime = session_lifetime(settings.session_ttl, expires_at)
        cookies = [
            Cookie(
                key=SESSION_COOKIE, value=session_id, path="/", max_age=lifetime, httponly=True,
                samesite="lax", secure=settings.session_cookie_secure,
            ),
            Cookie(
                key=CSRF_COOKIE, value=session.csrf_token, path="/", max_age=lifetime, httponly=False,
                samesite="lax", secure=settings.session_cookie_secure,
            ),
        ]  # fmt: skip
        body = SessionCreated(_identity(principal, "token"), session.csrf_token, lifetime)
        return Response(body, status_code=HTTP_201_CREATED, cookies=cookies)

    @delete(
        "/session/",
        status_code=HTTP_204_NO_CONTENT,
        summary="End the browser session (log out)",
        # Expired copies of both cookies; no Secure flag needed to clear them (browsers accept it from HTTPS pages).
        response_cookies=[
            Cookie(key=name, value="", path="/", max_age=0, samesite="lax") for name in (SESSION_COOKIE, CSRF_COOKIE)
        ],
    )
    async def sign_out(self, request: AnyRequest) -> None:
        resources: Resources = request.app.state.resources
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            await delete_session(resources.redis, session_id)

    @get("/me/", summary="Who the caller is, as this service sees the token, API key or session",
         opt=for_keys("track", "read"))  # fmt: skip
    async def me(self, request: AnyRequest) -> Identity:
        return _identity(principal_of(request), str(request.scope.get("auth")))


KEY_ORDERING = Ordering(["created_at", "last_used_at", "name", "id"], default="-created_at")
_KEY_LIST = sql.SQL("SELECT {} FROM api_keys").format(columns(ApiKey))
_KEY_INSERT = sql.SQL(
    "INSERT INTO api_keys (name, scope, communities, prefix, secret_hash, created_by) "
    "VALUES (%(name)s, %(scope)s, %(communities)s, %(prefix)s, %(hash)s, %(by)s) RETURNING {}"
).format(columns(ApiKey))


class KeysController(Controller):
    """Long-lived API keys beside the JWTs (staff): created with a scope, listed, revoked at once."""

    path = "/api/keys"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [staff_only]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @post(
        "/",
        summary="Create an API key (`Authorization: Bearer ak_...`); the key is in this answer only",
        operation_class=json_body(ApiKeyCreate, "`name`, `scope` (`track` or `read`), optional `communities`"),
    )
    async def create_key(self, request: AnyRequest, resources: NamedDependency[Resources]) -> ApiKeyCreated:
        body = decode_body(await request.body(), ApiKeyCreate, ("id", "key", "prefix", "created_at"))
        key = new_key()
        communities = None if body.communities is None else sorted(set(body.communities))
        params = {"name": body.name, "scope": body.scope, "communities": communities, "prefix": key[:SHOWN],
                  "hash": digest(key), "by": principal_of(request).subject}  # fmt: skip
        async with resources.pool.connection() as conn:
            row = await fetch_one(conn, ApiKey, _KEY_INSERT, params)
        assert row is not None
        return ApiKeyCreated(**msgspec.structs.asdict(row), key=key)

    @get("/", summary="The API keys, newest first, with when each was last used (never the keys themselves)")
    async def list_keys(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        ordering: Annotated[str | None, QueryParameter(description=KEY_ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[ApiKey]:
        order = KEY_ORDERING.parse(ordering)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, _KEY_LIST, Where(), order, page, page_size, ApiKey)
        )
        return build_page(request, page, page_size, count, rows)

    @delete("/{key_id:int}/", summary="Revoke an API key, at once in every API process (again: still 204)")
    async def revoke_key(self, key_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            await resources.keys.revoke(conn, valid_id(key_id, "API key"))

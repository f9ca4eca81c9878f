"""Signing in and out of browser sessions, and who the caller is."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from service.auth.guards import principal_of
from service.auth.middleware import bearer_token
from service.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, create_session, delete_session, session_lifetime
from service.auth.tokens import Principal, verify_token
from service.core.errors import AuthenticationFailed
from service.web.limits import auth_rate_limit
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]


class Identity(msgspec.Struct, frozen=True):
    """The authenticated caller as this service sees it."""

    kind: str
    subject: str
    user_id: int | None
    staff: bool
    moderated_communities: list[int]
    authenticated_by: str


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

    @get("/me/", summary="Who the caller is, as this service sees the token or session")
    async def me(self, request: AnyRequest) -> Identity:
        return _identity(principal_of(request), str(request.scope.get("auth")))

"""The permission rules (README "Permissions"), as Litestar guards and checks handlers call with the ids they read.

Every rule raises `Forbidden` (403 naming the rule); none filters silently where a 403 is due.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.auth.tokens import Principal
from service.core.errors import Forbidden


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller (the authentication middleware guarantees one on every guarded route)."""
    user = connection.scope.get("user")
    if not isinstance(user, Principal):  # a route outside the middleware asked for a principal: a wiring bug
        raise RuntimeError(f"no authenticated principal on {connection.url.path}")
    return user


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def guard(rule: Callable[[Principal, ASGIConnection[Any, Any, Any, Any]], None]) -> Guard:
    """A permission rule as a Litestar guard. OPTIONS requests pass without a principal: the authentication
    middleware does not authenticate them (CORS preflights carry no credentials), and the answer Litestar
    gives them (204 with the Allow header) reveals nothing a rule protects."""

    def check(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method") != "OPTIONS":
            rule(principal_of(connection), connection)

    check.__name__ = check.__qualname__ = rule.__name__
    check.__doc__ = rule.__doc__
    return check


@guard
def staff_only(principal: Principal, _: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Guard: staff only (CRUD writes, task runs, platform-wide reports)."""
    if not principal.staff:
        raise Forbidden("staff only")


def require_community_reader(principal: Principal, community_id: int) -> None:
    """Community and geo reports: staff, or a moderator of that community."""
    if not (principal.staff or principal.moderates(community_id)):
        raise Forbidden(f"reports of community {community_id} are for staff and its moderators")


def require_self_or_staff(principal: Principal, user_id: int | None, what: str) -> None:
    """Per-user data (user analytics, error logs): the user themself, or staff."""
    if principal.staff:
        return
    if user_id is None or user_id != principal.user_id:
        raise Forbidden(f"{what} of other users are for staff only")


def own_user_scope(principal: Principal, requested: int | None, what: str) -> int | None:
    """The user a list is restricted to: staff see what they ask for; anyone else only themself
    (asking for another user is a 403, not an empty page)."""
    if principal.staff:
        return requested
    if requested is not None and requested != principal.user_id:
        raise Forbidden(f"{what} of other users are for staff only")
    if principal.user_id is None:
        raise Forbidden(f"{what} are for users and staff, not for service tokens")
    return principal.user_id


def require_may_track_for(principal: Principal, user_id: int | None) -> None:
    """Tracking: staff, service tokens and `track` API keys track on behalf of any user; a user tracks only their
    own activity."""
    if principal.staff or principal.is_service or principal.scope == "track":
        return
    if user_id is not None and user_id != principal.user_id:
        raise Forbidden("a user may track only their own activity (user_id must be the token's subject)")


@guard
def staff_or_service(principal: Principal, _: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Guard: staff or a service token (backends reporting system metrics)."""
    if not (principal.staff or principal.is_service):
        raise Forbidden("staff and service tokens only")


@guard
def community_reader(principal: Principal, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Guard of `/{community_id}/` report routes: staff, or a moderator of that community."""
    require_community_reader(principal, int(connection.path_params["community_id"]))


def require_report_reader(principal: Principal, report_scope: str) -> None:
    """Stored reports: a community's for staff and its moderators, platform-wide ones for staff."""
    kind, _, community = report_scope.partition(":")
    if kind == "community" and community.isdigit():
        require_community_reader(principal, int(community))
    elif not principal.staff:
        raise Forbidden("platform-wide reports are for staff only")

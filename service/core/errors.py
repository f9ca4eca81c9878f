"""Domain exceptions and their one mapping to HTTP answers (JSON bodies, never a stack trace)."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import psycopg
import redis
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisClusterException

log = logging.getLogger(__name__)

# What a failing Redis raises: redis-py's errors, and its cluster client's own (no node reachable, a slot no
# master serves), which are not RedisErrors.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


def first_line(exc: BaseException) -> str:
    """An exception as one line for logs and health checks (driver messages run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FieldError(msgspec.Struct):
    """One problem with the input: the field (a dotted path, `[i]` for list items) and what is wrong."""

    field: str
    message: str


class InvalidInput(Exception):
    """The request's input is wrong; answered 400 with every problem found."""

    def __init__(self, errors: list[FieldError], detail: str = "Invalid input") -> None:
        super().__init__(detail)
        self.errors = errors
        self.detail = detail


class NotFound(LookupError):
    """The thing asked for does not exist; answered 404."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthenticationFailed(Exception):
    """No acceptable credentials; answered 401 with `reason` (one line, safe to show the client)."""

    def __init__(self, reason: str, *, invalid_token: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invalid_token = invalid_token  # False: nothing was sent at all (no error code in WWW-Authenticate)


class TooManyRequests(Exception):
    """A rate limit is exhausted; answered 429 with Retry-After."""

    def __init__(self, detail: str, retry_after: int, limit: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.limit = limit


class Forbidden(PermissionError):
    """The caller is authenticated but may not do this; answered 403 naming the rule."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Conflict(Exception):
    """The write collides with existing data (a unique key); answered 409 naming the conflict."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class Unavailable(Exception):
    """A dependency cannot take the request right now; answered 503 with Retry-After."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_IN_MESSAGE = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`$")


def field_error(exc: msgspec.ValidationError, prefix: str = "") -> FieldError:
    """msgspec's `Expected int, got str - at $.a.b` as FieldError(field="a.b", message="Expected int, got str")."""
    match = _AT.match(str(exc))
    assert match is not None
    message, path = match["message"], (match["path"] or "").lstrip(".")
    named = _FIELD_IN_MESSAGE.match(message)
    if named:  # the field is named in the message, the path is that of the object holding it
        path = f"{path}.{named['name']}" if path else named["name"]
        message = "required field is missing" if "missing" in message else "unknown field"
    field = f"{prefix}.{path}" if prefix and path and not path.startswith("[") else f"{prefix}{path}"
    return FieldError(field=field or "body", message=message)


def _body(status_code: int, detail: str, **extra: object) -> dict[str, object]:
    return {"status_code": status_code, "detail": detail, **extra}


def _invalid_input(request: Request[Any, Any, Any], exc: InvalidInput) -> Response[dict[str, object]]:
    return Response(_body(HTTP_400_BAD_REQUEST, exc.detail, errors=exc.errors), status_code=HTTP_400_BAD_REQUEST)


def _not_found(request: Request[Any, Any, Any], exc: NotFound) -> Response[dict[str, object]]:
    return Response(_body(HTTP_404_NOT_FOUND, exc.detail), status_code=HTTP_404_NOT_FOUND)


def _unauthenticated(request: Request[Any, Any, Any], exc: AuthenticationFailed) -> Response[dict[str, object]]:
    challenge = "Bearer"
    if exc.invalid_token:
        description = exc.reason.replace("\\", "").replace('"', "'")
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
    return Response(
        _body(HTTP_401_UNAUTHORIZED, exc.reason),
        status_code=HTTP_401_UNAUTHORIZED,
        headers={"WWW-Authenticate": challenge},
    )


def _too_many(request: Request[Any, Any, Any], exc: TooManyRequests) -> Response[dict[str, object]]:
    return Response(
        _body(HTTP_429_TOO_MANY_REQUESTS, exc.detail),
        status_code=HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(exc.retry_after), "RateLimit-Limit": str(exc.limit)},
    )


def _forbidden(request: Request[Any, Any, Any], exc: Forbidden) -> Response[dict[str, object]]:
    return Response(_body(HTTP_403_FORBIDDEN, exc.detail), status_code=HTTP_403_FORBIDDEN)


def _conflict(request: Request[Any, Any, Any], exc: Conflict) -> Response[dict[str, object]]:
    return Response(_body(HTTP_409_CONFLICT, exc.detail, errors=exc.errors), status_code=HTTP_409_CONFLICT)


def _unavailable(request: Request[Any, Any, Any], exc: Unavailable) -> Response[dict[str, object]]:
    return Response(
        _body(HTTP_503_SERVICE_UNAVAILABLE, exc.detail),
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(exc.retry_after)},
    )


# How Litestar says a required parameter was not sent (it names it only in the text).
_MISSING = re.compile(r"Missing required (query|header|cookie) parameter '([^']+)'")


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, object]]:
    """Litestar's own validation (query and path parameters) in the same shape as ours."""
    errors = [
        FieldError(field=str(item.get("key") or "body"), message=str(item.get("message", "")))
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    if not errors and (missing := _MISSING.match(str(exc.detail))):
        errors = [FieldError(field=missing.group(2), message=f"required {missing.group(1)} parameter")]
    return Response(
        _body(HTTP_400_BAD_REQUEST, "Invalid input", errors=errors or [FieldError("body", str(exc.detail))]),
        status_code=HTTP_400_BAD_REQUEST,
    )


def _storage_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """PostgreSQL or Redis down under a read or admin endpoint: a 503 the client can retry, not a 500."""
    which = "Redis" if isinstance(exc, REDIS_ERRORS) else "PostgreSQL"
    log.warning("%s unavailable on %s %s: %s", which, request.method, request.url.path, exc)
    return _unavailable(request, Unavailable(f"{which} is unavailable; retry later", retry_after=5))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    body = _body(exc.status_code, exc.detail)
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    InvalidInput: _invalid_input,
    NotFound: _not_found,
    AuthenticationFailed: _unauthenticated,
    TooManyRequests: _too_many,
    Forbidden: _forbidden,
    Conflict: _conflict,
    Unavailable: _unavailable,
    ValidationException: _validation_error,
    psycopg.OperationalError: _storage_unavailable,
    PoolTimeout: _storage_unavailable,
    redis.RedisError: _storage_unavailable,
    RedisClusterException: _storage_unavailable,
    HTTPException: _http_error,
}

"""Domain exceptions and their one mapping to HTTP answers (JSON bodies, never a stack trace)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

log = logging.getLogger(__name__)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    body: dict[str, object] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(
        {"status_code": HTTP_500_INTERNAL_SERVER_ERROR, "detail": "Internal server error"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_error,
    Exception: _internal_error,
}

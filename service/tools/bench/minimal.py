"""The HTTP baseline of `analytics bench ingest`: a Litestar app with one POST route that only answers 202."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

TRACK_PATH = "/api/community-analytics/track/"


@post(TRACK_PATH, status_code=HTTP_202_ACCEPTED)
async def track(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Read the body, decode nothing, answer 202 with a small JSON object."""
    await request.body()
    return {"status": "accepted"}


@get("/health")
async def health() -> dict[str, str]:
    """Liveness, polled by the bench until the server answers."""
    return {"status": "ok"}


app = Litestar(route_handlers=[track, health], logging_config=None, openapi_config=None)

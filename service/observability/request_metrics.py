"""Request timing: every HTTP request counted and timed by method, route template and status.

It wraps the application's whole ASGI handler rather than being a Litestar middleware: Litestar runs
middlewares only around matched route handlers, so 404s, 405s and failures before routing would go uncounted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.exposition import process_stopped
from service.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, process_started

UNMATCHED = "unmatched"
# Any other method string a client sends becomes "other": label values must stay few.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(scope: Scope) -> str:
    """The route template that served the request (`unmatched` when none did), as the routes are declared."""
    template = scope.get("path_template")
    if not template:
        return UNMATCHED
    # Litestar's templates lose the trailing slash; every /api/ route is declared (and documented) with one.
    return template + "/" if template.startswith("/api/") and not template.endswith("/") else template


Finished = Callable[[Scope, float], None]
"""Told of every finished HTTP request: its scope (with the route and the caller) and its duration in seconds."""


class RequestMetrics:
    """ASGI wrapper counting and timing each HTTP request once its answer is sent (or it failed)."""

    def __init__(self, app: ASGIApp, finished: Sequence[Finished] = ()) -> None:
        self.app = app
        self.finished = tuple(finished)
        # The label children by (method, route, status): looking them up costs as much as updating them.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the application fails before starting a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            duration = time.perf_counter() - started
            sent: str = scope["method"]
            method = sent if sent in _METHODS else "other"
            route = route_of(scope)
            children = self._children.get((method, route, status))
            if children is None:
                children = (HTTP_REQUESTS.labels(method, route, str(status)), HTTP_DURATION.labels(method, route))
                self._children[(method, route, status)] = children
            children[0].inc()
            children[1].observe(duration)
            for finished in self.finished:
                finished(scope, duration)


def instrument(app: Litestar, finished: Sequence[Finished] = ()) -> Litestar:
    """Count and time every request of `app` (and tell `finished` of each), and record each serving process's
    start (and normal stop)."""
    app.asgi_handler = RequestMetrics(app.asgi_handler, finished)
    app.on_startup.append(process_started)
    app.on_shutdown.append(process_stopped)
    return app

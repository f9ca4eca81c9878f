"""HEAD on every GET route (RFC 9110, 9.3.2): answered as the GET would be, headers included, without the body.

Litestar answers HEAD only where a route declares it, so every GET route answered 405. This ASGI wrapper routes
a HEAD request as GET and drops the body from what is sent; the scope says HEAD again once the answer is out, so
request metrics count it as HEAD.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI wrapper: HEAD requests served by the GET handlers, bodies dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # only the last part is sent, empty, to end the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        scope["method"] = "GET"
        try:
            await self.app(scope, receive, without_body)
        finally:
            scope["method"] = "HEAD"

"""HEAD on every GET route (RFC 9110, 9.3.2): answered as the GET would be, headers included, without the body.

Litestar answers HEAD only where a route declares it, so every GET route answered 405. This ASGI wrapper routes
a HEAD request as GET and drops the body from what is sent; the scope says HEAD again once the answer is out, so
request metrics count it as HEAD. A streamed answer (an export, the live stream, which never ends) ends as soon
as its headers are out: the GET handler is stopped at its first part.
"""

from __future__ import annotations

import asyncio
import contextlib

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

        headers_out = asyncio.Event()

        async def without_body(message: Message) -> None:
            if headers_out.is_set():
                return
            if message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"", "more_body": False}
                await send(message)
                headers_out.set()  # the answer is complete: a streamed body is not waited for
                return
            await send(message)

        scope["method"] = "GET"
        answer = asyncio.ensure_future(self.app(scope, receive, without_body))
        ended = asyncio.ensure_future(headers_out.wait())
        try:
            await asyncio.wait([answer, ended], return_when=asyncio.FIRST_COMPLETED)
            if not answer.done():  # a streamed body after the headers: stop producing it
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answer
            else:
                answer.result()  # the handler's own exception, as without this wrapper
        finally:
            ended.cancel()
            scope["method"] = "HEAD"

"""`analytics ingest`: the ingest worker process.

The consumer-group worker (XREADGROUP -> COPY -> ack) is built by the tracking-ingest issue. Until then this
process only proves its place in the supervision tree: it starts, checks its servers, logs, and stops on
SIGTERM / SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading

import redis

from service.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings) -> None:
    """Wait for a stop signal; the stream consumer replaces this body."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_timeout)
    try:
        client.ping()
    finally:
        client.close()
    log.warning("ingest worker: no stream consumer yet (tracking ingest is not built); idling until stopped")
    stop.wait()
    log.info("ingest worker stopped")

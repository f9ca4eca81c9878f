"""Live state in Redis: the keys, spelled here alone, and the windows the live figures use.

Every key but the stream expires on its own:

    analytics:presence:{community}            ZSET  user -> last seen (unix s); members of the last 5 minutes
    analytics:peak:{YYYY-MM-DD}               HASH  community -> highest online count seen that day (UTC)
    analytics:activity:{community}:{minute}   STR   events in that minute (unix s // 60), for the activity score
    analytics:counts:{YYYY-MM-DD}             HASH  `<kind>_count` -> events that day, platform-wide
    analytics:counts:{YYYY-MM-DD}:{community} HASH  `<kind>_count` and `events` -> that day, one community
    analytics:seen:{event id}                 STR   a client-chosen event id accepted in the last day
    analytics:requests:{YYYY-MM-DD}           HASH  API requests that day: `count`, `duration_ms_sum`, and
                                                     `user:{id}` -> requests of that user
    analytics:session:{sha256 of session id}  STR   a browser session (msgspec JSON), sliding expiry SESSION_TTL
    analytics:ratelimit:{bucket}:{who}:{min}  STR   requests of one principal in one minute (rate limits)
    analytics:streams:{who}                   ZSET  live stream id -> last heartbeat (unix s) of one principal
    analytics:events                          STREAM accepted events, one entry per flush (field i: kind byte +
                                                     msgpack record), read by the `ingest` consumer group
    analytics:scratch:online:{random}         ZSET  union of the presence sets while /metrics counts distinct members
                                                     online (created and deleted in one transaction)

Requests arriving together share one EVALSHA of `_TRACK` (`LiveWriter`), which updates the live keys and
appends their events to the stream as one entry, atomically.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

STREAM = "analytics:events"
GROUP = "ingest"
DEAD_LETTERS = "analytics:events:dead"
KIND_ACTIVITY = b"a"  # first byte of a stream entry field: what the msgpack record after it is
KIND_GEO = b"g"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PRESENCE_WINDOW = 300  # seconds: "online" means any activity in the last 5 minutes
ACTIVITY_WINDOW = 900  # seconds: the activity score compares the last 15 minutes ...
SCORE_HISTORY_DAYS = 7  # ... with the average 15 minutes of the previous 7 days
DAY_TTL = 9 * 86400  # daily keys outlive the 7-day history and a late snapshot


def presence_key(community_id: int) -> str:
    return f"analytics:presence:{community_id}"


def peak_key(day: str) -> str:
    return f"analytics:peak:{day}"


def minute_key(community_id: int, minute: int) -> str:
    return f"analytics:activity:{community_id}:{minute}"


def counts_key(day: str, community_id: int | None = None) -> str:
    return f"analytics:counts:{day}" if community_id is None else f"analytics:counts:{day}:{community_id}"


def requests_key(day: date) -> str:
    """The hash of one day's API requests, `count` and `duration_ms_sum` (written by the request tracking)."""
    return f"analytics:requests:{day.isoformat()}"


def session_key(session_id: str) -> str:
    """A session's key: the id hashed, so a copy of the Redis data holds no usable session ids."""
    return f"analytics:session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def streams_key(who: str) -> str:
    """The open live streams of one principal (`kind:subject`), scored by their last heartbeat."""
    return f"analytics:streams:{who}"


def rate_key(bucket: str, who: str, window: int) -> str:
    """The counter of one principal's requests of one kind in one fixed window (`window` = unix time // 60)."""
    return f"analytics:ratelimit:{bucket}:{who}:{window}"


@lru_cache(maxsize=64)
def _day_of(day_number: int) -> str:
    return (EPOCH + timedelta(days=day_number)).strftime("%Y-%m-%d")


def utc_day(ts: float) -> str:
    return _day_of(int(ts // 86400))

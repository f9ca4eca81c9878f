"""Live state in Redis: the keys, spelled here alone, and the windows the live figures use.

Live state is split into ingest shards (INGEST_SHARDS): a community's keys and the stream its events go to carry
the shard's hash tag, so that everything one tracking call touches sits in one hash slot of a Redis Cluster.
`P` below is the shard's prefix: `analytics:{<tag>}:`, or plain `analytics:` for the one shard of a single
Redis (the names before sharding). Every key but the streams expires on its own:

    P presence:{community}            ZSET  user -> last seen (unix s); members of the last 5 minutes
    P online                          ZSET  community -> its last activity (unix s): the shard's live communities
    P peak:{YYYY-MM-DD}               HASH  community -> highest online count seen that day (UTC)
    P activity:{community}:{minute}   STR   events in that minute (unix s // 60), for the activity score
    P counts:{YYYY-MM-DD}             HASH  `<kind>_count` -> events that day (the platform's: summed over shards)
    P counts:{YYYY-MM-DD}:{community} HASH  `<kind>_count` and `events` -> that day, one community
    P seen:{event id}                 STR   a client-chosen event id accepted in the last day
    P events                          STREAM accepted events, one entry per flush (field i: kind byte +
                                             msgpack record), read by the `ingest` consumer group
    P events:dead                     STREAM records the ingest worker could never store, with the reason

and outside the shards (one key per operation):

    analytics:requests:{YYYY-MM-DD}           HASH  API requests that day: `count`, `duration_ms_sum`, and
                                                     `user:{id}` -> requests of that user
    analytics:session:{sha256 of session id}  STR   a browser session (msgspec JSON), sliding expiry SESSION_TTL
    analytics:ratelimit:{bucket}:{who}:{min}  STR   requests of one principal in one minute (rate limits)
    analytics:streams:{who}                   ZSET  live stream id -> last heartbeat (unix s) of one principal
    analytics:apikey:{sha256 of the key}      STR   an API key's principal (msgspec JSON), `revoked` or `unknown`

Requests arriving together share one EVALSHA of `_TRACK` per shard (`LiveWriter`), which updates the shard's live
keys and appends their events to the shard's stream as one entry, atomically.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from uuid import UUID

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

GROUP = "ingest"
KIND_ACTIVITY = b"a"  # first byte of a stream entry field: what the msgpack record after it is
KIND_GEO = b"g"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PRESENCE_WINDOW = 300  # seconds: "online" means any activity in the last 5 minutes
ACTIVITY_WINDOW = 900  # seconds: the activity score compares the last 15 minutes ...
SCORE_HISTORY_DAYS = 7  # ... with the average 15 minutes of the previous 7 days
DAY_TTL = 9 * 86400  # daily keys outlive the 7-day history and a late snapshot


class Shard:
    """One ingest shard: the prefix of its keys (all in one hash slot when it has a tag)."""

    __slots__ = ("dead_letters", "index", "online", "prefix", "stream")

    def __init__(self, index: int, tag: str | None) -> None:
        self.index = index
        self.prefix = f"analytics:{{{tag}}}:" if tag is not None else "analytics:"
        self.stream = self.prefix + "events"
        self.dead_letters = self.prefix + "events:dead"
        self.online = self.prefix + "online"

    def presence_key(self, community_id: int) -> str:
        return f"{self.prefix}presence:{community_id}"

    def peak_key(self, day: str) -> str:
        return f"{self.prefix}peak:{day}"

    def minute_key(self, community_id: int, minute: int) -> str:
        return f"{self.prefix}activity:{community_id}:{minute}"

    def counts_key(self, day: str, community_id: int | None = None) -> str:
        base = f"{self.prefix}counts:{day}"
        return base if community_id is None else f"{base}:{community_id}"

    def __repr__(self) -> str:
        return f"Shard({self.index}, {self.prefix!r})"


class Shards:
    """The ingest shards: which one holds a community's live state and receives its events.

    A community's shard is `community_id mod count`; an event without a community goes by its event id (a retry
    carries the same id, so the same shard recognises it). The tags are chosen so that shard k's hash slot lies
    in the k-th of `count` equal ranges of the 16,384 slots: a cluster whose masters hold equal slot ranges (what
    `redis-cli --cluster create` makes) gets count / masters shards on each master.
    """

    def __init__(self, count: int, tagged: bool) -> None:
        self.count = count
        self.all = [Shard(k, _spread_tag(k, count) if tagged or count > 1 else None) for k in range(count)]

    def of(self, community_id: int) -> Shard:
        return self.all[community_id % self.count]

    def of_event(self, community_id: int | None, event_id: UUID) -> Shard:
        if community_id is not None:
            return self.all[community_id % self.count]
        return self.all[event_id.int % self.count]


@lru_cache(maxsize=8)
def shards(count: int, cluster: bool) -> Shards:
    """The shard layout for INGEST_SHARDS = `count` (tagged whenever more than one, or on a cluster)."""
    return Shards(count, cluster)


def _spread_tag(k: int, count: int) -> str:
    """The first of `k`, `k.1`, `k.2`, ... whose hash slot falls in the k-th of `count` equal slot ranges."""
    low, high = k * REDIS_CLUSTER_HASH_SLOTS // count, (k + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    for attempt in itertools.count():
        tag = f"s{k}" if attempt == 0 else f"s{k}.{attempt}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    raise AssertionError("unreachable")


def requests_key(day: date) -> str:
    """The hash of one day's API requests, `count` and `duration_ms_sum` (written by the request tracking)."""
    return f"analytics:requests:{day.isoformat()}"


def api_key_key(digest: bytes) -> str:
    """Where an API key's principal is cached, by the SHA-256 of the key (the key itself never reaches Redis)."""
    return f"analytics:apikey:{digest.hex()}"


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

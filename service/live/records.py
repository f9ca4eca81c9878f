"""Accepted events as they travel through the ingest stream into the raw tables, and their encoding there."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.live.keys import KIND_ACTIVITY, KIND_GEO


class ActivityRecord(msgspec.Struct, array_like=True, frozen=True):
    """An accepted activity event as it travels through the stream into `activity_events`."""

    time: datetime
    event_id: UUID
    community_id: int | None
    user_id: int | None
    activity_type: str
    session_id: str | None
    duration: float | None
    section: str | None
    metadata: dict[str, Any]


class GeoRecord(msgspec.Struct, array_like=True, frozen=True):
    """An accepted geo access decision as it travels into `geo_access_events` (no IP address)."""

    time: datetime
    event_id: UUID
    community_id: int
    user_id: int | None
    country: str | None
    country_code: str | None
    region: str | None
    city: str | None
    access_result: str
    restriction_scope: str | None
    is_traveler: bool | None  # None: the worker infers it from the user's home country


_encoder = msgspec.msgpack.Encoder()


def encode(record: ActivityRecord | GeoRecord) -> bytes:
    """A record as stored in a stream entry field: its kind byte, then msgpack."""
    return (KIND_ACTIVITY if isinstance(record, ActivityRecord) else KIND_GEO) + _encoder.encode(record)

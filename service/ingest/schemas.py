"""Tracking request bodies (what clients send) and stream records (what the ingest worker writes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from service.core.errors import FieldError

Id = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]

ActivityType = Literal[
    "view", "join", "leave", "post", "comment", "like", "share", "message", "session_start", "session_end",
    "page_view", "content_view", "register", "follow", "unfollow", "recommendation_shown", "recommendation_clicked",
]  # fmt: skip
# Platform-level activity, accepted by `POST /api/events/` with or without a community.
PlatformActivityType = Literal[
    "register", "page_view", "content_view", "post", "comment", "like", "share", "follow", "unfollow",
    "session_start", "session_end", "recommendation_shown", "recommendation_clicked",
]  # fmt: skip
AccessResult = Literal["allowed", "blocked"]
RestrictionScope = Literal["country", "region", "city"]


class TrackActivity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /api/community-analytics/track/`: one member's activity in a community."""

    community_id: Id
    activity_type: ActivityType
    user_id: Id | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)  # `section` (text), `duration` (seconds), ...
    session_id: Text | None = None
    event_id: UUID | None = None  # sent again on retries: the event is stored once
    timestamp: AwareDatetime | None = None  # when it happened; default: when it was received


class PlatformEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One item of `POST /api/events/`: platform-level activity, a community optional."""

    activity_type: PlatformActivityType
    user_id: Id | None = None
    community_id: Id | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    session_id: Text | None = None
    event_id: UUID | None = None
    timestamp: AwareDatetime | None = None


class Location(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where an access came from; `country` may be a name or an ISO 3166 alpha-2 code."""

    country: Text
    country_code: Annotated[str, Meta(pattern="^[A-Za-z]{2}$")] | None = None
    region: Text | None = None
    city: Text | None = None


class TrackGeo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /api/geo-analytics/track/`: a geo-restriction decision the platform made."""

    community_id: Id
    access_result: AccessResult
    user_id: Id | None = None
    location: Location | None = None  # or `ip`, or neither: then the request's client address is looked up
    ip: Annotated[str, Meta(max_length=64)] | None = None
    restriction_scope: RestrictionScope | None = None
    is_traveler: bool | None = None  # default: inferred from the user's home country
    event_id: UUID | None = None
    timestamp: AwareDatetime | None = None


class ItemResult(msgspec.Struct, omit_defaults=True):
    """The outcome of one item of a batch, in request order."""

    index: int
    status: Literal["accepted", "rejected"]
    event_id: UUID | None = None
    errors: list[FieldError] | None = None


class Accepted(msgspec.Struct):
    """Answer to a single tracking request (202)."""

    status: Literal["accepted"]
    event_id: UUID


class BatchAccepted(msgspec.Struct):
    """Answer to a batch tracking request (202 when any item was accepted, else 400)."""

    accepted: int
    rejected: int
    results: list[ItemResult]

"""Bodies of `/api/annotations/`: a stored annotation, and what a client may write (mirroring the table's checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from service.core.listing import BIGINT_MAX

Source = Literal["api", "task-schedule", "rollup-refresh"]
TAG = "^[a-z0-9][a-z0-9_.:-]{0,49}(?!\n)$"  # `$` alone also matches before a final newline
# The times an annotation may mark (PostgreSQL stores more, but Python reads back only years 1 to 9999).
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)

Tag = Annotated[str, Meta(pattern=TAG, description="lower case letters, digits and `_.:-`, at most 50 characters")]


class Annotation(msgspec.Struct, kw_only=True):
    """One annotation (a row of `annotations`)."""

    id: int
    time: datetime
    time_end: datetime | None  # a region when set
    text: str
    tags: list[str]
    community_id: int | None  # null: the whole platform
    source: Source  # `api`, or what the service wrote it for
    created_by: str | None  # who wrote it through the API (a user's id, a service's name)
    created_at: datetime


class AnnotationCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST body of `/api/annotations/`."""

    time: Annotated[datetime, Meta(tz=True, description="when it happened (with a time zone)")]
    time_end: (
        Annotated[datetime, Meta(tz=True, description="for a region: when it ended (on or after `time`)")] | None
    ) = None
    text: Annotated[str, Meta(min_length=1, max_length=2000, description="what happened, 1 to 2000 characters")]
    tags: Annotated[list[Tag], Meta(max_length=20, description="at most 20 tags")] = msgspec.field(default_factory=list)
    community_id: Annotated[int, Meta(ge=1, le=BIGINT_MAX, description="the community it is about")] | None = None

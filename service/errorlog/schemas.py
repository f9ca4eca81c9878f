"""Bodies of `/api/errors/` and `/api/error-groups/`: the stored rows and what a client may write.

The write Struct (a PUT body) has every writable field required; the POST and PATCH bodies are derived from it
(`service.core.listing.variant`). Constraints mirror the table's CHECKs (db/migrations/0001_core.sql), so bad values
are named here and the database check is the last line only; `ip_address` is checked as an IP address by
`records.ip_address`, which the data layer applies to every write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from service.core.listing import Aliased, variant

BIGINT_MAX = 2**63 - 1

Level = Literal["debug", "info", "warning", "error", "critical"]  # by severity, as grouping.LEVELS
GroupStatus = Literal["unresolved", "resolved", "regressed"]
UserId = Annotated[int, Meta(ge=1, le=BIGINT_MAX)]
Message = Annotated[str, Meta(min_length=1, max_length=100_000)]
StackTrace = Annotated[str, Meta(max_length=1_000_000)]
Url = Annotated[str, Meta(max_length=8_192)]
Method = Annotated[str, Meta(pattern="^[A-Z]{1,16}$", description="HTTP method, upper case")]
IpAddress = Annotated[str, Meta(max_length=64, description="IPv4 or IPv6 address")]
UserAgent = Annotated[str, Meta(max_length=2_048)]


class ErrorLog(Aliased, kw_only=True):
    """One error log (a row of `error_logs`); `fingerprint` and `group_id` are set when it is recorded."""

    ALIASES: ClassVar[dict[str, str]] = {"user": "user_id"}

    id: int
    user_id: int | None
    user: Annotated[int | None, Meta(description="The documented name of `user_id` (the same id)")]
    level: Level
    message: str
    stack_trace: str | None
    url: str | None
    method: str | None
    ip_address: str | None
    user_agent: str | None
    extra_data: dict[str, Any]
    created_at: datetime
    is_resolved: bool
    resolved_at: datetime | None  # set when is_resolved becomes true, cleared when it becomes false
    fingerprint: str | None
    group_id: int | None


class ErrorLogWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT body of `/api/errors/{id}/`: every writable field of a log (null where the column allows it)."""

    user_id: UserId | None
    level: Level
    message: Message
    stack_trace: StackTrace | None
    url: Url | None
    method: Method | None
    ip_address: IpAddress | None
    user_agent: UserAgent | None
    extra_data: dict[str, Any]
    is_resolved: bool


LOG_READ_ONLY = frozenset({"id", "created_at", "resolved_at", "fingerprint", "group_id"})
# POST: `level` and `message` are required; the rest defaults to null, `extra_data` {}, unresolved, and
# `user_id` to the caller's own id for a regular user.
ErrorLogCreate = variant(ErrorLogWrite, "ErrorLogCreate", required={"level", "message"})
ErrorLogPatch = variant(ErrorLogWrite, "ErrorLogPatch")


class ErrorGroup(msgspec.Struct, kw_only=True):
    """A group of error logs sharing a fingerprint (a row of `error_groups`)."""

    id: int
    fingerprint: str
    level: Level  # the most severe level seen
    sample_message: str  # the message of the log that created the group (up to 2,000 characters)
    top_frame: str | None  # `file:function` of the innermost frame
    occurrences: int
    users_affected: int  # distinct users among the group's logs
    first_seen: datetime
    last_seen: datetime
    status: GroupStatus
    resolved_at: datetime | None  # when it was last resolved (kept when it regresses)


class ErrorGroupDetail(ErrorGroup, kw_only=True):
    """`GET /api/error-groups/{id}/`: the group and its most recent logs, newest first."""

    recent_logs: list[ErrorLog]

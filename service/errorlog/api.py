"""`/api/errors/` (error logs: CRUD, resolve) and `/api/error-groups/` (groups of one error: list, detail, resolve).

Every write goes through `service.errorlog.records`, so a log is always in the group of its fingerprint and the
groups' counts stay right. Anyone authenticated may record an error (a regular user only as themself) and read
their own logs; everything else is for staff.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.status_codes import HTTP_200_OK

from service.auth.guards import own_user_scope, principal_of, require_self_or_staff, staff_only
from service.core.errors import Forbidden
from service.core.listing import (
    DEFAULT_PAGE_SIZE,
    Ordering,
    Page,
    PageNumber,
    PageSize,
    Where,
    build_page,
    decode_body,
    fetch_page,
    sent_fields,
)
from service.core.openapi import json_body
from service.core.rows import aware, ordered
from service.errorlog import records
from service.errorlog.records import GROUP_LIST, LOG_LIST, NewErrorLog
from service.errorlog.schemas import (
    BIGINT_MAX,
    LOG_READ_ONLY,
    ErrorGroup,
    ErrorGroupDetail,
    ErrorLog,
    ErrorLogCreate,
    ErrorLogPatch,
    ErrorLogWrite,
    GroupStatus,
    Level,
)
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]

# `level` orders by severity (debug < info < warning < error < critical): LOG_LIST computes that rank.
LOG_ORDERING = Ordering({"created_at": "created_at", "level": "severity", "id": "id"}, default="-created_at")
GROUP_ORDERING = Ordering(["last_seen", "first_seen", "occurrences", "users_affected", "id"], default="-last_seen")


class ErrorLogsController(Controller):
    """Error logs: recorded by anyone authenticated, read by their user or staff, changed by staff."""

    path = "/api/errors"
    tags = ["errors"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Error logs, newest first; a user who is not staff sees only their own")
    async def list_errors(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        level: FromQuery[Level | None] = None,
        is_resolved: Annotated[bool | None, QueryParameter(description="Resolved (true) or open (false) logs")] = None,
        user: Annotated[int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="Only this user's logs")] = None,
        group: Annotated[int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="Only this group's logs")] = None,
        created_since: Annotated[
            datetime | None, QueryParameter(description="Created at or after (ISO 8601; no offset: UTC)")
        ] = None,
        created_until: Annotated[
            datetime | None, QueryParameter(description="Created at or before (ISO 8601; no offset: UTC)")
        ] = None,
        ordering: Annotated[
            str | None, QueryParameter(description=LOG_ORDERING.description + "; `level` orders by severity")
        ] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[ErrorLog]:
        user = own_user_scope(principal_of(request), user, "error logs")
        since, until = aware(created_since), aware(created_until)
        ordered(since, until, "created_since", "created_until")
        order = LOG_ORDERING.parse(ordering)
        where = Where()
        where.optional("level = {}", level)
        where.optional("is_resolved = {}", is_resolved)
        where.optional("user_id = {}", user)
        where.optional("group_id = {}", group)
        where.optional("created_at >= {}", since)
        where.optional("created_at <= {}", until)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, LOG_LIST, where, order, page, page_size, ErrorLog)
        )
        return build_page(request, page, page_size, count, rows)

    @post(
        "/",
        summary="Record an error log (grouped at once); a user who is not staff records only their own",
        operation_class=json_body(ErrorLogCreate, "`level`, `message` and any other writable field", ErrorLog.ALIASES),
    )
    async def create_error(self, request: AnyRequest, resources: NamedDependency[Resources]) -> ErrorLog:
        sent = sent_fields(decode_body(await request.body(), ErrorLogCreate, LOG_READ_ONLY, ErrorLog.ALIASES))
        principal = principal_of(request)
        user_id = sent.get("user_id")  # sent as `user_id` or as its documented name `user` (decode_body)
        if not (principal.staff or principal.is_service):
            if user_id is not None and user_id != principal.user_id:
                raise Forbidden(
                    "a user may record only their own error logs (user_id, or user, must be the token's subject)"
                )
            user_id = principal.user_id
        new = NewErrorLog(**{**sent, "user_id": user_id})
        async with resources.pool.connection() as conn:
            return await records.record_error(conn, new)

    @get("/{log_id:int}/", summary="One error log (its user or staff)")
    async def get_error(
        self, log_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> ErrorLog:
        log = await resources.reads.run(lambda conn: records.get_log(conn, log_id))
        require_self_or_staff(principal_of(request), log.user_id, "error logs")
        return log

    @put(
        "/{log_id:int}/",
        summary="Replace an error log's writable fields (grouped again from its message and stack trace)",
        guards=[staff_only],
        operation_class=json_body(ErrorLogWrite, "Every writable field", ErrorLog.ALIASES),
    )
    async def replace_error(
        self, log_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> ErrorLog:
        body = decode_body(await request.body(), ErrorLogWrite, LOG_READ_ONLY, ErrorLog.ALIASES)
        async with resources.pool.connection() as conn:
            return await records.update_log(conn, log_id, sent_fields(body))

    @patch(
        "/{log_id:int}/",
        summary="Change some fields of an error log (grouped again when the message or stack trace change)",
        guards=[staff_only],
        operation_class=json_body(ErrorLogPatch, "The fields to change", ErrorLog.ALIASES),
    )
    async def patch_error(
        self, log_id: FromPath[int], request: AnyRequest, resources: NamedDependency[Resources]
    ) -> ErrorLog:
        body = decode_body(await request.body(), ErrorLogPatch, LOG_READ_ONLY, ErrorLog.ALIASES)
        async with resources.pool.connection() as conn:
            return await records.update_log(conn, log_id, sent_fields(body))

    @delete("/{log_id:int}/", summary="Delete an error log (its group's counts follow)", guards=[staff_only])
    async def delete_error(self, log_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            await records.delete_log(conn, log_id)

    @post("/{log_id:int}/resolve/", summary="Resolve one error log", guards=[staff_only], status_code=HTTP_200_OK)
    async def resolve_error(self, log_id: FromPath[int], resources: NamedDependency[Resources]) -> ErrorLog:
        async with resources.pool.connection() as conn:
            return await records.set_log_resolved(conn, log_id, True)

    @post("/{log_id:int}/unresolve/", summary="Reopen one error log", guards=[staff_only], status_code=HTTP_200_OK)
    async def unresolve_error(self, log_id: FromPath[int], resources: NamedDependency[Resources]) -> ErrorLog:
        async with resources.pool.connection() as conn:
            return await records.set_log_resolved(conn, log_id, False)


class ErrorGroupsController(Controller):
    """Groups of error logs sharing a fingerprint, their status and resolution (staff only)."""

    path = "/api/error-groups"
    tags = ["errors"]  # noqa: RUF012 - Litestar reads it as a plain class attribute
    guards = [staff_only]  # noqa: RUF012

    @get("/", summary="Error groups, most recently seen first")
    async def list_groups(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        status: FromQuery[GroupStatus | None] = None,
        level: FromQuery[Level | None] = None,
        seen_since: Annotated[
            datetime | None, QueryParameter(description="Last seen at or after (ISO 8601; no offset: UTC)")
        ] = None,
        seen_until: Annotated[
            datetime | None, QueryParameter(description="Last seen at or before (ISO 8601; no offset: UTC)")
        ] = None,
        ordering: Annotated[str | None, QueryParameter(description=GROUP_ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[ErrorGroup]:
        since, until = aware(seen_since), aware(seen_until)
        ordered(since, until, "seen_since", "seen_until")
        order = GROUP_ORDERING.parse(ordering)
        where = Where()
        where.optional("status = {}", status)
        where.optional("level = {}", level)
        where.optional("last_seen >= {}", since)
        where.optional("last_seen <= {}", until)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, GROUP_LIST, where, order, page, page_size, ErrorGroup)
        )
        return build_page(request, page, page_size, count, rows)

    @get("/{group_id:int}/", summary="One error group with its most recent logs")
    async def get_group(
        self,
        group_id: FromPath[int],
        resources: NamedDependency[Resources],
        logs: Annotated[int, QueryParameter(ge=1, le=100, description="How many recent logs to include")] = 20,
    ) -> ErrorGroupDetail:
        return await resources.reads.run(lambda conn: records.get_group(conn, group_id, logs))

    @post(
        "/{group_id:int}/resolve/",
        summary="Resolve a group and its open logs (a new occurrence later marks it regressed)",
        status_code=HTTP_200_OK,
    )
    async def resolve_group(self, group_id: FromPath[int], resources: NamedDependency[Resources]) -> ErrorGroup:
        async with resources.pool.connection() as conn:
            return await records.set_group_resolved(conn, group_id, True)

    @post("/{group_id:int}/unresolve/", summary="Reopen a group (its logs unchanged)", status_code=HTTP_200_OK)
    async def unresolve_group(self, group_id: FromPath[int], resources: NamedDependency[Resources]) -> ErrorGroup:
        async with resources.pool.connection() as conn:
            return await records.set_group_resolved(conn, group_id, False)

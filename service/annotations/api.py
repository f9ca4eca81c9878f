"""`/api/annotations/`: marks on the dashboards' time axis. Staff write and delete; staff read them all, a
moderator reads those of a community they moderate (`community_id=`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from service.annotations.schemas import EARLIEST, LATEST, TAG, Annotation, AnnotationCreate
from service.annotations.store import DELETE, ONE, SELECT, insert
from service.auth.guards import principal_of, require_community_reader, staff_only
from service.auth.keys import for_keys
from service.core.errors import FieldError, Forbidden, InvalidInput, NotFound
from service.core.listing import (
    BIGINT_MAX,
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
from service.core.rows import aware, fetch_one, ordered, valid_id
from service.web.resources import Resources

AnyRequest = Request[Any, Any, Any]
ORDERING = Ordering(["time", "id"], default="-time")
READ_ONLY = frozenset({"id", "source", "created_by", "created_at"})


def _not_found(annotation_id: int) -> NotFound:
    return NotFound(f"No annotation {annotation_id}")


class AnnotationsController(Controller):
    """Annotations: why something happened, shown on the dashboards."""

    path = "/api/annotations"
    tags = ["annotations"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @get("/", summary="Annotations, newest first; filter by time, community and tag", opt=for_keys("read"))
    async def list_annotations(
        self,
        request: AnyRequest,
        resources: NamedDependency[Resources],
        since: Annotated[
            datetime | None, QueryParameter(description="Those that end at or after (RFC 3339; no zone: UTC)")
        ] = None,
        until: Annotated[datetime | None, QueryParameter(description="Those that start before (RFC 3339)")] = None,
        community_id: Annotated[
            int | None,
            QueryParameter(ge=1, le=BIGINT_MAX, description="Only this community's (required for moderators)"),
        ] = None,
        tag: Annotated[str | None, QueryParameter(pattern=TAG, max_length=50, description="Only with this tag")] = None,
        ordering: Annotated[str | None, QueryParameter(description=ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[Annotation]:
        principal = principal_of(request)
        if community_id is None:
            if not principal.staff:
                raise Forbidden("annotations of the whole platform are for staff; moderators pass `community_id`")
        else:
            require_community_reader(principal, community_id)
        start, end = aware(since), aware(until)
        ordered(start, end, "since", "until")
        order = ORDERING.parse(ordering)
        where = Where()
        where.optional("community_id = {}", community_id)
        where.optional("coalesce(time_end, time) >= {}", start)
        where.optional("time < {}", end)
        where.optional("{} = ANY(tags)", tag)
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, SELECT, where, order, page, page_size, Annotation)
        )
        return build_page(request, page, page_size, count, rows)

    @post(
        "/",
        summary="Add an annotation (staff)",
        guards=[staff_only],
        operation_class=json_body(AnnotationCreate, "`time` and `text`; `time_end`, `tags`, `community_id`"),
    )
    async def create_annotation(self, request: AnyRequest, resources: NamedDependency[Resources]) -> Annotation:
        body = decode_body(await request.body(), AnnotationCreate, READ_ONLY)
        for field, value in (("time", body.time), ("time_end", body.time_end)):
            if value is not None and not EARLIEST <= value < LATEST:
                raise InvalidInput([FieldError(field, f"must be from {EARLIEST:%Y} to {LATEST.year - 1}")])
        ordered(body.time, body.time_end, "time", "time_end")
        values = {**sent_fields(body), "created_by": principal_of(request).subject}
        async with resources.pool.connection() as conn:
            return await insert(conn, values)

    @get("/{annotation_id:int}/", summary="One annotation", guards=[staff_only])
    async def get_annotation(self, annotation_id: FromPath[int], resources: NamedDependency[Resources]) -> Annotation:
        params = {"id": valid_id(annotation_id, "annotation")}
        row = await resources.reads.run(lambda conn: fetch_one(conn, Annotation, ONE, params))
        if row is None:
            raise _not_found(annotation_id)
        return row

    @delete("/{annotation_id:int}/", summary="Delete an annotation (staff)", guards=[staff_only])
    async def delete_annotation(self, annotation_id: FromPath[int], resources: NamedDependency[Resources]) -> None:
        async with resources.pool.connection() as conn:
            cur = await conn.execute(DELETE, {"id": valid_id(annotation_id, "annotation")})
            if await cur.fetchone() is None:
                raise _not_found(annotation_id)

"""Tracking endpoints: validate, write the live state and the stream in one Redis round trip, answer 202.

PostgreSQL is never touched here (but to look up an API key Redis does not hold, once in a while): the ingest
worker moves accepted events from the stream into the tables. An API key costs a Redis GET more per request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import Meta

from service.auth.guards import principal_of, require_may_track_for
from service.auth.keys import for_keys
from service.auth.middleware import authenticated
from service.auth.tokens import Principal
from service.core import client_json
from service.core.errors import REDIS_ERRORS, FieldError, Forbidden, InvalidInput, Unavailable
from service.core.geoip import connection_address
from service.core.openapi import json_body
from service.ingest.records import activity_record, geo_record
from service.ingest.schemas import Accepted, BatchAccepted, ItemResult, PlatformEvent, TrackActivity, TrackGeo
from service.live.records import ActivityRecord, GeoRecord
from service.live.writer import Backlogged
from service.observability.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED, GEO_DECISIONS
from service.web.limits import admit_tracking
from service.web.resources import Resources


class HasEventId(Protocol):
    event_id: UUID | None


T = TypeVar("T", TrackActivity, TrackGeo, PlatformEvent)
D = TypeVar("D")
R = TypeVar("R", ActivityRecord, GeoRecord)
AnyRequest = Request[Any, Any, Any]
# A batch body as documented: at least one item; the upper bound, TRACK_MAX_BATCH, is a setting (named in the
# description), checked by the handlers.
Batch = Annotated[list[T], Meta(min_length=1)]


def _client_ids(items: Sequence[HasEventId]) -> set[UUID]:
    return {item.event_id for item in items if item.event_id is not None}


def _kind(body_type: type[Any]) -> str:
    return "geo" if body_type is TrackGeo else "activity"


def _rejected(kind: str, reason: str, events: int = 1) -> None:
    """Count refused events; a request whose body could not be read counts as one."""
    if events:
        EVENTS_REJECTED.labels(kind, reason).inc(events)


async def _body(request: AnyRequest, kind: str) -> bytes:
    try:
        return await request.body()
    except RequestEntityTooLarge:
        _rejected(kind, "too_large")
        raise


async def _write(resources: Resources, records: list[ActivityRecord] | list[GeoRecord], client_ids: set[UUID]) -> None:
    kind = "geo" if isinstance(records[0], GeoRecord) else "activity"
    try:
        await resources.live.write(records, client_ids)
    except Backlogged as exc:
        _rejected(kind, "backlog", len(records))
        raise Unavailable(f"Ingest is behind ({exc}); retry later", retry_after=30) from None
    except REDIS_ERRORS as exc:
        _rejected(kind, "unavailable", len(records))
        # With several shards, the events of the shards that answered were taken: a retry carrying the same
        # client event ids stores each once.
        taken = (
            "nothing was accepted; retry later"
            if resources.shards.count == 1
            else "events of other shards may have been accepted; send an event_id with each event so that a "
            "retry stores each once"
        )
        raise Unavailable(
            f"The live store (Redis) is unavailable ({type(exc).__name__}); {taken}", retry_after=5
        ) from None
    EVENTS_ACCEPTED.labels(kind).inc(len(records))
    if kind == "geo":
        for record in records:
            if isinstance(record, GeoRecord):
                scope, code = record.restriction_scope or "none", record.country_code or "unknown"
                GEO_DECISIONS.labels(record.access_result, scope, code).inc()


async def _track_one(request: AnyRequest, body_type: type[T], make: Callable[[T], R], resources: Resources) -> R:
    kind = _kind(body_type)
    try:
        item = client_json.decode(await _body(request, kind), body_type)
        record = make(item)
    except InvalidInput:
        _rejected(kind, "validation")
        raise
    except Forbidden:
        _rejected(kind, "forbidden")
        raise
    await _write(resources, [record], _client_ids([item]))
    return record


async def _track_many(
    request: AnyRequest, body_type: type[T], make: Callable[[T], R], resources: Resources
) -> BatchAccepted:
    """Each item on its own: bad ones are reported, good ones accepted; answered 400 only if none is good."""
    kind = _kind(body_type)
    try:
        items = client_json.decode(await _body(request, kind), list[msgspec.Raw])
    except InvalidInput:
        _rejected(kind, "validation")
        raise
    limit = resources.settings.track_max_batch
    if not 1 <= len(items) <= limit:
        _rejected(kind, "validation", max(len(items), 1))
        raise InvalidInput([FieldError("body", f"expected a list of 1 to {limit} events, got {len(items)}")])
    results: list[ItemResult] = []
    records: list[R] = []
    accepted: list[T] = []
    for index, raw in enumerate(items):
        try:
            item = client_json.decode(raw, body_type, prefix=f"[{index}]")
            record = make(item)
        except InvalidInput as exc:
            errors = [FieldError(_prefixed(index, e.field), e.message) for e in exc.errors]
            results.append(ItemResult(index=index, status="rejected", errors=errors))
            continue
        except Forbidden:  # one item tracked for someone else refuses the whole request
            _rejected(kind, "forbidden", len(items))
            raise
        records.append(record)
        accepted.append(item)
        results.append(ItemResult(index=index, status="accepted", event_id=record.event_id))
    _rejected(kind, "validation", len(items) - len(records))
    if not records:
        raise InvalidInput([e for r in results for e in r.errors or []], detail="No event in the batch was accepted")
    await _write(resources, records, _client_ids(accepted))
    return BatchAccepted(accepted=len(records), rejected=len(items) - len(records), results=results)


def _prefixed(index: int, field: str) -> str:
    prefix = f"[{index}]"
    if field.startswith(prefix):
        return field
    return f"{prefix}.{field}" if field != "body" else prefix


async def _admitted(request: AnyRequest) -> Resources:
    """The process's resources, once the caller is authenticated and within the tracking rate limit: a plain call
    here rather than the authentication middleware and a guard, whose layers cost more than the checks."""
    # Read straight from the app state: Litestar's dependency injection would cost a signature-model validation
    # per request here.
    resources: Resources = request.app.state.resources
    await authenticated(request, resources)
    admit_tracking(request, resources)
    return resources


def _now() -> datetime:
    return datetime.now(UTC)


def _on_behalf(principal: Principal, record: R) -> R:
    """The record as this principal may track it: a regular user only for themself (an event without a user is
    theirs); staff, service tokens and `track` API keys for anyone (a key only in its communities). Another user's
    id, or another community for a key, is a 403 for the whole request."""
    require_may_track_for(principal, record.user_id)
    if principal.kind == "key" and not principal.covers(record.community_id):
        raise Forbidden(f"this API key tracks only communities {sorted(principal.communities or ())}")
    if record.user_id is None and principal.user_id is not None and not (principal.staff or principal.is_service):
        return msgspec.structs.replace(record, user_id=principal.user_id)
    return record


def _activity_maker(
    request: AnyRequest, resources: Resources
) -> Callable[[TrackActivity | PlatformEvent], ActivityRecord]:
    now, principal = _now(), principal_of(request)
    return lambda item: _on_behalf(principal, activity_record(item, now, resources.settings))


def _geo_maker(request: AnyRequest, resources: Resources) -> Callable[[TrackGeo], GeoRecord]:
    now, principal = _now(), principal_of(request)
    client = connection_address(request, resources.proxies)
    resolve = resources.geoip.lookup if resources.geoip else None
    return lambda item: _on_behalf(principal, geo_record(item, now, resources.settings, resolve, client))


class CommunityTrackController(Controller):
    """Community activity: views, joins, posts, likes, messages, sessions."""

    path = "/api/community-analytics"
    tags = ["tracking"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @post(
        "/track/",
        status_code=HTTP_202_ACCEPTED,
        exclude_from_auth=True,  # authenticated by the handler (`_admitted`)
        opt=for_keys("track"),
        summary="Track one community activity event",
        operation_class=json_body(TrackActivity, "One activity event"),
    )
    async def track(self, request: AnyRequest) -> Accepted:
        resources = await _admitted(request)
        record = await _track_one(request, TrackActivity, _activity_maker(request, resources), resources)
        return Accepted(status="accepted", event_id=record.event_id)

    @post(
        "/track/batch/",
        status_code=HTTP_202_ACCEPTED,
        exclude_from_auth=True,  # authenticated by the handler (`_admitted`)
        opt=for_keys("track"),
        summary="Track a list of community activity events, each accepted or rejected on its own",
        operation_class=json_body(Batch[TrackActivity], "Activity events: 1 to TRACK_MAX_BATCH (default 500) items"),
    )
    async def track_batch(self, request: AnyRequest) -> BatchAccepted:
        resources = await _admitted(request)
        return await _track_many(request, TrackActivity, _activity_maker(request, resources), resources)


class GeoTrackController(Controller):
    """Geo-restriction access decisions."""

    path = "/api/geo-analytics"
    tags = ["tracking"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @post(
        "/track/",
        status_code=HTTP_202_ACCEPTED,
        exclude_from_auth=True,  # authenticated by the handler (`_admitted`)
        opt=for_keys("track"),
        summary="Track one geo-restriction access decision",
        operation_class=json_body(TrackGeo, "One access decision; `location`, or `ip`, or neither (client address)"),
    )
    async def track(self, request: AnyRequest) -> Accepted:
        resources = await _admitted(request)
        record = await _track_one(request, TrackGeo, _geo_maker(request, resources), resources)
        return Accepted(status="accepted", event_id=record.event_id)

    @post(
        "/track/batch/",
        status_code=HTTP_202_ACCEPTED,
        exclude_from_auth=True,  # authenticated by the handler (`_admitted`)
        opt=for_keys("track"),
        summary="Track a list of geo-restriction access decisions, each accepted or rejected on its own",
        operation_class=json_body(Batch[TrackGeo], "Access decisions: 1 to TRACK_MAX_BATCH (default 500) items"),
    )
    async def track_batch(self, request: AnyRequest) -> BatchAccepted:
        resources = await _admitted(request)
        return await _track_many(request, TrackGeo, _geo_maker(request, resources), resources)


class EventsController(Controller):
    """Platform-level activity (registrations, page views, content, follows, sessions, recommendations)."""

    path = "/api/events"
    tags = ["tracking"]  # noqa: RUF012 - Litestar reads it as a plain class attribute

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        exclude_from_auth=True,  # authenticated by the handler (`_admitted`)
        opt=for_keys("track"),
        summary="Track a list of platform-level events, each accepted or rejected on its own",
        operation_class=json_body(Batch[PlatformEvent], "Platform events: 1 to TRACK_MAX_BATCH (default 500) items"),
    )
    async def track(self, request: AnyRequest) -> BatchAccepted:
        resources = await _admitted(request)
        return await _track_many(request, PlatformEvent, _activity_maker(request, resources), resources)

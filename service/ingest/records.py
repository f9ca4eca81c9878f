"""From a validated request item to the record that is stored: defaults, time window, location."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from uuid import uuid4

from service.core import client_json
from service.core.errors import FieldError, InvalidInput
from service.core.geoip import Place
from service.core.settings import Settings
from service.ingest.countries import country_code
from service.ingest.schemas import PlatformEvent, TrackActivity, TrackGeo
from service.live.records import ActivityRecord, GeoRecord

Address = IPv4Address | IPv6Address
MAX_DURATION = 7 * 86400.0  # seconds; longer "durations" are client bugs


def _time(timestamp: datetime | None, now: datetime, settings: Settings) -> datetime:
    if timestamp is None:
        return now
    if timestamp < now - timedelta(seconds=settings.track_max_age):
        raise InvalidInput([FieldError("timestamp", f"more than {settings.track_max_age} seconds in the past")])
    if timestamp > now + timedelta(seconds=settings.track_max_future):
        raise InvalidInput([FieldError("timestamp", f"more than {settings.track_max_future} seconds in the future")])
    return timestamp


def _no_nul(fields: dict[str, str | None]) -> None:
    """PostgreSQL text cannot hold NUL characters: refuse them here rather than fail at ingest."""
    errors = []
    for name, value in fields.items():
        if (found := client_json.problem(value)) is not None:
            where, message = found
            errors.append(FieldError(name + where, message))
    if errors:
        raise InvalidInput(errors)


def activity_record(item: TrackActivity | PlatformEvent, now: datetime, settings: Settings) -> ActivityRecord:
    """The record for an activity item; `section` and `duration` move from metadata to their columns."""
    client_json.check(item.metadata, "metadata")
    _no_nul({"session_id": item.session_id})
    metadata = dict(item.metadata)
    section = metadata.pop("section", None)
    duration = metadata.pop("duration", None)
    errors = []
    if section is not None and (not isinstance(section, str) or not 0 < len(section) <= 200):
        errors.append(FieldError("metadata.section", "expected text of 1 to 200 characters"))
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 <= duration <= MAX_DURATION
    ):
        errors.append(FieldError("metadata.duration", f"expected a number of seconds from 0 to {MAX_DURATION:g}"))
    if errors:
        raise InvalidInput(errors)
    return ActivityRecord(
        time=_time(item.timestamp, now, settings),
        event_id=item.event_id or uuid4(),
        community_id=item.community_id,
        user_id=item.user_id,
        activity_type=item.activity_type,
        session_id=item.session_id,
        duration=None if duration is None else float(duration),
        section=section,
        metadata=metadata,
    )


def geo_record(
    item: TrackGeo,
    now: datetime,
    settings: Settings,
    resolve: Callable[[Address], Place | None] | None,
    client: Address | None,
) -> GeoRecord:
    """The record for a geo decision: the location as sent, or looked up from `ip` or the client address."""
    if item.location is not None and item.ip is not None:
        raise InvalidInput([FieldError("ip", "send either `location` or `ip`, not both")])
    if item.location is not None:
        loc = item.location
        _no_nul({"location.country": loc.country, "location.region": loc.region, "location.city": loc.city})
        code = loc.country_code.upper() if loc.country_code else country_code(loc.country)
        as_code = len(loc.country) == 2 and loc.country.isascii() and loc.country.isalpha()
        if as_code and loc.country_code and country_code(loc.country) != code:
            # A code (or "UK") must agree with a sent code; a longer name is not looked up (names are many and
            # disputed, and the lookup is not needed when the code is sent)
            raise InvalidInput([FieldError("location.country_code", f"does not match `country` {loc.country!r}")])
        place: Place | None = Place(loc.country, code, loc.region, loc.city)
    else:
        field = "ip" if item.ip is not None else "location"
        if resolve is None:
            raise InvalidInput([FieldError(field, "required: no GeoIP database is configured (GEOIP_DATABASE)")])
        if item.ip is not None:
            try:
                client = ip_address(item.ip)
            except ValueError:
                raise InvalidInput([FieldError("ip", "not an IPv4 or IPv6 address")]) from None
        place = resolve(client) if client is not None else None
    unknown = Place(None, None, None, None)
    place = place or unknown
    return GeoRecord(
        time=_time(item.timestamp, now, settings),
        event_id=item.event_id or uuid4(),
        community_id=item.community_id,
        user_id=item.user_id,
        country=place.country,
        country_code=place.country_code,
        region=place.region,
        city=place.city,
        access_result=item.access_result,
        restriction_scope=item.restriction_scope,
        is_traveler=item.is_traveler,
    )

"""Locations from IP addresses (a MaxMind-format database) and the client address behind trusted proxies."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import geoip2.database
import geoip2.errors
import msgspec
from litestar.connection import ASGIConnection

Network = IPv4Network | IPv6Network


class Place(msgspec.Struct, frozen=True):
    """What the database knows of an address; any part may be unknown."""

    country: str | None
    country_code: str | None
    region: str | None
    city: str | None


class GeoResolver:
    """Looks addresses up in a city (or country) database, opened once per process."""

    def __init__(self, path: str) -> None:
        self._reader = geoip2.database.Reader(path)
        self._city = "City" in self._reader.metadata().database_type

    def lookup(self, address: IPv4Address | IPv6Address) -> Place | None:
        """The address's place, or None when the database does not know it (private ranges included)."""
        try:
            if self._city:
                city = self._reader.city(address)
                region = city.subdivisions.most_specific.name if city.subdivisions else None
                return Place(city.country.name, city.country.iso_code, region, city.city.name)
            country = self._reader.country(address)
            return Place(country.country.name, country.country.iso_code, None, None)
        except (geoip2.errors.AddressNotFoundError, ValueError):  # ValueError: IPv6 in an IPv4-only database
            return None

    def close(self) -> None:
        self._reader.close()


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: list[Network]
) -> IPv4Address | IPv6Address | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most untrusted hop
    of X-Forwarded-For (hops to the left of it could be forged by the client)."""
    try:
        address = ip_address(peer) if peer else None
    except ValueError:
        return None
    if address is None or not forwarded_for or not any(address in net for net in trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            candidate = ip_address(hop)
        except ValueError:
            return address  # a malformed chain: trust no further than the proxy we know
        if not any(candidate in net for net in trusted):
            return candidate
    return address


def connection_address(
    connection: ASGIConnection[Any, Any, Any, Any], trusted: list[Network]
) -> IPv4Address | IPv6Address | None:
    """`client_address` of a request: its peer and its X-Forwarded-For header."""
    peer = connection.client.host if connection.client else None
    return client_address(peer, connection.headers.get("x-forwarded-for"), trusted)

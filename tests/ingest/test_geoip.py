"""GeoIP lookups against a small MaxMind-format database built here, and the client address behind proxies."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from service.core.geoip import GeoResolver, Place, client_address
from service.core.settings import Settings
from tests.ingest.conftest import MakeWorker
from tests.support import drain, rows, staff_client


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", languages=["en"], ipv4_compatible=True)
    writer.insert_network(
        IPSet(["81.2.69.0/24"]),
        {
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
            "city": {"names": {"en": "London"}},
        },
    )
    writer.insert_network(IPSet(["2a02:c7f::/32"]), {"country": {"iso_code": "DE", "names": {"en": "Germany"}}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    return path


def test_lookups(city_db: Path) -> None:
    resolver = GeoResolver(str(city_db))
    try:
        assert resolver.lookup(ip_address("81.2.69.142")) == Place("United Kingdom", "GB", "England", "London")
        assert resolver.lookup(ip_address("2a02:c7f:1234::1")) == Place("Germany", "DE", None, None)
        assert resolver.lookup(ip_address("8.8.8.8")) is None  # not in this database
        assert resolver.lookup(ip_address("127.0.0.1")) is None
    finally:
        resolver.close()


TRUSTED = [ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("81.2.69.1", None, "81.2.69.1"),
        ("81.2.69.1", "1.1.1.1", "81.2.69.1"),  # an untrusted peer cannot claim another address
        ("10.0.0.5", "81.2.69.7", "81.2.69.7"),
        ("10.0.0.5", "6.6.6.6, 81.2.69.7, 10.0.0.9", "81.2.69.7"),  # right-most hop not a proxy of ours
        ("10.0.0.5", "junk", "10.0.0.5"),
        ("testclient", None, None),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str | None) -> None:
    address = client_address(peer, forwarded, TRUSTED)
    assert (str(address) if address else None) == expected


def test_tracking_with_an_ip_stores_the_place_not_the_ip(
    city_db: Path,
    database_url: str,
    redis_url: str,
    settings_for: Callable[..., Settings],
    make_worker: MakeWorker,
) -> None:
    settings = settings_for(database_url, redis_url, GEOIP_DATABASE=str(city_db))
    with staff_client(settings) as client:
        track: Callable[[dict[str, Any]], Any] = lambda body: client.post(  # noqa: E731
            "/api/geo-analytics/track/", json={"community_id": 3, "user_id": 5, "access_result": "blocked", **body}
        )
        assert track({"ip": "81.2.69.142"}).status_code == 202
        assert track({"ip": "8.8.8.8"}).status_code == 202  # unknown to the database: stored without a place
        assert track({}).status_code == 202  # the client address ("testclient" here) is no IP: no place
        bad = track({"ip": "999.1.1.1"})
        assert (bad.status_code, bad.json()["errors"]) == (
            400,
            [{"field": "ip", "message": "not an IPv4 or IPv6 address"}],
        )
    drain(make_worker())
    assert rows(database_url, "SELECT country, country_code, region, city FROM geo_access_events ORDER BY time") == [
        ("United Kingdom", "GB", "England", "London"),
        (None, None, None, None),
        (None, None, None, None),
    ]
    columns = {r[0] for r in rows(database_url, "SELECT column_name FROM information_schema.columns "
                                                "WHERE table_name = 'geo_access_events'")}  # fmt: skip
    assert not {"ip", "ip_address"} & columns

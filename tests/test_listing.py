"""The pure parts of `service.core.listing`: ordering whitelists, WHERE assembly, page links, write-body decoding."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from litestar import Request
from litestar.testing import TestClient
from msgspec import UNSET, Meta

from service.core.errors import FieldError, InvalidInput
from service.core.listing import Ordering, Page, Where, build_page, columns, decode_body, page_url, sent_fields, variant


def sql_text(composable: Any) -> str:
    text: str = composable.as_string(None)
    return text


def request(path: str, query: bytes) -> Request[Any, Any, Any]:
    scope: Any = {
        "type": "http", "method": "GET", "path": path, "query_string": query, "headers": [],
        "server": ("testserver", 80), "scheme": "http", "root_path": "", "app": None,
    }  # fmt: skip
    return Request(scope)


def invalid(exc: pytest.ExceptionInfo[InvalidInput]) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in exc.value.errors]


ORDERING = Ordering(["date", "active_users", "id"], default="-date")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 'ORDER BY "date" DESC, "id" DESC'),
        ("", 'ORDER BY "date" DESC, "id" DESC'),
        ("date", 'ORDER BY "date" ASC, "id" ASC'),
        ("-active_users", 'ORDER BY "active_users" DESC, "id" DESC'),
        (" active_users ", 'ORDER BY "active_users" ASC, "id" ASC'),
        ("id", 'ORDER BY "id" ASC'),  # the tie breaker is not repeated
        ("-id", 'ORDER BY "id" DESC'),
    ],
)
def test_ordering_parses_the_whitelist(value: str | None, expected: str) -> None:
    assert sql_text(ORDERING.parse(value)) == expected


@pytest.mark.parametrize("value", ["bounce_rate", "--date", "date,id", '"date"; DROP TABLE x', "-", "Date"])
def test_ordering_refuses_what_is_not_whitelisted(value: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        ORDERING.parse(value)
    assert [f for f, _ in invalid(exc)] == ["ordering"]


def test_ordering_maps_public_names_to_columns_and_checks_its_default() -> None:
    by_rank = Ordering({"level": "severity", "id": "id"}, default="-level")
    assert sql_text(by_rank.parse(None)) == 'ORDER BY "severity" DESC, "id" DESC'
    with pytest.raises(InvalidInput):
        by_rank.parse("severity")  # the column is not a public name
    assert ORDERING.description == "One of `date`, `active_users`, `id`; prefix `-` for descending. Default `-date`"
    with pytest.raises(ValueError, match="default ordering 'value'"):
        Ordering(["date", "id"], default="value")


def test_where_binds_every_value_and_skips_absent_filters() -> None:
    where = Where()
    assert sql_text(where.clause()) == ""
    where.add("level = ANY({})", ["error", "critical"])
    where.optional("user_id = {}", None)
    where.optional("created_at >= {}", "2026-01-01")
    where.add("a = {} OR b = {}", 1, 2)
    assert sql_text(where.clause()) == (
        "WHERE (level = ANY(%(w0)s)) AND (created_at >= %(w1)s) AND (a = %(w2)s OR b = %(w3)s)"
    )
    assert where.params == {"w0": ["error", "critical"], "w1": "2026-01-01", "w2": 1, "w3": 2}
    where.optional("flag = {}", False)  # a false filter is still a filter
    assert where.params["w4"] is False


def test_page_links_keep_the_query_in_the_order_sent() -> None:
    r = request("/api/daily", b"ordering=-date&date_from=2026-01-01&page=3&q=a+b&page_size=2")
    assert page_url(r, 4) == "/api/daily/?ordering=-date&date_from=2026-01-01&q=a+b&page_size=2&page=4"
    assert build_page(r, 3, 2, 9, [1, 2]) == Page(
        count=9,
        next="/api/daily/?ordering=-date&date_from=2026-01-01&q=a+b&page_size=2&page=4",
        previous="/api/daily/?ordering=-date&date_from=2026-01-01&q=a+b&page_size=2&page=2",
        results=[1, 2],
    )


@pytest.mark.parametrize(
    ("page", "count", "next_page", "previous_page"),
    [
        (1, 0, None, None),  # nothing at all: one empty page
        (1, 2, None, None),  # exactly one page
        (1, 3, 2, None),
        (2, 4, None, 1),  # the last page, full
        (5, 4, None, 2),  # past the end: back to the last page
        (2, 0, None, 1),
    ],
)
def test_page_neighbours(page: int, count: int, next_page: int | None, previous_page: int | None) -> None:
    built = build_page(request("/api/x/", b""), page, 2, count, [])
    assert built.next == (None if next_page is None else f"/api/x/?page={next_page}")
    assert built.previous == (None if previous_page is None else f"/api/x/?page={previous_page}")


class Write(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1)]
    count: Annotated[int, Meta(ge=0)]
    tags: list[str]


Create = variant(Write, "Create", required={"name"})
Patch = variant(Write, "Patch")
READ_ONLY = {"id", "created_at"}


def test_decode_names_every_read_only_unknown_and_missing_field_at_once() -> None:
    with pytest.raises(InvalidInput) as exc:
        decode_body(b'{"id": 1, "colour": "red", "created_at": null, "tags": []}', Write, READ_ONLY)
    assert invalid(exc) == [
        ("id", "read-only field"),
        ("created_at", "read-only field"),
        ("colour", "unknown field"),
        ("name", "required field is missing"),
        ("count", "required field is missing"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"name": "", "count": 1, "tags": []}', [("name", "Expected `str` of length >= 1")]),
        (b'{"name": "a", "count": -1, "tags": []}', [("count", "Expected `int` >= 0")]),
        (b'{"name": "a", "count": 1, "tags": [1]}', [("tags[0]", "Expected `str`, got `int`")]),
        (b"[]", [("body", "Expected `object`, got `array`")]),
        (b'"text"', [("body", "Expected `object`, got `str`")]),
        (b"{,}", [("body", "malformed JSON: JSON is malformed: object keys must be strings (byte 1)")]),
        (b'{"tags": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", [("body", "nested too deeply")]),
    ],
)
def test_decode_reports_bad_values(body: bytes, expected: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput) as exc:
        decode_body(body, Write, READ_ONLY)
    assert invalid(exc) == expected


def test_variants_keep_the_constraints_and_tell_unsent_from_sent() -> None:
    created = decode_body(b'{"name": "a"}', Create, READ_ONLY)
    assert sent_fields(created) == {"name": "a"}
    with pytest.raises(InvalidInput) as exc:
        decode_body(b'{"count": 3}', Create, READ_ONLY)
    assert invalid(exc) == [("name", "required field is missing")]
    patch = decode_body(b'{"count": 0, "tags": []}', Patch, READ_ONLY)
    assert sent_fields(patch) == {"count": 0, "tags": []}
    assert sent_fields(decode_body(b"{}", Patch)) == {}
    assert patch.name is UNSET  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput) as exc:
        decode_body(b'{"count": -2}', Patch, READ_ONLY)
    assert invalid(exc) == [("count", "Expected `int` >= 0")]
    with pytest.raises(InvalidInput) as exc:
        decode_body(b'{"count": null}', Patch, READ_ONLY)  # null is not "not sent"
    assert invalid(exc) == [("count", "Expected `int`, got `null`")]


def test_columns_quote_the_struct_fields_in_order() -> None:
    assert sql_text(columns(Write)) == '"name", "count", "tags"'


def test_field_errors_are_plain_structs() -> None:
    # What the handlers put in a 400 body: JSON with exactly `field` and `message`.
    assert msgspec.json.encode(FieldError("ordering", "x")) == b'{"field":"ordering","message":"x"}'


ISO_ONLY = "expected an ISO 8601 day or time (2026-11-28, 2026-11-28T12:00:00Z)"


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("/api/daily/?date_form=2026-01-01", [("date_form", "unknown query parameter")]),
        ("/api/metrics/?recorded_until=0.5", [("recorded_until", ISO_ONLY)]),
        ("/api/tasks/runs/?since=1700000000", [("since", ISO_ONLY)]),
        ("/api/errors/?level=error&colour=red&size=2",
         [("colour", "unknown query parameter"), ("size", "unknown query parameter")]),
        ("/api/tasks/runs/?task=x%00", [("task", "must not contain NUL characters")]),
    ],
)  # fmt: skip
def test_query_parameters_a_route_does_not_declare_or_cannot_read_are_refused(
    client: TestClient[Any], query: str, errors: list[tuple[str, str]]
) -> None:
    response = client.get(query)
    assert response.status_code == 400, response.text
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == errors


def test_declared_query_parameters_pass(client: TestClient[Any]) -> None:
    for query in (
        "/api/daily/?date_from=2026-01-01&page=1",
        "/api/metrics/?recorded_until=2026-11-28T00:00:00Z",
        "/api/errors/?created_since=2026-11-28T00:00:00",
        "/api/community-analytics/5/report/?days=7",
    ):
        assert client.get(query).status_code == 200, query

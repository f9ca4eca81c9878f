"""What every route checks of its query parameters before its handler runs (a `before_request` hook): no NUL
character (no text filter can hold one), no name the route does not declare (a misspelt filter would otherwise
be ignored and answer everything), and times and days written as ISO 8601 (`?until=0.5` would otherwise be read
as seconds since 1970). The declared names and formats come from the OpenAPI document, so they are the ones
documented.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.openapi.spec import OpenAPI

from service.core.errors import FieldError, InvalidInput

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")  # a day, or the start of an RFC 3339 time
_TIME_FORMATS = frozenset({"date", "date-time"})


@dataclass(frozen=True)
class QueryRules:
    """The query parameters of every operation: (METHOD, path template) -> their names, and which are times."""

    names: Mapping[tuple[str, str], frozenset[str]]
    times: Mapping[tuple[str, str], frozenset[str]]

    @classmethod
    def from_schema(cls, schema: OpenAPI) -> QueryRules:
        names: dict[tuple[str, str], frozenset[str]] = {}
        times: dict[tuple[str, str], frozenset[str]] = {}
        for path, item in schema.to_schema().get("paths", {}).items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
                key = (method.upper(), path)
                names[key] = frozenset(p["name"] for p in query)
                times[key] = frozenset(p["name"] for p in query if _formats(p.get("schema", {})) & _TIME_FORMATS)
        return cls(names, times)


def _formats(schema: Mapping[str, Any]) -> set[str]:
    found = {schema["format"]} if "format" in schema else set()
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        found |= _formats(option)
    return found


async def check_query(request: Request[Any, Any, Any]) -> None:
    """400 naming each query parameter that holds a NUL character, is not declared by the route, or is a time
    that is not ISO 8601."""
    if not request.scope.get("query_string"):
        return  # nothing sent: nothing to check (the tracking routes' usual case: no parsing on the hot path)
    sent = list(request.query_params.multi_items())
    errors = [FieldError(name.replace("\x00", "\\0"), "must not contain NUL characters") for name, value in sent
              if "\x00" in name or "\x00" in value]  # fmt: skip
    rules: QueryRules | None = getattr(request.app.state, "query_rules", None)
    key = (request.method if request.method != "HEAD" else "GET", str(request.scope.get("path_template", "")))
    if not errors and rules is not None and key in rules.names:
        known, times = rules.names[key], rules.times[key]
        errors += [FieldError(name, "unknown query parameter") for name in sorted({n for n, _ in sent} - known)]
        errors += [
            FieldError(name, "expected an ISO 8601 day or time (2026-11-28, 2026-11-28T12:00:00Z)")
            for name, value in sent
            if name in times and not _ISO.match(value)
        ]
    if errors:
        raise InvalidInput(errors)

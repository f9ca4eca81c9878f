"""OpenAPI additions: request bodies of handlers that decode their own (to report every bad field precisely,
item by item), and the error answers of every operation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    RequestBody,
    Schema,
)


@dataclass
class _RawSchema(Schema):
    """A JSON Schema given as a dict (from msgspec), emitted as is."""

    raw: dict[str, Any] | None = None

    def to_schema(self) -> dict[str, Any]:
        return self.raw or {}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace msgspec's `$ref`s into `$defs` with the definitions themselves (our bodies are not recursive)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_body(body_type: Any, description: str, aliases: Mapping[str, str] | None = None) -> type[Operation]:
    """An `operation_class` documenting `body_type` as the JSON request body; `aliases` (alias -> field) are
    documented as second names of their fields, either of which satisfies a required field."""
    schema = msgspec.json.schema(body_type)
    raw = _inline(schema, schema.get("$defs", {}))
    for alias, field in (aliases or {}).items():
        properties = raw.get("properties", {})
        if field in properties:
            properties[alias] = {**properties[field], "description": f"The documented name of `{field}`: send one"}
        if field in raw.get("required", []):
            raw["required"] = [name for name in raw["required"] if name != field]
            raw.setdefault("allOf", []).append({"anyOf": [{"required": [field]}, {"required": [alias]}]})

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=_RawSchema(raw=raw))},
                description=description,
                required=True,
            )

    return _Operation


# Every error answer has this body (service.core.errors): `errors` names fields on 400 and 409, `extra` comes from
# Litestar's own HTTP errors.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status_code", "detail"],
    "properties": {
        "status_code": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "extra": {},
    },
}
_ERROR_ANSWERS = {
    "400": "Invalid input: each wrong field named in `errors`",
    "401": "No credentials, or not acceptable ones: the reason in `detail`",
    "403": "Authenticated, but a permission rule refuses: the rule in `detail`",
    "404": "No such resource",
    "409": "The write would collide with a stored row (a unique key)",
    "413": "The body is larger than TRACK_MAX_BODY_BYTES",
    "429": "A rate limit is exhausted: see Retry-After",
    "503": "PostgreSQL or Redis is unavailable, or ingest is behind: see Retry-After",
}
_TRACKING = ("/api/community-analytics/track", "/api/geo-analytics/track", "/api/events")
_UNIQUE_ROWS = ("/api/daily", "/api/user-analytics")  # resources with a unique key (a day; a user and day)


def error_answers(path: str, method: str, has_body: bool) -> list[str]:
    """The error statuses an operation can answer, by the kind of route it is (service.core.errors maps them)."""
    if not path.startswith("/api/"):
        return ["503"] if path == "/ready" else ["401"] if path == "/metrics" else []
    found = ["400", "401", "403", "503"]
    if "{" in path:
        found.append("404")
    if method in ("post", "put", "patch") and path.startswith(_UNIQUE_ROWS):
        found.append("409")
    if has_body or method in ("post", "put", "patch"):
        found.append("413")
    if path.startswith(_TRACKING) or path == "/api/auth/session":
        found.append("429")
    return sorted(found)


def declare_error_answers(schema: OpenAPI) -> None:
    """Add to every operation of `schema` the error answers its kind of route can give, with their body, so the
    document says every status the API answers (Litestar declares only successes and some 400s)."""
    components = schema.components if isinstance(schema.components, Components) else Components()
    schema.components = components
    components.schemas = {**(components.schemas or {}), "Error": _RawSchema(raw=ERROR_SCHEMA)}
    reference = Reference(ref="#/components/schemas/Error")
    for path, item in (schema.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for status in error_answers(path, method, operation.request_body is not None):
                responses[status] = OpenAPIResponse(
                    description=_ERROR_ANSWERS[status],
                    content={"application/json": OpenAPIMediaType(schema=reference)},
                )
            operation.responses = responses

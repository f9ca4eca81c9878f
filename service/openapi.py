"""OpenAPI for handlers that decode their own bodies (to report every bad field precisely, item by item)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema


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


def json_body(body_type: Any, description: str) -> type[Operation]:
    """An `operation_class` documenting `body_type` as the JSON request body."""
    schema = msgspec.json.schema(body_type)
    raw = _inline(schema, schema.get("$defs", {}))

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=_RawSchema(raw=raw))},
                description=description,
                required=True,
            )

    return _Operation

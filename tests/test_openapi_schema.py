"""Property-based checks of the served OpenAPI schema (schemathesis): generated requests to every operation,
as staff, get no 500, no status the operation does not declare, and no answer the schema does not describe.
Bounded: a fixed number of examples per operation, derandomized so a run is repeatable."""

from __future__ import annotations

from typing import Any

import hypothesis
import msgspec
import schemathesis
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from service.app import create_app
from service.settings import from_env

EXAMPLES_PER_OPERATION = 25


def _document() -> dict[str, Any]:
    """The application's OpenAPI document (building the app connects to nothing)."""
    app = create_app(from_env({"DATABASE_URL": "postgresql://unused/x", "REDIS_URL": "redis://unused"}, dotenv=None))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(_document())


def test_the_checked_schema_is_the_served_one(client: TestClient) -> None:  # type: ignore[type-arg]
    served = client.get("/docs/openapi.json")
    assert served.status_code == 200
    assert served.json() == msgspec.json.decode(msgspec.json.encode(_document()))


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.generate],
)
def test_operations_answer_within_the_schema(case: Any, client: TestClient) -> None:  # type: ignore[type-arg]
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    client.cookies.clear()
    client.cookies.update(kwargs.pop("cookies", None) or {})  # httpx takes cookies per client, not per request
    if isinstance(kwargs.get("data"), (bytes, str)):
        kwargs["content"] = kwargs.pop("data")  # raw bodies (httpx wants them as `content`)
    response = client.request(**kwargs)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


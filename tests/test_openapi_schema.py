"""Property-based checks of the served OpenAPI schema (schemathesis): generated requests to every operation,
as staff, get no 500, no status the operation does not declare, and no answer the schema does not describe.
Bounded: a fixed number of examples per operation, derandomized so a run is repeatable."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import msgspec
import pytest
import schemathesis
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from service.app import create_app
from service.core.settings import from_env

# `make fuzz` raises it (FUZZ_EXAMPLES) for a longer run before a release.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "25"))
ANSWERS: Counter[tuple[str, int]] = Counter()  # (operation, status) of every generated request


def _document() -> dict[str, Any]:
    """The application's OpenAPI document (building the app connects to nothing)."""
    app = create_app(from_env({"DATABASE_URL": "postgresql://unused/x", "REDIS_URL": "redis://unused"}, dotenv=None))
    return app.openapi_schema.to_schema()


# The live stream never ends, so a generated GET would never return: tests/community/test_live.py covers it.
schema = schemathesis.openapi.from_dict(_document()).exclude(path_regex=r"/live/?$")


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: operations, requests and answers by status of the generated run (shown by `make fuzz`)."""
    yield
    if not ANSWERS:
        return
    by_status: Counter[int] = Counter()
    for (_, status), n in ANSWERS.items():
        by_status[status] += n
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items()))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # output of a teardown is captured otherwise
        print(
            f"\nschemathesis: {len({op for op, _ in ANSWERS})} operations, {sum(ANSWERS.values())} requests, "
            f"{EXAMPLES_PER_OPERATION} examples each; answers by status: {statuses}; "
            f"server errors: {sum(n for s, n in by_status.items() if s >= 500)}; every status checked against the "
            "operation's declared ones (a 5xx or an undeclared status fails its test)"
        )


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
    ANSWERS[(f"{case.method} {case.path}", response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path with every path parameter set to 1, operation) of every documented operation."""
    found = []
    for path, item in _document()["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path), operation))
    return found


OPERATIONS = _operations()


def _body_fields(operation: dict[str, Any]) -> list[str]:
    """The top-level fields of an operation's JSON body (of its items, for a list)."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = _document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    schema = schema.get("items", schema)
    return sorted(schema.get("properties", {}))


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_nul_and_invalid_utf8_answer_a_declared_4xx(
    client: TestClient,  # type: ignore[type-arg]
    method: str,
    path: str,
    operation: dict[str, Any],
) -> None:
    """What random generation rarely reaches: a NUL character in every text query parameter, and a JSON body
    with invalid UTF-8 (and one with a NUL inside a string) on every operation that takes a body."""
    declared = set(operation["responses"])
    attempts: list[dict[str, Any]] = []
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            attempts.append({"params": {parameter["name"]: "x\x00y"}})
            attempts.append({"url": f"{path}?{parameter['name']}=%FF%FE"})
    if "requestBody" in operation:
        headers = {"content-type": "application/json"}
        attempts.append({"content": b'{"\xff\xfe": 1}', "headers": headers})  # in a key: read before any field
        attempts.append({"content": b'[{"a": "\xff\xfe"}]', "headers": headers})
        for name in _body_fields(operation):  # in a value: read once the fields are known
            attempts.append({"content": b'{"' + name.encode() + b'": "\xff\xfe"}', "headers": headers})
        attempts.append({"content": b'{"message": "a\\u0000b", "value": "\\u0000"}', "headers": headers})
    for attempt in attempts:
        url = attempt.pop("url", path)
        response = client.request(method, url, **attempt)
        assert response.status_code < 500, (method, url, attempt, response.status_code, response.text[:300])
        assert str(response.status_code) in declared, (method, url, response.status_code, sorted(declared))

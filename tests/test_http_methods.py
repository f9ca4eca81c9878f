"""OPTIONS and HEAD on every route: OPTIONS answers 204 before any permission rule runs (CORS preflights carry no
credentials), and HEAD answers as GET would, without the body."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from service.app import create_app
from service.core.settings import Settings


def served_paths(app: Litestar) -> list[tuple[str, set[str]]]:
    """Every HTTP route as a concrete path (path parameters set to 1) with its methods."""
    routes = [r for r in app.routes if isinstance(r, HTTPRoute)]
    paths = []
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        if path.startswith("/api/") and not path.endswith("/"):
            path += "/"
        paths.append((path, set(route.methods)))
    return sorted(paths)


def test_options_answers_204_without_credentials_on_every_route(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        for path, _ in served_paths(app):
            response = client.options(path)
            assert response.status_code == 204, (path, response.status_code, response.text)
            assert "OPTIONS" in response.headers["allow"], path


def test_head_answers_like_get_without_a_body_on_every_get_route(client: TestClient[Any], settings: Settings) -> None:
    app = create_app(settings)
    checked = 0
    for path, methods in served_paths(app):
        if "GET" not in methods or path.startswith("/docs") or path.endswith("/live/"):
            continue  # the live stream never ends: its HEAD is checked in tests/community/test_live.py
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, (path, head.status_code, get.status_code)
        assert head.content == b"", path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
        checked += 1
    assert checked > 20
    anonymous = client.head("/api/daily/", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.content == b""


def test_cors_is_off_by_default_and_answers_preflights_for_listed_origins(
    settings: Settings, settings_for: Callable[..., Settings], database_url: str, redis_url: str
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"}
    with TestClient(create_app(settings)) as client:
        response = client.options("/api/daily/1/", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    listed = settings_for(database_url, redis_url, CORS_ALLOW_ORIGINS="https://app.example")
    with TestClient(create_app(listed)) as client:
        response = client.options("/api/daily/1/", headers=preflight)
        assert response.status_code in (200, 204), response.text
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "PATCH" in response.headers["access-control-allow-methods"]
        other = client.options("/api/daily/1/", headers={**preflight, "Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"

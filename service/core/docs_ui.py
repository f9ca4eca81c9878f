"""The OpenAPI pages (`/docs`, `/docs/swagger`, `/docs/redoc`) with their scripts and styles served by the service
itself, from the `openapi-ui-bundles` package (Swagger UI and Redoc, Apache-2.0 / MIT): the pages render on an
offline or self-hosted machine, where Litestar's defaults would load them from public CDNs."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import openapi_ui_bundles
from litestar.openapi.plugins import OpenAPIRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS = "/docs/assets"
FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>"


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at `/docs` and `/docs/swagger`, Redoc at `/docs/redoc`, every asset from ASSETS."""
    return [
        SwaggerRenderPlugin(
            js_url=f"{ASSETS}/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
            path=["/", "/swagger"],
            favicon=FAVICON,
        ),
        RedocRenderPlugin(js_url=f"{ASSETS}/redoc.standalone.js", google_fonts=False, path="/redoc", favicon=FAVICON),
    ]


def assets_router() -> Router:
    """The pages' scripts and styles, from the installed package."""
    directories: list[str | PathLike[str] | Path] = [
        Path(openapi_ui_bundles.swagger_ui.static_path),
        Path(openapi_ui_bundles.redoc.static_path),
    ]
    return create_static_files_router(path=ASSETS, directories=directories, include_in_schema=False)

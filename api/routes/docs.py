"""``/docs``: Swagger UI over ``/openapi.json``, served from a local copy (``HM2BP_API_DOCS_ASSETS``,
a folder with ``swagger-ui-bundle.js`` and ``swagger-ui.css``, such as the ``swagger-ui-dist`` npm
package's), never from a CDN; the app mounts it only when that setting is given. The page has no
inline script, so it is served with the dashboard's Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

from ..page_headers import HEADERS

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hm2bp API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>
"""
INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'


def router(assets: Path) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/docs")
    def docs_page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=HEADERS)

    @routes.get("/docs/init.js")
    def docs_init() -> Response:
        return Response(INIT, media_type="text/javascript", headers=HEADERS)

    @routes.get("/docs/assets/{name}")
    def docs_asset(name: str) -> FileResponse:
        if name not in ASSETS or not (assets / name).is_file():
            raise HTTPException(404, f"no docs asset {name!r} in HM2BP_API_DOCS_ASSETS")
        return FileResponse(assets / name, media_type=ASSETS[name], headers=HEADERS)

    return routes

"""The web dashboard: ``GET /`` and its static files, shipped inside the package (``api/static``: the
entry module ``app.js`` and the ES modules it imports from ``static/js/``, served at ``/static/...``),
plus ``/static/vendor/plotly.min.js`` served from the installed ``plotly`` package. No CDN: the
page works offline. Routing within the page is by URL fragment (``/#/jobs/ID``), so ``/`` is the
only HTML document (also reachable as ``/static/index.html``, with the same headers); it is served
with a strict Content-Security-Policy (scripts from this origin only, no inline script), a second
line of defence behind the page's own rule of rendering every user-supplied string as text."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from ..page_headers import HEADERS

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def plotly_bundle() -> Path | None:
    """The ``plotly.min.js`` that the plotly Python package ships, without importing plotly."""
    found = importlib.util.find_spec("plotly")
    for folder in (found.submodule_search_locations or []) if found else []:
        candidate = Path(folder) / "package_data" / "plotly.min.js"
        if candidate.is_file():
            return candidate
    return None


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/static/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    bundle = plotly_bundle()
    if bundle is None:
        raise HTTPException(404, "plotly is not installed (pip install plotly): the dashboard's charts need it")
    return FileResponse(bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


class DashboardFiles(StaticFiles):
    """The static files, every ``.js`` (the ES modules, nested folders included) as ``text/javascript``,
    the type that HTML names for JavaScript (browsers refuse a module script of a non-JavaScript type).
    Left to :mod:`mimetypes`, the type would depend on the platform: Python 3.11's own table says
    ``application/javascript``, and the host's ``/etc/mime.types``, where there is one, overrides it."""

    def file_response(self, full_path, stat_result, scope, status_code=200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".js") and response.status_code != 304:
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        # an HTML file served as a static file (/static/index.html) is the dashboard too: same headers as /
        response.headers.update(HEADERS if str(full_path).endswith((".html", ".htm")) else
                                {"X-Content-Type-Options": "nosniff"})
        return response


static_files = DashboardFiles(directory=STATIC_DIR)

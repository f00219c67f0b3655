"""The web dashboard: static pages served by the API app (no build step).

``static/`` holds one HTML page, one script and one stylesheet: a single page app (hash
routes ``#/``, ``#/incidents/<id>``, ``#/approvals``, ``#/audit``) that reads the REST API
under ``/api/v1`` with the bearer token the operator gave it (``/?token=...`` once, then kept
in the browser's localStorage) and redraws on every audit event from ``/api/v1/events``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
INDEX = STATIC / "index.html"
_NO_CACHE = {"Cache-Control": "no-cache"}


class _RevalidatedStatic(StaticFiles):
    """Static files the browser must revalidate, so an upgrade is seen on the next load."""

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_NO_CACHE)
        return response


def index_response() -> FileResponse:
    """The dashboard page itself (the app behind it needs no token to load; its API calls do)."""
    return FileResponse(INDEX, media_type="text/html", headers=_NO_CACHE)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's assets at ``/static`` and its page at ``/`` (unless the app already
    routes ``/``; the first route registered wins)."""
    if not STATIC.is_dir():
        return
    app.mount("/static", _RevalidatedStatic(directory=STATIC), name="static")
    if not any(getattr(r, "path", None) == "/" for r in app.router.routes):
        app.add_api_route("/", index_response, methods=["GET"], include_in_schema=False)

"""The web dashboard: static pages served by the API app (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its assets at ``/static`` (when they are installed)."""
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

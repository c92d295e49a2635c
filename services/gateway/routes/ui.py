"""The dashboard: static files under /ui (shipped in the package), public like the page of a login.

The page holds no data: everything it shows comes from the API with the user's token (asked by
the page, kept in the browser's sessionStorage). Served with a content security policy allowing
only this origin's own scripts, styles and connections (no inline script, no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from litestar import Response, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

UI_DIR: Final = Path(__file__).resolve().parent.parent / "ui"
UI_PATH: Final = "/ui"
SECURITY_HEADERS: Final = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


async def _secure(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """The gateway's address opens the dashboard."""
    return Redirect(f"{UI_PATH}/")


dashboard = create_static_files_router(
    path=UI_PATH,
    directories=[UI_DIR],
    html_mode=True,
    name="dashboard",
    after_request=_secure,
    include_in_schema=False,
)

ROUTES: list[HTTPRouteHandler | Router] = [root, dashboard]

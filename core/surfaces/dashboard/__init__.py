"""The dashboard at ``/``: one static HTML+JS page (no build step, no CDN) served by the daemon.

It shows loaded models (each bar against the largest model, estimates marked as such;
the device bar against the budget and, zoomed, against what is loaded), keep-alive
countdowns, every request from any surface (cancel buttons on running ones), the request
queue, recent plans and events and per-tool latencies, with buttons to load, unload and
pin models and a small chat panel streaming from the assistant; refreshed from
``/api/status`` and ``/api/dashboard/requests``, updated live from ``/events``; the
actions are ``/api/dashboard/*`` (``api.py``).

The page needs the bearer token like every other route, but a browser cannot send an
``Authorization`` header on a plain navigation, so:

* ``/?token=<token>`` (once, e.g. the link ``loom serve`` prints) or the login form on
  ``/`` sets an ``HttpOnly; SameSite=Strict`` cookie and redirects to ``/`` (the token
  leaves the address bar and the history);
* the guard accepts that cookie for ``GET`` on the read-only paths the page uses
  (``COOKIE_PATHS``) and for ``POST`` on the dashboard's own actions (``COOKIE_ACTIONS``)
  only together with the ``X-Loom-Dashboard: 1`` header, never for the API or MCP.
  Host and Origin checks apply as everywhere.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

COOKIE = "loom_token"
COOKIE_PATHS = ("/", "/api/status", "/events", "/metrics", "/api/dashboard/requests")
COOKIE_ACTIONS = ("/api/dashboard/",)  # POST, with X-Loom-Dashboard: 1 (see api.py)
HERE = Path(__file__).parent
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}


def _login_page(error: str = "") -> str:
    html = (HERE / "login.html").read_text(encoding="utf-8")
    return html.replace("{{error}}", error)


class Dashboard:
    def __init__(self, token: str | None) -> None:
        self.token = token

    def _ok(self, value: str | None) -> bool:
        if self.token is None:
            return True
        return bool(value) and hmac.compare_digest(value.encode(), self.token.encode())  # type: ignore[union-attr]

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        return self._ok(bearer) or self._ok(request.cookies.get(COOKIE))

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self.index, methods=["GET", "HEAD"]), Route("/login", self.login, methods=["POST"])]

    def _with_cookie(self, token: str) -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/", max_age=30 * 24 * 3600)
        return resp

    async def index(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if self._ok(given):
                return self._with_cookie(given)
            return HTMLResponse(_login_page("That token is not valid."), status_code=401, headers=_SECURITY_HEADERS)
        if not self.authorized(request):
            return HTMLResponse(_login_page(), status_code=401, headers=_SECURITY_HEADERS)
        return HTMLResponse((HERE / "index.html").read_text(encoding="utf-8"), headers=_SECURITY_HEADERS)

    async def login(self, request: Request) -> Response:
        body = (await request.body())[:4096].decode("utf-8", "replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        if self._ok(token) and token:
            return self._with_cookie(token)
        return HTMLResponse(_login_page("That token is not valid."), status_code=401, headers=_SECURITY_HEADERS)


def cookie_token(cookie_header: str | None) -> str | None:
    """The dashboard cookie's value from a raw ``Cookie`` header."""
    if not cookie_header:
        return None
    from starlette.requests import cookie_parser

    return cookie_parser(cookie_header).get(COOKIE)


def build(token: str | None) -> Any:
    return Dashboard(token)

"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document and the live dashboard page.

The dashboard (`GET /dashboard`) is one static page (plain HTML, CSS and JavaScript, no build step) that
polls `GET /v1/admin/dashboard` every second with the admin token, which the operator gives in the URL
fragment (`/dashboard#token=...`, never sent to the server) or in the page's form. The page holds no data,
so it is public; the JSON behind it takes the admin token."""

import base64
import hashlib
import re
from pathlib import Path
from typing import Literal

from aiohttp import web

from db import reports
from db.errors import FairlaneError
from service.api import bodies
from service.api.auth import require_admin
from service.api.routing import Route
from service.api.state import HEAD_REVISION, METRICS, OPENAPI, POOL
from service.model.fields import Shape

PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard.html"


class Health(Shape):
    status: Literal["ok"]


class Ready(Shape):
    status: Literal["ready"]
    revision: str


async def healthz(request: web.Request) -> web.Response:
    return bodies.respond(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers and its schema is at the migrations' head."""
    async with request.app[POOL].acquire(timeout=5) as connection:
        revision = await reports.revision(connection)
    head = request.app[HEAD_REVISION]
    if revision != head:
        raise FairlaneError("unavailable", f"the database is at revision {revision}, not {head}")
    return bodies.respond(Ready(status="ready", revision=head))


async def metrics(request: web.Request) -> web.Response:
    require_admin(request)  # tenant names and rates are operators' business (Prometheus: a bearer token)
    body = await request.app[METRICS].render(request.app[POOL])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def _hashes(html: str, tag: str) -> str:
    """CSP sources allowing exactly the page's inline <script> or <style> blocks."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() for block in blocks)
    return " ".join(f"'sha256-{digest}'" for digest in digests)


def _page() -> tuple[bytes, dict[str, str]]:
    """The page, and headers that let it run its own inline script and style and talk to this server only."""
    html = PAGE.read_text(encoding="utf-8")
    policy = (
        "default-src 'none'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')}"
    )
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return html.encode(), headers


PAGE_BODY, PAGE_HEADERS = _page()


async def dashboard_page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE_BODY, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


ROUTES = [
    Route("GET", "/healthz", healthz, "The process is up", "none", {200: Health}),
    Route("GET", "/readyz", readyz, "The database answers and is at the migrations' head", "none", {200: Ready}),
    Route("GET", "/metrics", metrics, "Prometheus metrics (admin token)", "admin", {200: None}, (401, 403),
          content_type="text/plain"),
    Route("GET", "/openapi.json", openapi_document, "This document", "none", {200: None}),
    Route("GET", "/dashboard", dashboard_page,
          "The live dashboard page; it polls /v1/admin/dashboard with the admin token given as #token=...", "none",
          {200: None}, content_type="text/html"),
]  # fmt: skip

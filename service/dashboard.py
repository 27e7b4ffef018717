"""The live dashboard: `GET /dashboard`, one static page (plain HTML, CSS and JavaScript, no build step)
that polls `GET /v1/admin/dashboard` every second with the admin token, which the operator gives in the
URL fragment (`/dashboard#token=...`, never sent to the server) or in the page's form. The page holds no
data, so it is public; the JSON behind it takes the admin token."""

import asyncio
import base64
import hashlib
import re
from pathlib import Path

from aiohttp import web

from db import admin
from service.api_json import dumps
from service.auth import require_admin
from service.state import ADMIN_POOL

PAGE = Path(__file__).resolve().parent / "static" / "dashboard.html"


def _hashes(html: str, tag: str) -> str:
    """CSP sources allowing exactly the page's inline <script> or <style> blocks."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() for block in blocks)
    return " ".join(f"'sha256-{digest}'" for digest in digests)


def _headers(html: str) -> dict[str, str]:
    """The page may run its own inline script and style and talk to this server, nothing else."""
    policy = (
        "default-src 'none'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')}"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


async def dashboard_data(request: web.Request) -> web.Response:
    require_admin(request)
    reading = await asyncio.to_thread(admin.run, request.app[ADMIN_POOL], admin.dashboard)
    return web.json_response(reading, dumps=dumps, headers={"Cache-Control": "no-store"})


def add_routes(router: web.UrlDispatcher) -> None:
    html = PAGE.read_text(encoding="utf-8")
    body, headers = html.encode(), _headers(html)

    async def dashboard_page(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    router.add_get("/dashboard", dashboard_page)
    router.add_get("/v1/admin/dashboard", dashboard_data)

"""Pages from Jinja templates, the console's security headers, and its few static files.

Every asset ships inside the package (nothing from a CDN). The static files are a fixed list
read once: a name not in it is 404, so no path under ``/admin/ui/static/`` can reach another
file. htmx is vendored as released (``static/htmx.min.js``, version in :data:`HTMX_VERSION`,
its 0BSD license beside it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import jinja2
from aiohttp import web

HTMX_VERSION = "2.0.11"
PREFIX = "/admin/ui"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on the console's own forms, and
    # the origin check could not tell them from a sandboxed page's. Other sites get nothing.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_STATIC_TYPES = {
    "htmx.min.js": "text/javascript",
    "console.js": "text/javascript",
    "console.css": "text/css",
    "htmx.LICENSE.txt": "text/plain",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    folder = files(__package__ or "gateway.web.console").joinpath("static")
    assets = {}
    for name, content_type in _STATIC_TYPES.items():
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[name] = Asset(body, content_type, etag)
    return assets


ASSETS = _load_assets()

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.web.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.globals["ui"] = PREFIX
ENVIRONMENT.globals["asset"] = lambda name: f"{PREFIX}/static/{name}?v={ASSETS[name].etag[1:9]}"


def html(
    template: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> web.Response:
    """A rendered page with the console's security headers."""
    body = ENVIRONMENT.get_template(template).render(**values)
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


def redirect(target: str) -> web.Response:
    """A 303 to a console page (a path of this site, never a URL from the request)."""
    assert target.startswith(PREFIX + "/")
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": target})


async def static(request: web.Request) -> web.Response:
    """One of the listed assets; anything else is 404."""
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound(headers=SECURITY_HEADERS)
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": "public, max-age=86400",
        "ETag": asset.etag,
    }
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)

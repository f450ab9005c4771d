"""The gateway's own public URLs, which replace RunComfy's in every response.

Clients such as runcomfy-cli follow the returned ``result_url``: if it pointed at RunComfy, the
client would leave the gateway with a gateway id RunComfy has never seen.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

URL_FIELDS = ("status_url", "result_url", "cancel_url")


def public_base(request: web.Request, configured: str) -> str:
    """``GATEWAY_PUBLIC_URL`` if set, else scheme and host as the client saw them."""
    if configured:
        return configured
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    scheme = proto if proto in ("http", "https") else request.scheme
    return f"{scheme}://{host or request.host}"


def model_request_urls(base: str, rid: str) -> dict[str, str]:
    prefix = f"{base}/v1/requests/{quote(rid, safe='')}"
    return {f"{leaf}_url": f"{prefix}/{leaf}" for leaf in ("status", "result", "cancel")}


def serverless_request_urls(
    base: str, version: str, deployment_id: str, rid: str
) -> dict[str, str]:
    prefix = (
        f"{base}/prod/{version}/deployments/{quote(deployment_id, safe='')}"
        f"/requests/{quote(rid, safe='')}"
    )
    return {f"{leaf}_url": f"{prefix}/{leaf}" for leaf in ("status", "result", "cancel")}

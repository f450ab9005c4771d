"""The gateway's own public URLs, which replace RunComfy's in every response.

Clients such as runcomfy-cli follow the returned ``result_url``: if it pointed at RunComfy, the
client would leave the gateway with a gateway id RunComfy has never seen.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from gateway.common.errors import BadRequest

URL_FIELDS = ("status_url", "result_url", "cancel_url")


# A host name or address with an optional port, as it may appear in Host or X-Forwarded-Host.
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"\.?(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?"
)


def public_base(request: web.Request, configured: str) -> str:
    """``GATEWAY_PUBLIC_URL`` if set, else scheme and host as the client saw them.

    Those come from headers anyone can send, and they shape the URLs in answers, so they must
    be a plain scheme and host: anything else (a path, credentials, spaces) is a 400."""
    if configured:
        return configured
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    if proto and proto not in ("http", "https"):
        raise BadRequest(
            "X-Forwarded-Proto must be http or https.", detail="invalid_forwarded_proto"
        )
    if not _HOST_RE.fullmatch(host):
        raise BadRequest(
            "The Host or X-Forwarded-Host header is not a host name.",
            detail="invalid_forwarded_host",
        )
    return f"{proto or request.scheme}://{host}"


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

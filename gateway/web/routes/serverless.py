"""RunComfy Serverless routes (v1 and v2): inference, status, result, cancel; management for admins.

Deployment management (list, create, update, delete deployments; account balance) acts on the
gateway's RunComfy account as a whole, so a team key is refused: admin tokens of either role may
read, only the ``admin`` role may change (as their rows in :mod:`gateway.web.operations` say,
checked before the handler runs), and every change is recorded in the audit log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from gateway.common.errors import BadRequest, NotFound
from gateway.common.jsonutil import dumps_exact, json_response
from gateway.jobs.dedup import CACHE_CONTROL_HEADER, parse_cache_control
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamReply
from gateway.upstream.urls import public_base
from gateway.web.appkeys import AUDIT, PROXY, SERVERLESS, SETTINGS, WEBHOOKS
from gateway.web.callers import admin_actor, team_credential
from gateway.web.middlewares.bodies import read_body
from gateway.web.routes.shared import (
    DEPLOYMENT_ID_RE,
    answer_request_call,
    read_body_or_reject,
    submit_response,
)

log = structlog.get_logger(__name__)

# RunComfy's management routes, the only upstream paths the pass-through may reach.
MANAGEMENT_DEPLOYMENTS = "/prod/v2/deployments"
MANAGEMENT_DEPLOYMENT = "/prod/v2/deployments/{deployment_id}"
MANAGEMENT_BALANCE = "/prod/v2/balance"
WEBHOOK_PARAMS = ("webhook", "webhook_intermediate_status")


def _deployment_id(request: web.Request) -> str:
    deployment_id = request.match_info["deployment_id"]
    if not DEPLOYMENT_ID_RE.fullmatch(deployment_id):
        raise NotFound(f"Deployment {deployment_id!r} not found.")
    return deployment_id


async def inference(request: web.Request) -> web.Response:
    cred = team_credential(request)
    version = request.match_info["version"]
    deployment_id = _deployment_id(request)
    raw, body = await read_body_or_reject(request)
    control = parse_cache_control(request.headers.get(CACHE_CONTROL_HEADER))
    webhook = _webhook(request, body)
    if any(field in body for field in WEBHOOK_PARAMS):
        # The older body form: the gateway delivers webhooks itself, RunComfy must not.
        body = {k: v for k, v in body.items() if k not in WEBHOOK_PARAMS}
        raw = dumps_exact(body)
    base = public_base(request, request.app[SETTINGS].public_url)
    answer = await request.app[PROXY].submit(
        cred, Api.SERVERLESS, deployment_id, version, raw, body, control, base, webhook
    )
    return submit_response(request, answer)


def _webhook(request: web.Request, body: dict[str, Any]) -> tuple[str, bool] | None:
    """The caller's webhook (query form, else the older body form), checked against policy."""
    url: Any = request.query.get("webhook", body.get("webhook"))
    if url is None:
        return None
    if not isinstance(url, str) or not url:
        raise BadRequest("The webhook must be a URL string.", detail="webhook_invalid")
    flag: Any = request.query.get(
        "webhook_intermediate_status", body.get("webhook_intermediate_status", False)
    )
    intermediate = flag is True or (isinstance(flag, str) and flag.lower() in ("true", "1"))
    return request.app[WEBHOOKS].policy.check_url(url), intermediate


async def request_call(request: web.Request) -> web.Response:
    return await answer_request_call(request, Api.SERVERLESS, _deployment_id(request))


async def management(request: web.Request) -> web.Response:
    """Admin pass-through to RunComfy's deployment management and balance, and only to them:
    the upstream path is built from the route's template and a validated deployment id, never
    from the request's path (where ``%2F`` and ``..`` would decode into other routes)."""
    if request.method == "GET":
        reply = await _forward(request, None)
        return json_response(reply.body, status=reply.status)
    actor = admin_actor(request)
    # Read first: a body over the limit is refused before anything is asked of RunComfy.
    data: bytes = await read_body(request)
    deployment_id = _deployment_id(request) if "deployment_id" in request.match_info else None
    before: Any = None
    if deployment_id is not None:
        # The audit record's "before": RunComfy owns deployments, so ask it (a 404 stops here).
        path = _deployment_path(deployment_id)
        before = (await request.app[SERVERLESS].call("GET", path, idempotent=True)).body
    reply = await _forward(request, data)
    after = None if request.method == "DELETE" else reply.body
    if deployment_id is None and isinstance(after, dict):
        deployment_id = str(after.get("id", ""))
    action = {"POST": "deployment.create", "PATCH": "deployment.update"}.get(
        request.method, "deployment.delete"
    )
    await request.app[AUDIT].record(
        actor, action, f"deployment/{deployment_id or ''}", before, after
    )
    return json_response(reply.body, status=reply.status)


def _deployment_path(deployment_id: str) -> str:
    return MANAGEMENT_DEPLOYMENT.format(deployment_id=quote(deployment_id, safe=""))


async def _forward(request: web.Request, data: bytes | None) -> UpstreamReply:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else ""
    if template == MANAGEMENT_DEPLOYMENT:
        path = _deployment_path(_deployment_id(request))
    elif template in (MANAGEMENT_DEPLOYMENTS, MANAGEMENT_BALANCE):
        path = template
    else:  # a route added here without a template above must not forward whatever it got
        raise NotFound("Not found.")
    log.info("management_call", method=request.method, upstream_route=template)
    return await request.app[SERVERLESS].call(
        request.method,
        path,
        params=dict(request.query),
        data=data or None,
        idempotent=request.method == "GET",
    )

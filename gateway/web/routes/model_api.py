"""RunComfy Model API routes: submit, status, result, cancel and the model catalog."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.common.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
)
from gateway.common.jsonutil import json_response
from gateway.jobs.dedup import CACHE_CONTROL_HEADER, parse_cache_control
from gateway.jobs.proxy import SubmitAnswer
from gateway.upstream.apis import Api
from gateway.upstream.urls import public_base
from gateway.web.appkeys import (
    CATALOG,
    GATEWAY_REQUEST_ID,
    PROXY,
    RAW_BODY,
    SETTINGS,
    TARGET,
    TEAM_ID,
    TEAMS,
)
from gateway.web.callers import presents_admin_token, require_viewer, team_credential
from gateway.web.middlewares.bodies import read_json_object

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


def checked_model_id(model_id: str) -> str:
    """RunComfy model ids are slash-separated segments; anything else names no model."""
    if not MODEL_ID_RE.fullmatch(model_id) or any(s in (".", "..") for s in model_id.split("/")):
        raise NotFound(f"Model {model_id!r} not found.", detail="unknown_model")
    return model_id


async def read_body_or_reject(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its JSON object. The key is verified in Redis before a body over 64 KiB
    is read further (a smaller one is verified by the admission that follows), and before a bad
    body is answered: an unverified caller gets 401, not a description of its body."""
    teams, cred = request.app[TEAMS], team_credential(request)
    try:
        body = await read_json_object(request, verify=lambda: teams.authenticate(cred))
    except (BadRequest, PayloadTooLarge, RequestTimeout):
        await teams.authenticate(cred)
        raise
    return request[RAW_BODY], body


def submit_response(request: web.Request, answer: SubmitAnswer) -> web.Response:
    request[TEAM_ID] = answer.principal.team_id
    request[GATEWAY_REQUEST_ID] = answer.record.request_id
    request[TARGET] = answer.record.target
    headers = {
        "X-Gateway-Cache": answer.outcome.value,
        "X-Gateway-Cache-Key": answer.identity,
        **answer.headers,
    }
    return json_response(answer.body, headers=headers)


async def submit(request: web.Request) -> web.Response:
    cred = team_credential(request)
    model_id = request.match_info["model_id"]
    try:
        checked_model_id(model_id)
        control = parse_cache_control(request.headers.get(CACHE_CONTROL_HEADER))
    except GatewayError:
        await request.app[TEAMS].authenticate(cred)
        raise
    raw, body = await read_body_or_reject(request)
    if request.app[PROXY].needs_catalog(Api.MODEL, model_id):
        await request.app[TEAMS].authenticate(cred)  # one more round trip, on a cold model only
    base = public_base(request, request.app[SETTINGS].public_url)
    answer = await request.app[PROXY].submit(
        cred, Api.MODEL, model_id, "", raw, body, control, base
    )
    return submit_response(request, answer)


async def answer_request_call(
    request: web.Request, api: Api, deployment_id: str | None = None
) -> web.Response:
    """status, result or cancel of a gateway request id, for either API."""
    cred = team_credential(request)
    rid = request.match_info["request_id"]
    leaf = request.match_info["leaf"]
    proxy = request.app[PROXY]
    base = public_base(request, request.app[SETTINGS].public_url)
    status = 200
    if leaf == "status":
        principal, body = await proxy.status(cred, rid, api, base, deployment_id)
    elif leaf == "result":
        include_cost = request.query.get("include_cost", "").lower() in ("true", "1")
        principal, body = await proxy.result(cred, rid, api, base, include_cost, deployment_id)
    else:
        principal, status, body = await proxy.cancel(cred, rid, api, deployment_id)
    request[TEAM_ID] = principal.team_id
    request[GATEWAY_REQUEST_ID] = rid
    return json_response(body, status=status)


async def request_call(request: web.Request) -> web.Response:
    return await answer_request_call(request, Api.MODEL)


async def _catalog_caller(request: web.Request) -> None:
    """The catalog is open to any verified team key and to admin tokens of either role."""
    if presents_admin_token(request):
        await require_viewer(request)
        return
    principal = await request.app[TEAMS].authenticate(team_credential(request))
    request[TEAM_ID] = principal.team_id


async def list_models(request: web.Request) -> web.Response:
    await _catalog_caller(request)
    return json_response(await request.app[CATALOG].list_models(request.query))


async def categories(request: web.Request) -> web.Response:
    await _catalog_caller(request)
    return json_response(await request.app[CATALOG].categories())


async def get_model(request: web.Request) -> web.Response:
    await _catalog_caller(request)
    model_id = checked_model_id(request.match_info["model_id"])
    return json_response(await request.app[CATALOG].model(model_id))


def setup_model_api_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/categories", categories)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/models/{model_id:.+}", submit)
    app.router.add_get("/v1/requests/{request_id}/{leaf:status|result}", request_call)
    app.router.add_post("/v1/requests/{request_id}/{leaf:cancel}", request_call)

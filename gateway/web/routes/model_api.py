"""RunComfy Model API routes: submit, status, result, cancel and the model catalog.

Who may call each is in the operations table (:mod:`gateway.web.operations`): a team key for
jobs (verified in the same Redis round trip as the route's work), a team key or an admin token
for the catalog (checked before the handler runs).
"""

from __future__ import annotations

from aiohttp import web

from gateway.common.errors import GatewayError
from gateway.common.jsonutil import json_response
from gateway.jobs.dedup import CACHE_CONTROL_HEADER, parse_cache_control
from gateway.upstream.apis import Api
from gateway.upstream.urls import public_base
from gateway.web.appkeys import CATALOG, PROXY, SETTINGS, TEAMS
from gateway.web.callers import team_credential
from gateway.web.routes.shared import (
    answer_request_call,
    checked_model_id,
    read_body_or_reject,
    submit_response,
)


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


async def request_call(request: web.Request) -> web.Response:
    return await answer_request_call(request, Api.MODEL)


async def list_models(request: web.Request) -> web.Response:
    return json_response(await request.app[CATALOG].list_models(request.query))


async def categories(request: web.Request) -> web.Response:
    return json_response(await request.app[CATALOG].categories())


async def get_model(request: web.Request) -> web.Response:
    model_id = checked_model_id(request.match_info["model_id"])
    return json_response(await request.app[CATALOG].model(model_id))

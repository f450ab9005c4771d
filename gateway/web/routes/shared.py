"""What several route modules need: identifier rules, admin body validation and the team-job
answers common to the Model API and Serverless (route modules never import each other)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.common.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ValidationFailed,
)
from gateway.common.jsonutil import json_response
from gateway.jobs.proxy import SubmitAnswer
from gateway.upstream.apis import Api
from gateway.upstream.urls import public_base
from gateway.web.appkeys import (
    GATEWAY_REQUEST_ID,
    PROXY,
    RAW_BODY,
    SETTINGS,
    TARGET,
    TEAM_ID,
    TEAMS,
)
from gateway.web.callers import team_credential
from gateway.web.middlewares.bodies import read_json_object

M = TypeVar("M", bound=BaseModel)

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
DEPLOYMENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def checked_model_id(model_id: str) -> str:
    """RunComfy model ids are slash-separated segments; anything else names no model."""
    if not MODEL_ID_RE.fullmatch(model_id) or any(s in (".", "..") for s in model_id.split("/")):
        raise NotFound(f"Model {model_id!r} not found.", detail="unknown_model")
    return model_id


def validated(model: type[M], body: dict[str, Any]) -> M:
    """An admin body as its model, or 422 with pydantic's field errors (no input echoed)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        detail = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed(detail=detail) from None


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

"""The admin API under ``/admin/v1/``: teams and their keys. Guarded by ``GATEWAY_ADMIN_TOKEN``."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.appkeys import DEDUP, RECORDS, TEAMS
from gateway.errors import BadRequest, ValidationFailed
from gateway.jsonutil import json_response, read_json_object
from gateway.middlewares.auth import require_admin

M = TypeVar("M", bound=BaseModel)


class CreateTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team_id: str | None = Field(default=None, max_length=63)
    name: str | None = Field(default=None, max_length=200)


PolicyName = Literal["cache", "inflight", "off"]


class DedupPolicy(BaseModel):
    """A team's whole dedup policy; the most restrictive applicable entry wins."""

    model_config = ConfigDict(extra="forbid")
    default: PolicyName | None = None
    keys: dict[str, PolicyName] = Field(default_factory=dict)
    models: dict[str, PolicyName] = Field(default_factory=dict)


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)


def _validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        detail = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed(detail=detail) from None


async def create_team(request: web.Request) -> web.Response:
    require_admin(request)
    body = _validated(CreateTeam, await read_json_object(request, required=False))
    team = await request.app[TEAMS].create_team(body.team_id, body.name)
    return json_response(team.to_json(), status=201)


async def list_teams(request: web.Request) -> web.Response:
    require_admin(request)
    teams = await request.app[TEAMS].list_teams()
    return json_response({"teams": [t.to_json() for t in teams]})


async def get_team(request: web.Request) -> web.Response:
    require_admin(request)
    service = request.app[TEAMS]
    team = await service.get_team(request.match_info["team_id"])
    keys = await service.list_keys(team.team_id)
    active = sum(1 for k in keys if k.revoked_at is None)
    return json_response({**team.to_json(), "keys": len(keys), "active_keys": active})


async def delete_team(request: web.Request) -> web.Response:
    require_admin(request)
    team_id = request.match_info["team_id"]
    await request.app[TEAMS].delete_team(team_id)
    return json_response({"team_id": team_id, "deleted": True})


async def create_key(request: web.Request) -> web.Response:
    require_admin(request)
    body = _validated(CreateKey, await read_json_object(request, required=False))
    info, key = await request.app[TEAMS].create_key(request.match_info["team_id"], body.name)
    return json_response({**info.to_json(), "key": key}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    require_admin(request)
    keys = await request.app[TEAMS].list_keys(request.match_info["team_id"])
    return json_response({"keys": [k.to_json() for k in keys]})


async def get_key(request: web.Request) -> web.Response:
    require_admin(request)
    key = await request.app[TEAMS].get_key(request.match_info["key_id"])
    return json_response(key.to_json())


async def revoke_key(request: web.Request) -> web.Response:
    require_admin(request)
    key = await request.app[TEAMS].revoke_key(request.match_info["key_id"])
    return json_response(key.to_json())


async def unknown_submits(request: web.Request) -> web.Response:
    """Submits whose outcome is unknown (RunComfy never answered), for reconciliation."""
    require_admin(request)
    team_id = request.match_info["team_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    records = await request.app[RECORDS].unknown_submits(slot, team_id)
    return json_response(
        {
            "requests": [
                {
                    "request_id": r.request_id,
                    "api": r.api.value,
                    "target": r.target,
                    "key_id": r.key_id,
                    "created_at": r.created_at,
                }
                for r in records
            ]
        }
    )


async def get_dedup_policy(request: web.Request) -> web.Response:
    require_admin(request)
    slot = await request.app[TEAMS].slot_of(request.match_info["team_id"])
    return json_response(await request.app[DEDUP].get_policy(slot))


async def put_dedup_policy(request: web.Request) -> web.Response:
    require_admin(request)
    policy = _validated(DedupPolicy, await read_json_object(request))
    teams = request.app[TEAMS]
    team_id = request.match_info["team_id"]
    slot = await teams.slot_of(team_id)
    known_keys = {k.key_id for k in await teams.list_keys(team_id)}
    unknown = sorted(set(policy.keys) - known_keys)
    if unknown:
        raise ValidationFailed(detail=[f"no key {k!r} in team {team_id!r}" for k in unknown])
    dedup = request.app[DEDUP]
    await dedup.set_policy(slot, policy.default, dict(policy.keys), dict(policy.models))
    return json_response(await dedup.get_policy(slot))


async def purge_team_cache(request: web.Request) -> web.Response:
    """Forget cached results of a team: all, one model's (``?model=``) or one identity's."""
    require_admin(request)
    team_slot = await request.app[TEAMS].slot_of(request.match_info["team_id"])
    slot = request.app[RECORDS].scope_slot(team_slot)
    dedup = request.app[DEDUP]
    identity = request.match_info.get("cache_key")
    model = request.query.get("model")
    if slot != team_slot and identity is None:
        raise BadRequest(
            "The cache is shared by all teams (GATEWAY_CACHE_SCOPE=shared): purge by cache key "
            "or by model instead.",
            detail="shared_cache",
        )
    if identity is not None:
        purged = await dedup.purge_identity(slot, identity)
    elif model:
        purged = await dedup.purge_target(slot, model)
    else:
        purged = await dedup.purge_team(slot)
    return json_response({"purged": purged})


async def purge_model_cache(request: web.Request) -> web.Response:
    """Forget every team's cached results of one model (or deployment)."""
    require_admin(request)
    teams, dedup = request.app[TEAMS], request.app[DEDUP]
    target = request.match_info["target"]
    records = request.app[RECORDS]
    slots = {records.scope_slot(await teams.slot_of(t.team_id)) for t in await teams.list_teams()}
    purged = 0
    for slot in sorted(slots):
        purged += await dedup.purge_target(slot, target)
    return json_response({"purged": purged})


def setup_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/admin/v1/teams", create_team)
    r.add_get("/admin/v1/teams", list_teams)
    r.add_get("/admin/v1/teams/{team_id}", get_team)
    r.add_delete("/admin/v1/teams/{team_id}", delete_team)
    r.add_post("/admin/v1/teams/{team_id}/keys", create_key)
    r.add_get("/admin/v1/teams/{team_id}/keys", list_keys)
    r.add_get("/admin/v1/teams/{team_id}/unknown-submits", unknown_submits)
    r.add_get("/admin/v1/teams/{team_id}/dedup-policy", get_dedup_policy)
    r.add_put("/admin/v1/teams/{team_id}/dedup-policy", put_dedup_policy)
    r.add_delete("/admin/v1/teams/{team_id}/cache", purge_team_cache)
    r.add_delete("/admin/v1/teams/{team_id}/cache/{cache_key}", purge_team_cache)
    r.add_delete("/admin/v1/cache/{target:.+}", purge_model_cache)
    r.add_get("/admin/v1/keys/{key_id}", get_key)
    r.add_delete("/admin/v1/keys/{key_id}", revoke_key)

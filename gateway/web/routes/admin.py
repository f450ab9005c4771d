"""The admin API under ``/admin/v1/``: teams, keys, dedup policy, cache, admin tokens, audit.

Reads need an admin token of either role, changes the ``admin`` role: each route's row in the
operations table (:mod:`gateway.web.operations`) says which, and the token is verified before the
handler runs. Answers are the models of :mod:`gateway.web.responses`. Every change is recorded
in the audit log by the route that makes it, with the public view of what changed (never a key
or token).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gateway.access.admins import NAME_RE, AdminRole
from gateway.access.audit import MAX_PAGE, AuditQuery, parse_entry_id
from gateway.access.teams import TEAM_ID_RE, Expiry
from gateway.common.errors import BadRequest, NotFound
from gateway.web.appkeys import ADMINS, AUDIT, DEDUP, RECORDS, SETTINGS, TEAMS
from gateway.web.callers import admin_actor
from gateway.web.middlewares.bodies import read_json_object
from gateway.web.responses import (
    AdminToken,
    AdminTokenList,
    ApiKey,
    ApiKeyList,
    AuditPage,
    DedupPolicyView,
    NewAdminToken,
    NewApiKey,
    PolicyName,
    Purged,
    RotatedApiKey,
    Team,
    TeamDeleted,
    TeamDetail,
    TeamList,
    UnknownSubmit,
    UnknownSubmits,
    Whoami,
    answer,
)
from gateway.web.routes.shared import validated

DAY = 24 * 3600
MAX_KEY_LIFETIME = 10 * 365 * DAY
MAX_GRACE = 90 * DAY


class CreateTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team_id: str | None = Field(default=None, max_length=63, pattern=TEAM_ID_RE.pattern)
    name: str | None = Field(default=None, max_length=200)


class DedupPolicy(BaseModel):
    """A team's whole dedup policy; the most restrictive applicable entry wins
    (``off`` < ``inflight`` < ``seeded`` < ``cache``)."""

    model_config = ConfigDict(extra="forbid")
    default: PolicyName | None = None
    keys: dict[str, PolicyName] = Field(default_factory=dict)
    models: dict[str, PolicyName] = Field(default_factory=dict)


class KeyExpiry(BaseModel):
    """When a new key stops working: at most one of the two, neither means never."""

    model_config = ConfigDict(extra="forbid")
    expires_in_seconds: int | None = Field(default=None, ge=1, le=MAX_KEY_LIFETIME)
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_in_seconds or expires_at, not both")
        return self

    def expiry(self) -> Expiry:
        return Expiry(in_seconds=self.expires_in_seconds, at=self.expires_at)


class CreateKey(KeyExpiry):
    name: str | None = Field(default=None, max_length=200)


class RotateKey(KeyExpiry):
    """The old key keeps working for ``grace_seconds``; the expiry fields are the new key's."""

    grace_seconds: int = Field(default=DAY, ge=0, le=MAX_GRACE)


class CreateAdmin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64, pattern=NAME_RE.pattern)
    role: AdminRole = "viewer"


# --- teams and keys --------------------------------------------------------------------------


async def create_team(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    body = validated(CreateTeam, await read_json_object(request, required=False))
    team = await request.app[TEAMS].create_team(body.team_id, body.name)
    await request.app[AUDIT].record(
        actor, "team.create", f"team/{team.team_id}", None, team.to_json()
    )
    return answer(Team.model_validate(team.to_json()), status=201)


async def list_teams(request: web.Request) -> web.Response:
    teams = await request.app[TEAMS].list_teams()
    return answer(TeamList.model_validate({"teams": [t.to_json() for t in teams]}))


async def get_team(request: web.Request) -> web.Response:
    service = request.app[TEAMS]
    team = await service.get_team(request.match_info["team_id"])
    keys = await service.list_keys(team.team_id)
    active = sum(1 for k in keys if k.active)
    return answer(
        TeamDetail.model_validate({**team.to_json(), "keys": len(keys), "active_keys": active})
    )


async def delete_team(request: web.Request) -> web.Response:
    """Delete a team; the audit record's ``before`` lists the keys that stopped working."""
    actor = admin_actor(request)
    service = request.app[TEAMS]
    team_id = request.match_info["team_id"]
    try:
        team = await service.get_team(team_id)
        before: dict[str, Any] | None = {
            **team.to_json(),
            "keys": [k.to_json() for k in await service.list_keys(team_id)],
        }
    except NotFound:
        before = None  # half-created: the delete below still cleans up its index entry
    await service.delete_team(team_id)
    await request.app[AUDIT].record(actor, "team.delete", f"team/{team_id}", before, None)
    return answer(TeamDeleted(team_id=team_id, deleted=True))


async def create_key(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    body = validated(CreateKey, await read_json_object(request, required=False))
    info, key = await request.app[TEAMS].create_key(
        request.match_info["team_id"], body.name, body.expiry()
    )
    await request.app[AUDIT].record(
        actor, "key.create", f"team/{info.team_id}/key/{info.key_id}", None, info.to_json()
    )
    return answer(NewApiKey.model_validate({**info.to_json(), "key": key}), status=201)


async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[TEAMS].list_keys(request.match_info["team_id"])
    return answer(ApiKeyList.model_validate({"keys": [k.to_json() for k in keys]}))


async def get_key(request: web.Request) -> web.Response:
    key = await request.app[TEAMS].get_key(request.match_info["key_id"])
    return answer(ApiKey.model_validate(key.to_json()))


async def revoke_key(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    teams = request.app[TEAMS]
    before = await teams.get_key(request.match_info["key_id"])
    after = await teams.revoke_key(before.key_id)
    await request.app[AUDIT].record(
        actor,
        "key.revoke",
        f"team/{after.team_id}/key/{after.key_id}",
        before.to_json(),
        after.to_json(),
    )
    return answer(ApiKey.model_validate(after.to_json()))


async def rotate_key(request: web.Request) -> web.Response:
    """A new key of the same team and name (shown once); the old one works for the grace."""
    actor = admin_actor(request)
    body = validated(RotateKey, await read_json_object(request, required=False))
    teams = request.app[TEAMS]
    before = await teams.get_key(request.match_info["key_id"])
    old, new, key = await teams.rotate_key(before.key_id, body.grace_seconds, body.expiry())
    await request.app[AUDIT].record(
        actor,
        "key.rotate",
        f"team/{old.team_id}/key/{old.key_id}",
        before.to_json(),
        {"old": old.to_json(), "new": new.to_json()},
    )
    rotated = {**new.to_json(), "key": key, "replaces": old.to_json()}
    return answer(RotatedApiKey.model_validate(rotated), status=201)


async def unknown_submits(request: web.Request) -> web.Response:
    """Submits whose outcome is unknown (RunComfy never answered), for reconciliation."""
    team_id = request.match_info["team_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    records = await request.app[RECORDS].unknown_submits(slot, team_id)
    submits = [
        UnknownSubmit(
            request_id=r.request_id,
            api=r.api.value,
            target=r.target,
            key_id=r.key_id,
            created_at=r.created_at,
        )
        for r in records
    ]
    return answer(UnknownSubmits(requests=submits))


# --- dedup policy and cache ------------------------------------------------------------------


async def get_dedup_policy(request: web.Request) -> web.Response:
    slot = await request.app[TEAMS].slot_of(request.match_info["team_id"])
    return answer(DedupPolicyView.model_validate(await request.app[DEDUP].get_policy(slot)))


async def put_dedup_policy(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    policy = validated(DedupPolicy, await read_json_object(request))
    teams = request.app[TEAMS]
    team_id = request.match_info["team_id"]
    slot = await teams.slot_of(team_id)
    await teams.require_own_keys(team_id, policy.keys)
    dedup = request.app[DEDUP]
    before = await dedup.get_policy(slot)
    await dedup.set_policy(slot, policy.default, dict(policy.keys), dict(policy.models))
    after = await dedup.get_policy(slot)
    await request.app[AUDIT].record(
        actor, "dedup_policy.replace", f"team/{team_id}/dedup-policy", before, after
    )
    return answer(DedupPolicyView.model_validate(after))


async def purge_team_cache(request: web.Request) -> web.Response:
    """Forget cached results of a team: all, one model's (``?model=``) or one identity's."""
    actor = admin_actor(request)
    team_id = request.match_info["team_id"]
    team_slot = await request.app[TEAMS].slot_of(team_id)
    slot = request.app[RECORDS].scope_shard(team_slot)
    dedup = request.app[DEDUP]
    identity = request.match_info.get("cache_key")
    model = request.query.get("model")
    if model == "":
        # e.g. '?model=$MODEL' with the variable unset: never read that as "purge everything"
        raise BadRequest(
            "'model' is empty: name a model, or leave it out to purge the whole team's cache.",
            detail="model",
        )
    if slot != team_slot and identity is None:
        raise BadRequest(
            "The cache is shared by all teams (GATEWAY_CACHE_SCOPE=shared): purge by cache key "
            "or by model instead.",
            detail="shared_cache",
        )
    if identity is not None:
        purged = await dedup.purge_identity(slot, identity)
        target = f"team/{team_id}/cache/entry/{identity}"
    elif model:
        purged = await dedup.purge_target(slot, model)
        target = f"team/{team_id}/cache/model/{model}"
    else:
        purged = await dedup.purge_team(slot)
        target = f"team/{team_id}/cache"
    await request.app[AUDIT].record(actor, "cache.purge", target, None, {"purged": purged})
    return answer(Purged(purged=purged))


async def purge_model_cache(request: web.Request) -> web.Response:
    """Forget every team's cached results of one model (or deployment)."""
    actor = admin_actor(request)
    teams, dedup = request.app[TEAMS], request.app[DEDUP]
    target = request.match_info["target"]
    records = request.app[RECORDS]
    slots = {records.scope_shard(await teams.slot_of(t.team_id)) for t in await teams.list_teams()}
    purged = 0
    for slot in sorted(slots):
        purged += await dedup.purge_target(slot, target)
    await request.app[AUDIT].record(
        actor, "cache.purge", f"cache/model/{target}", None, {"purged": purged}
    )
    return answer(Purged(purged=purged))


# --- admin tokens and the audit log ----------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    """The caller's admin identity, so a token can be checked without side effects."""
    actor = admin_actor(request)
    return answer(Whoami(name=actor.name, role=actor.role, token_id=actor.token_id))


async def create_admin(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    body = validated(CreateAdmin, await read_json_object(request))
    info, token = await request.app[ADMINS].create(body.name, body.role, actor)
    await request.app[AUDIT].record(
        actor, "admin_token.create", f"admin/{info.token_id}", None, info.to_json()
    )
    return answer(NewAdminToken.model_validate({**info.to_json(), "token": token}), status=201)


async def list_admins(request: web.Request) -> web.Response:
    tokens = await request.app[ADMINS].list_tokens()
    return answer(AdminTokenList.model_validate({"admins": [t.to_json() for t in tokens]}))


async def get_admin(request: web.Request) -> web.Response:
    token = await request.app[ADMINS].get(request.match_info["token_id"])
    return answer(AdminToken.model_validate(token.to_json()))


async def revoke_admin(request: web.Request) -> web.Response:
    """Revoke a named admin token at once; the last admin stays unless bootstrap is set."""
    actor = admin_actor(request)
    admins = request.app[ADMINS]
    before = await admins.get(request.match_info["token_id"])
    bootstrap_set = bool(request.app[SETTINGS].admin_token.get_secret_value())
    after = await admins.revoke(before.token_id, actor, keep_an_admin=not bootstrap_set)
    await request.app[AUDIT].record(
        actor, "admin_token.revoke", f"admin/{after.token_id}", before.to_json(), after.to_json()
    )
    return answer(AdminToken.model_validate(after.to_json()))


def _audit_query(request: web.Request) -> AuditQuery:
    q = request.query
    since: datetime | None = None
    if q.get("since"):
        try:
            since = datetime.fromisoformat(q["since"])
        except ValueError:
            raise BadRequest("'since' must be an ISO 8601 time.", detail="since") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    cursor = q.get("cursor") or None
    if cursor is not None and parse_entry_id(cursor) is None:
        raise BadRequest("'cursor' must be a next_cursor from an earlier page.", detail="cursor")
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"'limit' must be 1 to {MAX_PAGE}.", detail="limit")
    return AuditQuery(
        actor=q.get("actor") or None,
        action=q.get("action") or None,
        target_prefix=q.get("target") or None,
        team=q.get("team") or None,
        since=since,
        cursor=cursor,
        limit=limit,
    )


async def read_audit(request: web.Request) -> web.Response:
    """The audit log, newest first; filters ``actor``, ``action``, ``target`` (a prefix),
    ``team``, ``since``; ``limit`` and ``cursor`` page through it."""
    entries, next_cursor = await request.app[AUDIT].read(_audit_query(request))
    page = {"entries": [e.to_json() for e in entries], "next_cursor": next_cursor}
    return answer(AuditPage.model_validate(page))

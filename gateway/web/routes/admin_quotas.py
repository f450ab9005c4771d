"""Admin API for team limits, access lists, usage and the unreconciled ledger.

Reads need an admin token of either role; changes the ``admin`` role (checked before the handler
runs, as the operations table says), and are audited (an alert
webhook URL only as a fingerprint: such URLs often carry a secret).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.access.audit import fingerprint_url
from gateway.common.errors import BadRequest, ValidationFailed
from gateway.money.quotas import Limits
from gateway.web.appkeys import AUDIT, QUOTAS, SETTINGS, TEAMS, WEBHOOKS
from gateway.web.callers import admin_actor
from gateway.web.middlewares.bodies import read_json_object
from gateway.web.responses import LimitsView, Resolved, Unreconciled, Usage, answer
from gateway.web.routes.shared import validated

MAX_USAGE_DAYS = 366


class Resolve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["charged", "refunded"]
    cost_usd: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)


async def get_limits(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    team_id = request.match_info["team_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    quotas = request.app[QUOTAS]
    limits = await quotas.limits(slot)
    shown = limits.public()
    if actor.role != "admin" and shown.get("alert_webhook"):
        # Webhook URLs often carry their secret in the path: viewers see where, not what.
        shown["alert_webhook"] = fingerprint_url(shown["alert_webhook"])
    budget = await quotas.budget(slot, limits)
    return answer(LimitsView.model_validate({"team_id": team_id, **shown, "budget": budget}))


async def put_limits(request: web.Request) -> web.Response:
    """Replace a team's limits; they apply to the next request on every replica."""
    actor = admin_actor(request)
    limits = validated(Limits, await read_json_object(request))
    teams = request.app[TEAMS]
    team_id = request.match_info["team_id"]
    slot = await teams.slot_of(team_id)
    await teams.require_own_keys(team_id, limits.keys)
    if request.app[SETTINGS].cache_scope == "shared":
        job_bound = limits.job_bound()
        if job_bound:
            raise ValidationFailed(
                "Budgets, per-request cost caps and concurrency limits follow each job in its "
                "team's Redis slot, which the shared cache scope (GATEWAY_CACHE_SCOPE=shared) "
                "does not have; access lists, submit rates and daily limits do apply.",
                detail=[f"{name} needs GATEWAY_CACHE_SCOPE=team" for name in job_bound],
            )
    if limits.alert_webhook:
        request.app[WEBHOOKS].policy.check_url(limits.alert_webhook)
    stored = Limits.model_validate(
        {**limits.model_dump(), "keys": {kid[len(slot) :]: v for kid, v in limits.keys.items()}}
    )
    quotas = request.app[QUOTAS]
    before = await quotas.limits(slot)
    saved = await quotas.set_limits(slot, stored)
    await request.app[AUDIT].record(
        actor, "limits.replace", f"team/{team_id}/limits", _audited(before), _audited(saved)
    )
    budget = await quotas.budget(slot, saved)
    return answer(
        LimitsView.model_validate({"team_id": team_id, **saved.public(), "budget": budget})
    )


def _audited(limits: Limits) -> dict[str, Any]:
    public = limits.public()
    if public.get("alert_webhook"):
        public["alert_webhook"] = fingerprint_url(public["alert_webhook"])
    return public


def _day(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"Invalid date {value!r}: use YYYY-MM-DD.", detail="date") from None


async def get_usage(request: web.Request) -> web.Response:
    """Requests, outcomes, spend, savings and hit rate by day and by model, plus the current
    budget period, queue and unreconciled count."""
    team_id = request.match_info["team_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    quotas = request.app[QUOTAS]
    today = quotas.calendar.current("d").id
    last = _day(request.query.get("to"), date.fromisoformat(today))
    # A week by default, but never before 0001-01-01 (schemathesis: '?to=0001-01-01' was a 500)
    first = _day(request.query.get("from"), last - timedelta(days=min(6, (last - date.min).days)))
    if first > last or (last - first).days >= MAX_USAGE_DAYS:
        raise BadRequest(
            f"'from' must not be after 'to', and the range at most {MAX_USAGE_DAYS} days.",
            detail="range",
        )
    usage = await quotas.usage(slot, first, last)
    budget = await quotas.budget(slot)
    return answer(Usage.model_validate({"team_id": team_id, **usage, "budget": budget}))


async def list_unreconciled(request: web.Request) -> web.Response:
    """Submits of unknown outcome whose reservation still counts against the budget."""
    team_id = request.match_info["team_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    jobs = await request.app[QUOTAS].unreconciled(slot)
    return answer(Unreconciled.model_validate({"team_id": team_id, "jobs": jobs}))


async def resolve_unreconciled(request: web.Request) -> web.Response:
    actor = admin_actor(request)
    body = validated(Resolve, await read_json_object(request))
    team_id = request.match_info["team_id"]
    job_id = request.match_info["job_id"]
    slot = await request.app[TEAMS].slot_of(team_id)
    quotas = request.app[QUOTAS]
    before = next((j for j in await quotas.unreconciled(slot) if j["job_id"] == job_id), None)
    result = await quotas.resolve(slot, job_id, body.outcome == "charged", body.cost_usd)
    await request.app[AUDIT].record(
        actor, "unreconciled.resolve", f"team/{team_id}/unreconciled/{job_id}", before, result
    )
    return answer(Resolved.model_validate({"team_id": team_id, **result}))

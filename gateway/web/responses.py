"""The admin API's answers as pydantic models: each serializes a handler's answer and documents
it in ``/openapi.json`` (its ``model_json_schema``), so the two cannot drift apart.

Field order, names and types are those clients already read (the CLI among them): money is a
JSON number of USD (an integer stays an integer: :data:`Number`), and every field is present,
``null`` when it has no value. Answers the gateway passes on from RunComfy are not modelled
here: those routes mirror RunComfy byte for byte, and :mod:`gateway.web.openapi` describes them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from gateway.access.admins import AdminRole
from gateway.common.jsonutil import json_response
from gateway.money.pricing import Source, Unit

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
"""A number as the services computed it: ``5`` stays ``5``, never ``5.0``."""
PolicyName = Literal["cache", "seeded", "inflight", "off"]
Policy = Annotated[
    PolicyName,
    Field(
        description="Most to least reuse; the most restrictive applicable entry wins. `cache`: "
        "hit completed results and join jobs in flight. `seeded`: `cache` for requests that pin "
        "every seed of the model (present, not `-1` or another random value), `inflight` for "
        "the rest. `inflight`: only join jobs in flight. `off`: every submit is a new RunComfy "
        "job."
    ),
]
Period = Literal["day", "week", "month"]


def answer(body: BaseModel, status: int = 200) -> web.Response:
    """The JSON response of a model (``by_alias``: a field may be named like a keyword)."""
    return json_response(body.model_dump(by_alias=True), status=status)


# --- teams and keys --------------------------------------------------------------------------


class Team(BaseModel):
    team_id: str
    name: str
    created_at: str


class TeamDetail(Team):
    keys: int
    active_keys: int


class TeamList(BaseModel):
    teams: list[Team]


class TeamDeleted(BaseModel):
    team_id: str
    deleted: Literal[True]


class ApiKey(BaseModel):
    key_id: str
    team_id: str
    name: str
    prefix: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    replaced_by: str | None
    active: bool


class NewApiKey(ApiKey):
    """The key itself is shown here once; only its SHA-256 is stored."""

    key: str


class RotatedApiKey(NewApiKey):
    replaces: ApiKey


class ApiKeyList(BaseModel):
    keys: list[ApiKey]


class UnknownSubmit(BaseModel):
    request_id: str
    api: str
    target: str
    key_id: str
    created_at: str


class UnknownSubmits(BaseModel):
    requests: list[UnknownSubmit]


# --- dedup policy and cache ------------------------------------------------------------------


class DedupPolicyView(BaseModel):
    default: Policy | None
    keys: dict[str, Policy]
    models: dict[str, Policy]


class Purged(BaseModel):
    purged: int


# --- admin tokens and the audit log ----------------------------------------------------------


class Whoami(BaseModel):
    name: str
    role: AdminRole
    token_id: str


class AdminToken(BaseModel):
    token_id: str
    name: str
    role: AdminRole
    prefix: str
    created_at: str
    created_by: str
    revoked_at: str | None
    revoked_by: str | None
    active: bool


class NewAdminToken(AdminToken):
    """The token itself is shown here once; only its SHA-256 is stored."""

    token: str


class AdminTokenList(BaseModel):
    admins: list[AdminToken]


class AuditEntry(BaseModel):
    id: str
    at: str
    actor: str
    role: str
    token_id: str
    action: str
    target: str
    before: Any
    after: Any
    correlation_id: str | None  # None: recorded without a request's correlation id


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None


# --- limits, usage and the unreconciled ledger -----------------------------------------------


class Budget(BaseModel):
    period: str
    period_kind: Period
    resets_at: str
    budget_usd: Number | None
    settled_usd: Number
    reserved_usd: Number
    remaining_usd: Number | None
    alerted_percent: int


class KeyLimitsView(BaseModel):
    model_config = ConfigDict(extra="allow")  # a limit added later is shown, not dropped
    rate_per_minute: Number | None
    rate_burst: int | None
    daily_requests: int | None
    budget_usd: Number | None
    max_request_usd: Number | None


class LimitsView(BaseModel):
    """The team's limits as set; `alert_webhook` only as a fingerprint for viewers."""

    model_config = ConfigDict(extra="allow")  # a limit added later is shown, not dropped
    team_id: str
    rate_per_minute: Number | None
    rate_burst: int | None
    daily_requests: int | None
    budget_usd: Number | None
    max_request_usd: Number | None
    budget_period: Period
    max_concurrent: int | None
    max_queue: int | None
    models: list[str] | None
    deployments: list[str]
    alert_webhook: str | None
    keys: dict[str, KeyLimitsView]
    budget: Budget


class Usage(BaseModel):
    team_id: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    totals: dict[str, Number]
    by_day: list[dict[str, Any]]
    by_model: dict[str, dict[str, Number]]
    requests_by_key: dict[str, int]
    running: int
    queued: int
    unreconciled: int
    budget: Budget


class UnreconciledJob(BaseModel):
    job_id: str
    request_id: str
    api: str
    target: str
    created_at: str
    reserved_usd: Number


class Unreconciled(BaseModel):
    team_id: str
    jobs: list[UnreconciledJob]


class Resolved(BaseModel):
    team_id: str
    job_id: str
    outcome: Literal["charged", "refunded"]
    reserved_usd: Number
    settled_usd: Number


# --- pricing ---------------------------------------------------------------------------------


class PriceBook(BaseModel):
    models: dict[str, dict[str, Any]]
    deployments: dict[str, dict[str, Any]]


class ModelPriceSet(BaseModel):
    """The override as stored."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_id: str


class DeploymentPriceSet(BaseModel):
    deployment_id: str
    usd_per_second: Number
    estimated_seconds: Number


class ModelPriceDeleted(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_id: str
    deleted: Literal[True]


class DeploymentPriceDeleted(BaseModel):
    deployment_id: str
    deleted: Literal[True]


class Estimate(BaseModel):
    """What a request would reserve, in micro-dollars, and how it was derived."""

    micro: int
    unit_price_micro: int
    units: Number
    unit: Unit | None
    source: Source
    notes: list[str]

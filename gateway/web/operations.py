"""The operations table: every route the gateway serves, one row per method and path.

The router is built from these rows (:func:`setup_routes`), each behind the guard its
:class:`~gateway.web.spec.Auth` names, and ``/openapi.json`` is rendered from the same rows
(:func:`document`), so a new route is one row here and its handler in a route module. Rows of
one path stay adjacent (one aiohttp resource). Errors common to every route of a kind (auth,
body, unknown route) are added from the row's shape; a row names only its own.
"""

from __future__ import annotations

import functools

from aiohttp import web

from gateway.access.audit import ENTRY_ID_RE
from gateway.common.errors import (
    AccessDenied,
    BadRequest,
    BudgetExhausted,
    CircuitOpen,
    Conflict,
    NotFound,
    PollRateExceeded,
    QueueFull,
    RateLimitExceeded,
    RequestTooExpensive,
    SubmitOutcomeUnknown,
    UpstreamAccountError,
    UpstreamAuthRejected,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from gateway.common.jsonutil import json_response
from gateway.jobs.dedup import CACHE_CONTROL_HEADER
from gateway.money.pricing import DeploymentPrice, ModelPrice
from gateway.money.quotas import Limits
from gateway.web import openapi, responses
from gateway.web.openapi import (
    OPTIONAL_DATE,
    OPTIONAL_DATE_TIME,
    STRING,
    obj,
    ref,
)
from gateway.web.routes import admin, admin_pricing, admin_quotas, model_api, ops, serverless
from gateway.web.routes.shared import DEPLOYMENT_ID_RE
from gateway.web.spec import (
    Auth,
    ErrorSpec,
    Handler,
    Json,
    Ok,
    Operation,
    Param,
    Relayed,
    add_routes,
)

Op = Operation


async def serve_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every route (unauthenticated: RunComfy's routes are public)."""
    return json_response(document())


# Path parameters, with the rules the gateway checks them by.
REQUEST_ID = Param(
    "request_id", "path", {"type": "string"}, "The gateway's request id (from the submit)."
)
MODEL_ID = Param(
    "model_id",
    "path",
    {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"},
    "A RunComfy model id; it contains slashes, e.g. `google/nano-banana/pro/text-to-image`.",
)
DEPLOYMENT_ID = Param(
    "deployment_id",
    "path",
    {"type": "string", "pattern": DEPLOYMENT_ID_RE.pattern},
    "A RunComfy deployment id.",
)
TEAM_ID = Param("team_id", "path", {"type": "string"})
KEY_ID = Param("key_id", "path", {"type": "string"}, "A key's public id (16 characters).")
TOKEN_ID = Param("token_id", "path", {"type": "string"}, "A named admin token's id.")
_DIRECTIVE = r"(no-cache|no-store|max-age=[0-9]+(\.[0-9]+)?)"
CACHE_CONTROL = Param(
    CACHE_CONTROL_HEADER,
    "header",
    {"type": "string", "pattern": rf"^ *{_DIRECTIVE}( *, *{_DIRECTIVE})* *$"},
    "`no-cache` (run fresh, store the result), `no-store` (run fresh, store nothing), "
    "`max-age=N` (reuse only a result under N seconds old); comma-separated.",
)
INCLUDE_COST = Param(
    "include_cost",
    "query",
    {"type": "string", "enum": ["true", "false", "1", "0"]},
    "Add RunComfy's `cost` (USD) to a finished result.",
)
WEBHOOK = Param(
    "webhook",
    "query",
    {"type": "string", "format": "uri"},
    "Called by the gateway (never RunComfy) with this request's id when the job ends; "
    "loopback, link-local and private targets are refused.",
)
WEBHOOK_INTERMEDIATE = Param(
    "webhook_intermediate_status",
    "query",
    {"type": "string", "enum": ["true", "false"]},
    "Also call the webhook on every status change.",
)

RATE_LIMIT = ("RateLimit-Policy", "RateLimit")
SUBMITTED = Ok(
    200,
    ref("SubmitAccepted"),
    "Accepted: a new job, a job already in flight, a cached result, or a queued job",
    ("X-Gateway-Cache", "X-Gateway-Cache-Key", "X-Gateway-Queue-Position", *RATE_LIMIT),
)
UPSTREAM_ERRORS: tuple[ErrorSpec, ...] = (
    UpstreamRateLimited,
    UpstreamBadGateway,
    UpstreamAuthRejected,
    UpstreamUnavailable,
    CircuitOpen,
    UpstreamTimeout,
)
"""Any call to RunComfy that fails on RunComfy's side or between."""
SUBMIT_ERRORS: tuple[ErrorSpec, ...] = (
    BudgetExhausted,
    RequestTooExpensive,
    AccessDenied,
    NotFound,
    Relayed(422),
    RateLimitExceeded,
    QueueFull,
    UpstreamAccountError,
    SubmitOutcomeUnknown,
    *UPSTREAM_ERRORS,
)
POLL_ERRORS: tuple[ErrorSpec, ...] = (
    NotFound,
    PollRateExceeded,
    UpstreamBadGateway,
    UpstreamTimeout,
)
CANCEL_ERRORS: tuple[ErrorSpec, ...] = (*POLL_ERRORS, *UPSTREAM_ERRORS)
CATALOG_ERRORS: tuple[ErrorSpec, ...] = (NotFound, Relayed(404), Relayed(422), *UPSTREAM_ERRORS)
PASSTHROUGH_ERRORS: tuple[ErrorSpec, ...] = (
    NotFound,
    *(Relayed(status) for status in (400, 404, 409, 422, 429)),
    *UPSTREAM_ERRORS,
)
"""Deployment management: RunComfy's own answers are passed on."""
CREATED: tuple[ErrorSpec, ...] = (Conflict, ValidationFailed)
ANY_OBJECT: Json = {"type": "object"}


def _request_ops(
    prefix: str, op_prefix: str, tag: str, params: tuple[Param, ...], handler: Handler
) -> list[Operation]:
    """Status, result and cancel of one API under ``prefix`` (one handler: the ``leaf``)."""
    cancel = "ModelCancel" if tag == "Model API" else "ServerlessCancel"
    return [
        Op(
            "GET",
            f"{prefix}/requests/{{request_id}}/{{leaf:status}}",
            f"{op_prefix}Status",
            "A request's status, answered from Redis",
            tag,
            Auth.TEAM,
            (Ok(200, ref("RequestStatus"), "The request's status"),),
            POLL_ERRORS,
            (*params, REQUEST_ID),
            handler=handler,
        ),
        Op(
            "GET",
            f"{prefix}/requests/{{request_id}}/{{leaf:result}}",
            f"{op_prefix}Result",
            "A request's result (its current state while unfinished)",
            tag,
            Auth.TEAM,
            (Ok(200, ref("RequestResult"), "The result, or the current state"),),
            POLL_ERRORS,
            (*params, REQUEST_ID, INCLUDE_COST),
            handler=handler,
        ),
        Op(
            "POST",
            f"{prefix}/requests/{{request_id}}/{{leaf:cancel}}",
            f"{op_prefix}Cancel",
            "Cancel a request; RunComfy is asked only when its last follower leaves",
            tag,
            Auth.TEAM,
            (Ok(202, ref(cancel), "Cancelled, or not cancellable any more"),),
            CANCEL_ERRORS,
            (*params, REQUEST_ID),
            handler=handler,
        ),
    ]


def _model_api() -> list[Operation]:
    tag = "Model API"
    return [
        Op(
            "GET",
            "/v1/models",
            "listModels",
            "The model catalog (RunComfy's, cached)",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("ModelList"), "A page of models"),),
            CATALOG_ERRORS,
            (
                Param("search", "query", STRING),
                Param("category", "query", STRING),
                Param("kind", "query", STRING),
                Param("include_schema", "query", STRING, "`true` adds each model's input schema"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
                Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9}),
            ),
            handler=model_api.list_models,
        ),
        Op(
            "GET",
            "/v1/models/categories",
            "listCategories",
            "Every category in the catalog",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("Categories"), "The categories"),),
            CATALOG_ERRORS,
            handler=model_api.categories,
        ),
        Op(
            "GET",
            "/v1/models/{model_id:.+}",
            "getModel",
            "One model's catalog entry, with its input schema and price",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("CatalogModel"), "The model"),),
            CATALOG_ERRORS,
            (MODEL_ID,),
            handler=model_api.get_model,
        ),
        Op(
            "POST",
            "/v1/models/{model_id:.+}",
            "submit",
            "Submit a job (deduplicated: a hit, a coalesced follower or a new job)",
            tag,
            Auth.TEAM,
            (SUBMITTED,),
            SUBMIT_ERRORS,
            (MODEL_ID, CACHE_CONTROL),
            ANY_OBJECT,
            handler=model_api.submit,
        ),
        *_request_ops("/v1", "model", tag, (), model_api.request_call),
    ]


def _serverless() -> list[Operation]:
    ops: list[Operation] = []
    for version in ("v1", "v2"):
        tag = f"Serverless {version}"
        prefix = f"/prod/{{version:{version}}}/deployments/{{deployment_id}}"
        ops.append(
            Op(
                "POST",
                f"{prefix}/inference",
                f"serverless{version.upper()}Inference",
                "Run a deployment's workflow (deduplicated like Model API submits)",
                tag,
                Auth.TEAM,
                (SUBMITTED,),
                SUBMIT_ERRORS,
                (DEPLOYMENT_ID, CACHE_CONTROL, WEBHOOK, WEBHOOK_INTERMEDIATE),
                ANY_OBJECT,
                description="The older body form of `webhook` and `webhook_intermediate_status` "
                "works too; it is removed from the body sent to RunComfy.",
                handler=serverless.inference,
            )
        )
        ops += _request_ops(
            prefix, f"serverless{version.upper()}", tag, (DEPLOYMENT_ID,), serverless.request_call
        )
    tag = "Deployment management"
    includes = Param("includes", "query", STRING, "`payload`, `readme` (comma-separated)")
    deployment = ref("Deployment")
    ops += [
        Op(
            "GET",
            serverless.MANAGEMENT_DEPLOYMENTS,
            "listDeployments",
            "The gateway account's deployments (RunComfy's answer)",
            tag,
            Auth.VIEWER,
            (Ok(200, {"type": "array", "items": deployment}, "The deployments"),),
            PASSTHROUGH_ERRORS,
            (Param("ids", "query", STRING, "Comma-separated deployment ids"), includes),
            handler=serverless.management,
            head=False,
        ),
        Op(
            "POST",
            serverless.MANAGEMENT_DEPLOYMENTS,
            "createDeployment",
            "Create a deployment on the gateway's account (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, deployment, "The new deployment"),),
            PASSTHROUGH_ERRORS,
            body=obj(
                {"name": STRING, "workflow_id": STRING, "workflow_version": STRING},
                {"hardware": {"type": "array", "items": STRING}},
                description="RunComfy's deployment fields (passed to RunComfy as sent).",
            ),
            handler=serverless.management,
        ),
        Op(
            "GET",
            serverless.MANAGEMENT_DEPLOYMENT,
            "getDeployment",
            "One deployment",
            tag,
            Auth.VIEWER,
            (Ok(200, deployment, "The deployment"),),
            PASSTHROUGH_ERRORS,
            (DEPLOYMENT_ID, includes),
            handler=serverless.management,
            head=False,
        ),
        Op(
            "PATCH",
            serverless.MANAGEMENT_DEPLOYMENT,
            "updateDeployment",
            "Change a deployment (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, deployment, "The changed deployment"),),
            PASSTHROUGH_ERRORS,
            (DEPLOYMENT_ID,),
            obj({"name": STRING}, description="The fields to change; RunComfy needs `name`."),
            handler=serverless.management,
        ),
        Op(
            "DELETE",
            serverless.MANAGEMENT_DEPLOYMENT,
            "deleteDeployment",
            "Delete a deployment (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, ANY_OBJECT, "RunComfy's confirmation"),),
            PASSTHROUGH_ERRORS,
            (DEPLOYMENT_ID,),
            handler=serverless.management,
        ),
        Op(
            "GET",
            serverless.MANAGEMENT_BALANCE,
            "getBalance",
            "The gateway account's RunComfy balance",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Balance"), "The balance"),),
            PASSTHROUGH_ERRORS,
            handler=serverless.management,
            head=False,
        ),
    ]
    return ops


def _admin() -> list[Operation]:
    tag = "Admin: teams and keys"
    return [
        Op(
            "POST",
            "/admin/v1/teams",
            "createTeam",
            "Create a team",
            tag,
            Auth.ADMIN,
            (Ok(201, responses.Team, "The team"),),
            CREATED,
            body=admin.CreateTeam,
            body_required=False,
            handler=admin.create_team,
        ),
        Op(
            "GET",
            "/admin/v1/teams",
            "listTeams",
            "Every team",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.TeamList, "The teams"),),
            handler=admin.list_teams,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}",
            "getTeam",
            "A team and how many keys it has",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.TeamDetail, "The team"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin.get_team,
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}",
            "deleteTeam",
            "Delete a team: every key of it stops working at once",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.TeamDeleted, "Deleted"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin.delete_team,
        ),
        Op(
            "POST",
            "/admin/v1/teams/{team_id}/keys",
            "createKey",
            "Create a key for a team (shown once)",
            tag,
            Auth.ADMIN,
            (Ok(201, responses.NewApiKey, "The key"),),
            (NotFound, ValidationFailed),
            (TEAM_ID,),
            admin.CreateKey,
            body_required=False,
            handler=admin.create_key,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/keys",
            "listKeys",
            "A team's keys (never the keys themselves)",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.ApiKeyList, "The keys"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin.list_keys,
        ),
        Op(
            "GET",
            "/admin/v1/keys/{key_id}",
            "getKey",
            "One key",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.ApiKey, "The key"),),
            (NotFound,),
            (KEY_ID,),
            handler=admin.get_key,
        ),
        Op(
            "DELETE",
            "/admin/v1/keys/{key_id}",
            "revokeKey",
            "Revoke a key: refused from the next request on every replica",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.ApiKey, "The revoked key"),),
            (NotFound,),
            (KEY_ID,),
            handler=admin.revoke_key,
        ),
        Op(
            "POST",
            "/admin/v1/keys/{key_id}/rotate",
            "rotateKey",
            "A new key in place of this one, which keeps working for a grace period",
            tag,
            Auth.ADMIN,
            (Ok(201, responses.RotatedApiKey, "The new key (shown once)"),),
            (NotFound, *CREATED),
            (KEY_ID,),
            admin.RotateKey,
            body_required=False,
            handler=admin.rotate_key,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/unknown-submits",
            "listUnknownSubmits",
            "Submits whose outcome RunComfy never told, for reconciliation",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.UnknownSubmits, "The submits"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin.unknown_submits,
        ),
    ]


def _admin_dedup() -> list[Operation]:
    tag = "Admin: deduplication"
    return [
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/dedup-policy",
            "getDedupPolicy",
            "A team's dedup policy",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.DedupPolicyView, "The policy"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin.get_dedup_policy,
        ),
        Op(
            "PUT",
            "/admin/v1/teams/{team_id}/dedup-policy",
            "setDedupPolicy",
            "Replace a team's dedup policy (team default, per key, per model)",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.DedupPolicyView, "The policy"),),
            (NotFound, ValidationFailed),
            (TEAM_ID,),
            admin.DedupPolicy,
            handler=admin.put_dedup_policy,
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}/cache",
            "purgeTeamCache",
            "Forget a team's cached results (all, or one model's with `?model=`)",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.Purged, "How many were forgotten"),),
            (NotFound, BadRequest),
            (TEAM_ID, Param("model", "query", {"type": "string", "minLength": 1})),
            handler=admin.purge_team_cache,
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}/cache/{cache_key}",
            "purgeCacheEntry",
            "Forget one cached result (by its `X-Gateway-Cache-Key`)",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.Purged, "How many were forgotten"),),
            (NotFound,),
            (TEAM_ID, Param("cache_key", "path", STRING)),
            handler=admin.purge_team_cache,
        ),
        Op(
            "DELETE",
            "/admin/v1/cache/{target:.+}",
            "purgeModelCache",
            "Forget every team's cached results of one model or deployment",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.Purged, "How many were forgotten"),),
            params=(Param("target", "path", STRING, "A model id (with slashes) or deployment id"),),
            handler=admin.purge_model_cache,
        ),
    ]


def _admin_identity() -> list[Operation]:
    tag = "Admin: administrators and audit"
    return [
        Op(
            "GET",
            "/admin/v1/whoami",
            "whoami",
            "The caller's admin identity",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.Whoami, "The actor"),),
            handler=admin.whoami,
        ),
        Op(
            "POST",
            "/admin/v1/admins",
            "createAdminToken",
            "Create a named admin token (shown once)",
            tag,
            Auth.ADMIN,
            (Ok(201, responses.NewAdminToken, "The token"),),
            CREATED,
            body=admin.CreateAdmin,
            handler=admin.create_admin,
        ),
        Op(
            "GET",
            "/admin/v1/admins",
            "listAdminTokens",
            "Every named admin token (never the tokens themselves)",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.AdminTokenList, "The tokens"),),
            handler=admin.list_admins,
        ),
        Op(
            "GET",
            "/admin/v1/admins/{token_id}",
            "getAdminToken",
            "One named admin token",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.AdminToken, "The token"),),
            (NotFound,),
            (TOKEN_ID,),
            handler=admin.get_admin,
        ),
        Op(
            "DELETE",
            "/admin/v1/admins/{token_id}",
            "revokeAdminToken",
            "Revoke a named admin token at once",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.AdminToken, "The revoked token"),),
            (NotFound, Conflict),
            (TOKEN_ID,),
            handler=admin.revoke_admin,
        ),
        Op(
            "GET",
            "/admin/v1/audit",
            "readAudit",
            "The audit log, newest first",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.AuditPage, "A page of entries"),),
            (BadRequest,),
            (
                Param("actor", "query", STRING),
                Param("action", "query", STRING),
                Param("target", "query", STRING, "A target prefix, e.g. `team/design/`"),
                Param("team", "query", STRING),
                Param("since", "query", OPTIONAL_DATE_TIME, "Entries from this time on"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
                Param(
                    "cursor",
                    "query",
                    {"type": "string", "pattern": ENTRY_ID_RE.pattern},
                    "`next_cursor` of the previous page",
                ),
            ),
            handler=admin.read_audit,
        ),
    ]


def _admin_quotas() -> list[Operation]:
    tag = "Admin: limits and usage"
    return [
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/limits",
            "getLimits",
            "A team's limits and its current budget period",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.LimitsView, "The limits"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin_quotas.get_limits,
        ),
        Op(
            "PUT",
            "/admin/v1/teams/{team_id}/limits",
            "setLimits",
            "Replace a team's limits; they apply to its next request on every replica",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.LimitsView, "The limits"),),
            (NotFound, ValidationFailed),
            (TEAM_ID,),
            Limits,
            handler=admin_quotas.put_limits,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/usage",
            "getUsage",
            "Requests, spend, savings and hit rate by day and model",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.Usage, "The usage"),),
            (NotFound, BadRequest),
            (
                TEAM_ID,
                Param("from", "query", OPTIONAL_DATE, "First day (default: 6 days before `to`)"),
                Param("to", "query", OPTIONAL_DATE, "Last day (default: today)"),
            ),
            handler=admin_quotas.get_usage,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/unreconciled",
            "listUnreconciled",
            "Submits of unknown outcome still reserved against the budget",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.Unreconciled, "The ledger"),),
            (NotFound,),
            (TEAM_ID,),
            handler=admin_quotas.list_unreconciled,
        ),
        Op(
            "POST",
            "/admin/v1/teams/{team_id}/unreconciled/{job_id}",
            "resolveUnreconciled",
            "Settle an unreconciled submit as charged or refunded",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.Resolved, "The settlement"),),
            (NotFound, ValidationFailed),
            (TEAM_ID, Param("job_id", "path", STRING)),
            admin_quotas.Resolve,
            handler=admin_quotas.resolve_unreconciled,
        ),
    ]


def _admin_pricing() -> list[Operation]:
    tag = "Admin: pricing"
    return [
        Op(
            "GET",
            "/admin/v1/pricing",
            "getPriceBook",
            "Every price override",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.PriceBook, "The overrides"),),
            handler=admin_pricing.show,
        ),
        Op(
            "POST",
            "/admin/v1/pricing/estimate",
            "estimate",
            "What a request would be estimated at (changes nothing)",
            tag,
            Auth.VIEWER,
            (Ok(200, responses.Estimate, "The estimate"),),
            (ValidationFailed,),
            body=admin_pricing.EstimateQuery,
            handler=admin_pricing.estimate,
        ),
        Op(
            "PUT",
            "/admin/v1/pricing/models/{model_id:.+}",
            "setModelPrice",
            "Replace a model's price override",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.ModelPriceSet, "The override"),),
            (ValidationFailed, *UPSTREAM_ERRORS),
            (MODEL_ID,),
            ModelPrice,
            description="Checked against the model's entry in RunComfy's catalog (422 when the "
            "model is not there, or a rule's parameter or value, or `units_param`, does not fit "
            "its input schema); 429 and 5xx when the catalog cannot be read.",
            handler=admin_pricing.set_model,
        ),
        Op(
            "DELETE",
            "/admin/v1/pricing/models/{model_id:.+}",
            "clearModelPrice",
            "Back to the catalog price",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.ModelPriceDeleted, "Cleared"),),
            (BadRequest, NotFound),
            (MODEL_ID,),
            handler=admin_pricing.clear_model,
        ),
        Op(
            "PUT",
            "/admin/v1/pricing/deployments/{deployment_id}",
            "setDeploymentPrice",
            "Set a deployment's GPU rate and expected run time",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.DeploymentPriceSet, "The rate"),),
            (ValidationFailed,),
            (DEPLOYMENT_ID,),
            DeploymentPrice,
            handler=admin_pricing.set_deployment,
        ),
        Op(
            "DELETE",
            "/admin/v1/pricing/deployments/{deployment_id}",
            "clearDeploymentPrice",
            "Forget a deployment's rate",
            tag,
            Auth.ADMIN,
            (Ok(200, responses.DeploymentPriceDeleted, "Cleared"),),
            (BadRequest, NotFound),
            (DEPLOYMENT_ID,),
            handler=admin_pricing.clear_deployment,
        ),
    ]


def _ops() -> list[Operation]:
    tag = "Operations"
    return [
        Op(
            "GET",
            "/healthz",
            "healthz",
            "Liveness",
            tag,
            Auth.NONE,
            (Ok(200, ref("Health"), "Alive"),),
            handler=ops.healthz,
        ),
        Op(
            "GET",
            "/readyz",
            "readyz",
            "Readiness: 503 while starting or draining",
            tag,
            Auth.NONE,
            (Ok(200, ref("Readiness"), "Ready"), Ok(503, ref("Readiness"), "Starting or draining")),
            handler=ops.readyz,
        ),
        Op(
            "GET",
            "/metrics",
            "metrics",
            "Prometheus metrics (keep off the public ingress)",
            tag,
            Auth.NONE,
            (Ok(200, STRING, "Prometheus text format", media_type="text/plain"),),
            handler=ops.metrics,
        ),
        Op(
            "GET",
            "/openapi.json",
            "openapi",
            "This document",
            tag,
            Auth.NONE,
            (Ok(200, ANY_OBJECT, "The OpenAPI 3.1 document"),),
            handler=serve_openapi,
        ),
    ]


@functools.cache
def operations() -> list[Operation]:
    """Every operation, in the order the router registers them."""
    return [
        *_model_api(),
        *_serverless(),
        *_admin(),
        *_admin_dedup(),
        *_admin_identity(),
        *_admin_quotas(),
        *_admin_pricing(),
        *_ops(),
    ]


@functools.cache
def document() -> Json:
    """The OpenAPI 3.1 document of every route the gateway serves."""
    return openapi.document(operations())


def setup_routes(app: web.Application, *, with_metrics: bool = True) -> None:
    """Every row's route; ``/metrics`` only when it has no listener of its own."""
    add_routes(app, [op for op in operations() if with_metrics or op.handler is not ops.metrics])

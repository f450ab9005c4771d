"""The gateway's OpenAPI 3.1 document, built from one table of operations.

Each :class:`Operation` row documents one method and path exactly as clients call them (an
aiohttp route such as ``/v1/requests/{request_id}/{leaf:status|result}`` is one row per leaf).
A row names its success answers and the errors particular to it; the errors every route of its
kind can give (auth, body parsing, Redis) are added from its :class:`Auth` and whether it takes
a body, so a new route is usually one row. Admin request bodies come from the routes' own
pydantic models, so the document cannot drift from validation. ``tests/test_openapi.py`` fails
while a route of the router has no row or a row names no route, and runs schemathesis against a
live gateway to check that answers match the document.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.access.audit import ENTRY_ID_RE
from gateway.jobs.dedup import CACHE_CONTROL_HEADER
from gateway.money.pricing import DeploymentPrice, ModelPrice
from gateway.money.quotas import Limits
from gateway.web.routes.admin import CreateAdmin, CreateKey, CreateTeam, DedupPolicy, RotateKey
from gateway.web.routes.admin_pricing import EstimateQuery
from gateway.web.routes.admin_quotas import Resolve
from gateway.web.routes.serverless import DEPLOYMENT_ID_RE

Json = dict[str, Any]
Where = Literal["path", "query", "header"]

REQUEST_BODY_MODELS: tuple[type[BaseModel], ...] = (
    CreateTeam,
    CreateKey,
    RotateKey,
    DedupPolicy,
    CreateAdmin,
    Limits,
    Resolve,
    ModelPrice,
    DeploymentPrice,
    EstimateQuery,
)


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> Json:
    """An object schema: ``required`` properties must be present, ``optional`` may be."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        **extra,
    }


STRING: Json = {"type": "string"}
INTEGER: Json = {"type": "integer"}
NUMBER: Json = {"type": "number"}
BOOLEAN: Json = {"type": "boolean"}
ANY: Json = {}
NULLABLE_STRING: Json = {"type": ["string", "null"]}
NULLABLE_NUMBER: Json = {"type": ["number", "null"]}
POLICY: Json = {
    "enum": ["cache", "seeded", "inflight", "off"],
    "description": "Most to least reuse; the most restrictive applicable entry wins. `cache`: "
    "hit completed results and join jobs in flight. `seeded`: `cache` for requests that pin "
    "every seed of the model (present, not `-1` or another random value), `inflight` for the "
    "rest. `inflight`: only join jobs in flight. `off`: every submit is a new RunComfy job.",
}
# Filters of admin reads: an empty value is the same as none.
OPTIONAL_DATE_TIME: Json = {"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}]}
OPTIONAL_DATE: Json = {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}]}
ROLE: Json = {"enum": ["admin", "viewer"]}


# --- response bodies -------------------------------------------------------------------------

_API_KEY = obj(
    {
        "key_id": STRING,
        "team_id": STRING,
        "name": STRING,
        "prefix": STRING,
        "created_at": STRING,
        "expires_at": NULLABLE_STRING,
        "revoked_at": NULLABLE_STRING,
        "replaced_by": NULLABLE_STRING,
        "active": BOOLEAN,
    }
)
_ADMIN_TOKEN = obj(
    {
        "token_id": STRING,
        "name": STRING,
        "role": ROLE,
        "prefix": STRING,
        "created_at": STRING,
        "created_by": STRING,
        "revoked_at": NULLABLE_STRING,
        "revoked_by": NULLABLE_STRING,
        "active": BOOLEAN,
    }
)
_TEAM = obj({"team_id": STRING, "name": STRING, "created_at": STRING})
_BUDGET = obj(
    {
        "period": STRING,
        "period_kind": {"enum": ["day", "week", "month"]},
        "resets_at": STRING,
        "budget_usd": NULLABLE_NUMBER,
        "settled_usd": NUMBER,
        "reserved_usd": NUMBER,
        "remaining_usd": NULLABLE_NUMBER,
        "alerted_percent": INTEGER,
    }
)
_COUNTERS: Json = {"type": "object", "additionalProperties": NUMBER}

RESPONSE_SCHEMAS: dict[str, Json] = {
    "Error": obj(
        {"error_code": INTEGER, "error_message": STRING, "detail": ANY},
        description="RunComfy's error shape, for every error the gateway answers with.",
    ),
    "SubmitAccepted": obj(
        {"request_id": STRING, "status_url": STRING, "result_url": STRING, "cancel_url": STRING},
        additionalProperties=False,
        description="The gateway's request id and URLs (RunComfy's shape, gateway URLs).",
    ),
    "RequestStatus": obj(
        {
            "request_id": STRING,
            "status": {"enum": ["in_queue", "in_progress", "completed", "cancelled", "failed"]},
        },
        {"queue_position": INTEGER, "status_url": STRING, "result_url": STRING},
    ),
    "RequestResult": obj(
        {
            "request_id": STRING,
            "status": {"enum": ["succeeded", "failed", "in_queue", "in_progress", "cancelled"]},
        },
        {
            "output": ANY,
            "outputs": ANY,
            "error": ANY,
            "created_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "cost": NUMBER,
            "deployment_id": STRING,
        },
        description="RunComfy's result with the gateway's request id; asset URLs untouched. "
        "`cost` (USD) only with `include_cost=true`, 0 for coalesced requests and hits.",
    ),
    "ModelCancel": obj(
        {
            "request_id": STRING,
            "status": STRING,
            "outcome": {"enum": ["cancelled", "not_cancellable"]},
        }
    ),
    "ServerlessCancel": obj(
        {"request_id": STRING, "status": {"enum": ["cancellation_requested", "not_cancellable"]}}
    ),
    "CatalogModel": obj(
        {"model_id": STRING},
        {
            "display_name": STRING,
            "description": STRING,
            "categories": {"type": "array", "items": STRING},
            "base_price_usd": NUMBER,
            "price_unit": STRING,
            "pricing_note": NULLABLE_STRING,
            "model_url": STRING,
            "input_schema": {"type": "object"},
        },
    ),
    "ModelList": obj(
        {
            "models": {"type": "array", "items": ref("CatalogModel")},
            "total": INTEGER,
            "limit": INTEGER,
            "offset": INTEGER,
        }
    ),
    "Categories": obj({"categories": {"type": "array", "items": STRING}}),
    "Deployment": obj({"id": STRING}, description="RunComfy's deployment, as RunComfy sent it."),
    "Balance": obj({"balance_usd": NUMBER, "currency": STRING}),
    "Team": _TEAM,
    "TeamDetail": {
        "allOf": [ref("Team"), obj({"keys": INTEGER, "active_keys": INTEGER})],
    },
    "TeamList": obj({"teams": {"type": "array", "items": ref("Team")}}),
    "TeamDeleted": obj({"team_id": STRING, "deleted": {"const": True}}),
    "ApiKey": _API_KEY,
    "NewApiKey": {
        "allOf": [ref("ApiKey"), obj({"key": STRING})],
        "description": "The key itself is shown here once; only its SHA-256 is stored.",
    },
    "RotatedApiKey": {
        "allOf": [ref("NewApiKey"), obj({"replaces": ref("ApiKey")})],
    },
    "ApiKeyList": obj({"keys": {"type": "array", "items": ref("ApiKey")}}),
    "UnknownSubmits": obj(
        {
            "requests": {
                "type": "array",
                "items": obj(
                    {
                        "request_id": STRING,
                        "api": STRING,
                        "target": STRING,
                        "key_id": STRING,
                        "created_at": STRING,
                    }
                ),
            }
        }
    ),
    "DedupPolicyView": obj(
        {
            "default": {"anyOf": [POLICY, {"type": "null"}]},
            "keys": {"type": "object", "additionalProperties": POLICY},
            "models": {"type": "object", "additionalProperties": POLICY},
        }
    ),
    "Purged": obj({"purged": INTEGER}),
    "Whoami": obj({"name": STRING, "role": ROLE, "token_id": STRING}),
    "AdminToken": _ADMIN_TOKEN,
    "NewAdminToken": {
        "allOf": [ref("AdminToken"), obj({"token": STRING})],
        "description": "The token itself is shown here once; only its SHA-256 is stored.",
    },
    "AdminTokenList": obj({"admins": {"type": "array", "items": ref("AdminToken")}}),
    "AuditPage": obj(
        {
            "entries": {
                "type": "array",
                "items": obj(
                    {
                        "id": STRING,
                        "at": STRING,
                        "actor": STRING,
                        "role": STRING,
                        "token_id": STRING,
                        "action": STRING,
                        "target": STRING,
                        "before": ANY,
                        "after": ANY,
                        "correlation_id": STRING,
                    }
                ),
            },
            "next_cursor": NULLABLE_STRING,
        }
    ),
    "Budget": _BUDGET,
    "LimitsView": obj(
        {"team_id": STRING, "budget": ref("Budget")},
        {
            "rate_per_minute": NULLABLE_NUMBER,
            "rate_burst": {"type": ["integer", "null"]},
            "daily_requests": {"type": ["integer", "null"]},
            "budget_usd": NULLABLE_NUMBER,
            "max_request_usd": NULLABLE_NUMBER,
            "budget_period": {"enum": ["day", "week", "month"]},
            "max_concurrent": {"type": ["integer", "null"]},
            "max_queue": {"type": ["integer", "null"]},
            "models": {"type": ["array", "null"], "items": STRING},
            "deployments": {"type": "array", "items": STRING},
            "alert_webhook": NULLABLE_STRING,
            "keys": {"type": "object", "additionalProperties": {"type": "object"}},
        },
        description="The team's limits as set; `alert_webhook` only as a fingerprint for viewers.",
    ),
    "Usage": obj(
        {
            "team_id": STRING,
            "from": STRING,
            "to": STRING,
            "timezone": STRING,
            "totals": _COUNTERS,
            "by_day": {"type": "array", "items": {"type": "object"}},
            "by_model": {"type": "object", "additionalProperties": _COUNTERS},
            "running": INTEGER,
            "queued": INTEGER,
            "unreconciled": INTEGER,
            "budget": ref("Budget"),
        }
    ),
    "Unreconciled": obj(
        {
            "team_id": STRING,
            "jobs": {
                "type": "array",
                "items": obj(
                    {
                        "job_id": STRING,
                        "request_id": STRING,
                        "api": STRING,
                        "target": STRING,
                        "created_at": STRING,
                        "reserved_usd": NUMBER,
                    }
                ),
            },
        }
    ),
    "Resolved": obj(
        {
            "team_id": STRING,
            "job_id": STRING,
            "outcome": {"enum": ["charged", "refunded"]},
            "reserved_usd": NUMBER,
            "settled_usd": NUMBER,
        }
    ),
    "PriceBook": obj(
        {
            "models": {"type": "object", "additionalProperties": {"type": "object"}},
            "deployments": {"type": "object", "additionalProperties": {"type": "object"}},
        }
    ),
    "ModelPriceSet": obj({"model_id": STRING}, description="The override as stored."),
    "DeploymentPriceSet": obj(
        {"deployment_id": STRING, "usd_per_second": NUMBER, "estimated_seconds": NUMBER}
    ),
    "PriceDeleted": obj(
        {"deleted": {"const": True}}, {"model_id": STRING, "deployment_id": STRING}
    ),
    "Estimate": obj(
        {
            "micro": INTEGER,
            "unit_price_micro": INTEGER,
            "units": NUMBER,
            "unit": {"enum": ["output", "second", None]},
            "source": {"enum": ["catalog", "override", "deployment", "unknown"]},
            "notes": {"type": "array", "items": STRING},
        },
        description="What a request would reserve, in micro-dollars, and how it was derived.",
    ),
    "Health": obj({"status": {"const": "ok"}, "version": STRING}),
    "Readiness": obj(
        {"status": {"enum": ["ready", "starting", "draining"]}, "redis": STRING},
        description="Redis's state is reported, but a Redis outage does not fail readiness.",
    ),
}


# --- headers ---------------------------------------------------------------------------------

HEADERS: dict[str, Json] = {
    "X-Request-Id": {
        "description": "Correlation id: the caller's `X-Request-Id` if well-formed, else new.",
        "schema": STRING,
    },
    "X-Gateway-Cache": {
        "description": "How the submit was answered: a cached result, a job already in flight, "
        "a new job, or a new job waiting for one of the team's concurrency slots.",
        "required": True,
        "schema": {"enum": ["hit", "coalesced", "miss", "queued"]},
    },
    "X-Gateway-Cache-Key": {
        "description": "The request's identity (hex SHA-256), e.g. to purge it from the cache.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    "X-Gateway-Queue-Position": {
        "description": "Only when `X-Gateway-Cache: queued`: the place in the team's queue.",
        "schema": INTEGER,
    },
    "RateLimit-Policy": {
        "description": 'IETF draft: the tightest submit limit, `"<name>";q=<quota>;w=<seconds>`.',
        "schema": STRING,
    },
    "RateLimit": {
        "description": 'IETF draft: what is left of it, `"<name>";r=<remaining>;t=<seconds>`.',
        "schema": STRING,
    },
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": INTEGER},
    "WWW-Authenticate": {"required": True, "schema": STRING},
}


# --- errors ----------------------------------------------------------------------------------

ERROR_MEANINGS: dict[int, str] = {
    400: "Malformed request: body not a JSON object, nested too deeply, bad parameter or header",
    401: "Missing, malformed, unknown, expired or revoked key or admin token (401001)",
    402: "The team's budget cannot cover the estimate (402001), or it exceeds the per-request "
    "cap (402002)",
    403: "The credential may not do this: an admin token on a team route, a team key on an "
    "admin route, a viewer on a change (403001), or a model or deployment not on the team's "
    "list (403002)",
    404: "Unknown route, model, deployment, team, key or request id (another team's ids too, "
    "answered exactly like unknown ones)",
    409: "Conflict: the resource exists already, or the change would leave no administrator",
    413: "The request body is larger than `GATEWAY_MAX_BODY_BYTES`, or a compressed one "
    "inflates past `GATEWAY_MAX_INFLATED_BODY_BYTES` (413001)",
    415: "A `Content-Encoding` other than gzip or deflate (415001)",
    422: "The body failed validation: RunComfy's own `detail` for model input, the field "
    "errors for admin bodies (422001)",
    429: "A submit rate or daily limit (429002), a full team queue (429003), polling too fast "
    "(429004), or RunComfy limiting the gateway's account (429001)",
    500: "Unexpected failure inside the gateway (500001)",
    502: "RunComfy answered with an error or garbage (502001), rejected the gateway's own token "
    "(502002), or lost the job",
    503: "Redis (503003) or RunComfy (503001) unreachable, the gateway's RunComfy account "
    "cannot run jobs (503002), or too many large bodies at once (503004)",
    504: "RunComfy did not answer in time (504001), or a submit's outcome is unknown (504002, "
    "with the gateway `request_id`)",
}
_ERROR_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    402: ("RateLimit-Policy", "RateLimit"),
    403: ("RateLimit-Policy", "RateLimit"),
    429: ("Retry-After", "RateLimit-Policy", "RateLimit"),
    503: ("Retry-After",),
}


class Auth(Enum):
    """Who may call an operation; decides the security requirement and the auth errors."""

    NONE = "none"
    TEAM = "team"  # a team key; an admin token is 403
    CATALOG = "catalog"  # a team key or an admin token of either role
    VIEWER = "viewer"  # an admin token of either role; a team key is 403
    ADMIN = "admin"  # an admin token of role admin; a viewer or a team key is 403

    def security(self) -> list[Json]:
        team: Json = {"TeamKey": []}
        admin: Json = {"AdminToken": []}
        return {
            Auth.NONE: [],
            Auth.TEAM: [team],
            Auth.CATALOG: [team, admin],
            Auth.VIEWER: [admin],
            Auth.ADMIN: [admin],
        }[self]

    def errors(self) -> frozenset[int]:
        """401 and 403 for any credential check; 503: the check or the route needs Redis."""
        return frozenset() if self is Auth.NONE else frozenset({401, 403, 503})


# --- operations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Where
    schema: Json
    description: str = ""
    required: bool = False

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema,
            **({"description": self.description} if self.description else {}),
        }


@dataclass(frozen=True, slots=True)
class Ok:
    """A success answer: its status, body schema and the headers it carries."""

    status: int
    schema: Json
    description: str
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    ok: tuple[Ok, ...]
    errors: frozenset[int] = frozenset()
    params: tuple[Param, ...] = ()
    body: Json | None = None
    body_required: bool = True
    description: str = ""

    def all_errors(self) -> list[int]:
        errors = set(self.errors) | self.auth.errors() | {500}
        if self.body is not None:
            errors |= {400, 413, 415, 503}
        if any(p.where == "path" for p in self.params):
            errors.add(404)  # a value the route's pattern refuses (a "/", a line break) is no route
        return sorted(errors)

    def to_json(self) -> Json:
        responses: Json = {}
        for ok in self.ok:
            responses[str(ok.status)] = {
                "description": ok.description,
                "headers": _headers(("X-Request-Id", *ok.headers)),
                "content": {ok.media_type: {"schema": ok.schema}},
            }
        for status in self.all_errors():
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
        operation: Json = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "tags": [self.tag],
            "security": self.auth.security(),
            "parameters": [p.to_json() for p in self.params],
            "responses": responses,
        }
        if self.description:
            operation["description"] = self.description
        if self.body is not None:
            operation["requestBody"] = {
                "required": self.body_required,
                "content": {"application/json": {"schema": self.body}},
            }
        return operation


Op = Operation


def _error_responses() -> Json:
    """One shared response per error status, referenced by the operations that give it."""
    return {
        f"Error{status}": {
            "description": meaning,
            "headers": _headers(("X-Request-Id", *_ERROR_HEADERS.get(status, ()))),
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for status, meaning in ERROR_MEANINGS.items()
    }


def _headers(names: tuple[str, ...]) -> Json:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


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
SUBMIT_ERRORS = frozenset({402, 403, 404, 422, 429, 502, 503, 504})
POLL_ERRORS = frozenset({404, 429, 502, 504})
ANY_OBJECT: Json = {"type": "object"}


def _request_ops(prefix: str, op_prefix: str, tag: str, params: tuple[Param, ...]) -> list[Op]:
    """Status, result and cancel of one API under ``prefix``."""
    cancel = "ModelCancel" if tag == "Model API" else "ServerlessCancel"
    return [
        Operation(
            "GET",
            f"{prefix}/requests/{{request_id}}/status",
            f"{op_prefix}Status",
            "A request's status, answered from Redis",
            tag,
            Auth.TEAM,
            (Ok(200, ref("RequestStatus"), "The request's status"),),
            POLL_ERRORS,
            (*params, REQUEST_ID),
        ),
        Operation(
            "GET",
            f"{prefix}/requests/{{request_id}}/result",
            f"{op_prefix}Result",
            "A request's result (its current state while unfinished)",
            tag,
            Auth.TEAM,
            (Ok(200, ref("RequestResult"), "The result, or the current state"),),
            POLL_ERRORS,
            (*params, REQUEST_ID, INCLUDE_COST),
        ),
        Operation(
            "POST",
            f"{prefix}/requests/{{request_id}}/cancel",
            f"{op_prefix}Cancel",
            "Cancel a request; RunComfy is asked only when its last follower leaves",
            tag,
            Auth.TEAM,
            (Ok(202, ref(cancel), "Cancelled, or not cancellable any more"),),
            POLL_ERRORS | {503},
            (*params, REQUEST_ID),
        ),
    ]


def _model_api() -> list[Op]:
    tag = "Model API"
    catalog_errors = frozenset({404, 422, 429, 502, 503, 504})
    return [
        Op(
            "GET",
            "/v1/models",
            "listModels",
            "The model catalog (RunComfy's, cached)",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("ModelList"), "A page of models"),),
            catalog_errors,
            (
                Param("search", "query", STRING),
                Param("category", "query", STRING),
                Param("kind", "query", STRING),
                Param("include_schema", "query", STRING, "`true` adds each model's input schema"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
                Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9}),
            ),
        ),
        Op(
            "GET",
            "/v1/models/categories",
            "listCategories",
            "Every category in the catalog",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("Categories"), "The categories"),),
            catalog_errors,
        ),
        Op(
            "GET",
            "/v1/models/{model_id}",
            "getModel",
            "One model's catalog entry, with its input schema and price",
            tag,
            Auth.CATALOG,
            (Ok(200, ref("CatalogModel"), "The model"),),
            catalog_errors,
            (MODEL_ID,),
        ),
        Op(
            "POST",
            "/v1/models/{model_id}",
            "submit",
            "Submit a job (deduplicated: a hit, a coalesced follower or a new job)",
            tag,
            Auth.TEAM,
            (SUBMITTED,),
            SUBMIT_ERRORS,
            (MODEL_ID, CACHE_CONTROL),
            ANY_OBJECT,
        ),
        *_request_ops("/v1", "model", tag, ()),
    ]


def _serverless() -> list[Op]:
    ops: list[Op] = []
    for version in ("v1", "v2"):
        tag = f"Serverless {version}"
        prefix = f"/prod/{version}/deployments/{{deployment_id}}"
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
            )
        )
        ops += _request_ops(prefix, f"serverless{version.upper()}", tag, (DEPLOYMENT_ID,))
    tag = "Deployment management"
    passthrough = frozenset({400, 404, 409, 422, 429, 502, 503, 504})
    includes = Param("includes", "query", STRING, "`payload`, `readme` (comma-separated)")
    deployment = ref("Deployment")
    ops += [
        Op(
            "GET",
            "/prod/v2/deployments",
            "listDeployments",
            "The gateway account's deployments (RunComfy's answer)",
            tag,
            Auth.VIEWER,
            (Ok(200, {"type": "array", "items": deployment}, "The deployments"),),
            passthrough,
            (Param("ids", "query", STRING, "Comma-separated deployment ids"), includes),
        ),
        Op(
            "POST",
            "/prod/v2/deployments",
            "createDeployment",
            "Create a deployment on the gateway's account (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, deployment, "The new deployment"),),
            passthrough,
            body=obj(
                {"name": STRING, "workflow_id": STRING, "workflow_version": STRING},
                {"hardware": {"type": "array", "items": STRING}},
                description="RunComfy's deployment fields (passed to RunComfy as sent).",
            ),
        ),
        Op(
            "GET",
            "/prod/v2/deployments/{deployment_id}",
            "getDeployment",
            "One deployment",
            tag,
            Auth.VIEWER,
            (Ok(200, deployment, "The deployment"),),
            passthrough,
            (DEPLOYMENT_ID, includes),
        ),
        Op(
            "PATCH",
            "/prod/v2/deployments/{deployment_id}",
            "updateDeployment",
            "Change a deployment (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, deployment, "The changed deployment"),),
            passthrough,
            (DEPLOYMENT_ID,),
            obj({"name": STRING}, description="The fields to change; RunComfy needs `name`."),
        ),
        Op(
            "DELETE",
            "/prod/v2/deployments/{deployment_id}",
            "deleteDeployment",
            "Delete a deployment (audited)",
            tag,
            Auth.ADMIN,
            (Ok(200, ANY_OBJECT, "RunComfy's confirmation"),),
            passthrough,
            (DEPLOYMENT_ID,),
        ),
        Op(
            "GET",
            "/prod/v2/balance",
            "getBalance",
            "The gateway account's RunComfy balance",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Balance"), "The balance"),),
            passthrough,
        ),
    ]
    return ops


def _admin() -> list[Op]:
    tag = "Admin: teams and keys"
    team = frozenset({404})
    return [
        Op(
            "POST",
            "/admin/v1/teams",
            "createTeam",
            "Create a team",
            tag,
            Auth.ADMIN,
            (Ok(201, ref("Team"), "The team"),),
            frozenset({409, 422}),
            body=ref("CreateTeam"),
            body_required=False,
        ),
        Op(
            "GET",
            "/admin/v1/teams",
            "listTeams",
            "Every team",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("TeamList"), "The teams"),),
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}",
            "getTeam",
            "A team and how many keys it has",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("TeamDetail"), "The team"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}",
            "deleteTeam",
            "Delete a team: every key of it stops working at once",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("TeamDeleted"), "Deleted"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "POST",
            "/admin/v1/teams/{team_id}/keys",
            "createKey",
            "Create a key for a team (shown once)",
            tag,
            Auth.ADMIN,
            (Ok(201, ref("NewApiKey"), "The key"),),
            team | {422},
            (TEAM_ID,),
            ref("CreateKey"),
            body_required=False,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/keys",
            "listKeys",
            "A team's keys (never the keys themselves)",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("ApiKeyList"), "The keys"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "GET",
            "/admin/v1/keys/{key_id}",
            "getKey",
            "One key",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("ApiKey"), "The key"),),
            team,
            (KEY_ID,),
        ),
        Op(
            "DELETE",
            "/admin/v1/keys/{key_id}",
            "revokeKey",
            "Revoke a key: refused from the next request on every replica",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("ApiKey"), "The revoked key"),),
            team,
            (KEY_ID,),
        ),
        Op(
            "POST",
            "/admin/v1/keys/{key_id}/rotate",
            "rotateKey",
            "A new key in place of this one, which keeps working for a grace period",
            tag,
            Auth.ADMIN,
            (Ok(201, ref("RotatedApiKey"), "The new key (shown once)"),),
            team | {409, 422},
            (KEY_ID,),
            ref("RotateKey"),
            body_required=False,
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/unknown-submits",
            "listUnknownSubmits",
            "Submits whose outcome RunComfy never told, for reconciliation",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("UnknownSubmits"), "The submits"),),
            team,
            (TEAM_ID,),
        ),
    ]


def _admin_dedup() -> list[Op]:
    tag = "Admin: deduplication"
    team = frozenset({404})
    return [
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/dedup-policy",
            "getDedupPolicy",
            "A team's dedup policy",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("DedupPolicyView"), "The policy"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "PUT",
            "/admin/v1/teams/{team_id}/dedup-policy",
            "setDedupPolicy",
            "Replace a team's dedup policy (team default, per key, per model)",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("DedupPolicyView"), "The policy"),),
            team | {422},
            (TEAM_ID,),
            ref("DedupPolicy"),
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}/cache",
            "purgeTeamCache",
            "Forget a team's cached results (all, or one model's with `?model=`)",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("Purged"), "How many were forgotten"),),
            team | {400},
            (TEAM_ID, Param("model", "query", {"type": "string", "minLength": 1})),
        ),
        Op(
            "DELETE",
            "/admin/v1/teams/{team_id}/cache/{cache_key}",
            "purgeCacheEntry",
            "Forget one cached result (by its `X-Gateway-Cache-Key`)",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("Purged"), "How many were forgotten"),),
            team,
            (TEAM_ID, Param("cache_key", "path", STRING)),
        ),
        Op(
            "DELETE",
            "/admin/v1/cache/{target}",
            "purgeModelCache",
            "Forget every team's cached results of one model or deployment",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("Purged"), "How many were forgotten"),),
            params=(Param("target", "path", STRING, "A model id (with slashes) or deployment id"),),
        ),
    ]


def _admin_identity() -> list[Op]:
    tag = "Admin: administrators and audit"
    return [
        Op(
            "GET",
            "/admin/v1/whoami",
            "whoami",
            "The caller's admin identity",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Whoami"), "The actor"),),
        ),
        Op(
            "POST",
            "/admin/v1/admins",
            "createAdminToken",
            "Create a named admin token (shown once)",
            tag,
            Auth.ADMIN,
            (Ok(201, ref("NewAdminToken"), "The token"),),
            frozenset({409, 422}),
            body=ref("CreateAdmin"),
        ),
        Op(
            "GET",
            "/admin/v1/admins",
            "listAdminTokens",
            "Every named admin token (never the tokens themselves)",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("AdminTokenList"), "The tokens"),),
        ),
        Op(
            "GET",
            "/admin/v1/admins/{token_id}",
            "getAdminToken",
            "One named admin token",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("AdminToken"), "The token"),),
            frozenset({404}),
            (TOKEN_ID,),
        ),
        Op(
            "DELETE",
            "/admin/v1/admins/{token_id}",
            "revokeAdminToken",
            "Revoke a named admin token at once",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("AdminToken"), "The revoked token"),),
            frozenset({404, 409}),
            (TOKEN_ID,),
        ),
        Op(
            "GET",
            "/admin/v1/audit",
            "readAudit",
            "The audit log, newest first",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("AuditPage"), "A page of entries"),),
            frozenset({400}),
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
        ),
    ]


def _admin_quotas() -> list[Op]:
    tag = "Admin: limits and usage"
    team = frozenset({404})
    return [
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/limits",
            "getLimits",
            "A team's limits and its current budget period",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("LimitsView"), "The limits"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "PUT",
            "/admin/v1/teams/{team_id}/limits",
            "setLimits",
            "Replace a team's limits; they apply to its next request on every replica",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("LimitsView"), "The limits"),),
            team | {422},
            (TEAM_ID,),
            ref("Limits"),
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/usage",
            "getUsage",
            "Requests, spend, savings and hit rate by day and model",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Usage"), "The usage"),),
            team | {400},
            (
                TEAM_ID,
                Param("from", "query", OPTIONAL_DATE, "First day (default: 6 days before `to`)"),
                Param("to", "query", OPTIONAL_DATE, "Last day (default: today)"),
            ),
        ),
        Op(
            "GET",
            "/admin/v1/teams/{team_id}/unreconciled",
            "listUnreconciled",
            "Submits of unknown outcome still reserved against the budget",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Unreconciled"), "The ledger"),),
            team,
            (TEAM_ID,),
        ),
        Op(
            "POST",
            "/admin/v1/teams/{team_id}/unreconciled/{job_id}",
            "resolveUnreconciled",
            "Settle an unreconciled submit as charged or refunded",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("Resolved"), "The settlement"),),
            team | {422},
            (TEAM_ID, Param("job_id", "path", STRING)),
            ref("Resolve"),
        ),
    ]


def _admin_pricing() -> list[Op]:
    tag = "Admin: pricing"
    return [
        Op(
            "GET",
            "/admin/v1/pricing",
            "getPriceBook",
            "Every price override",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("PriceBook"), "The overrides"),),
        ),
        Op(
            "POST",
            "/admin/v1/pricing/estimate",
            "estimate",
            "What a request would be estimated at (changes nothing)",
            tag,
            Auth.VIEWER,
            (Ok(200, ref("Estimate"), "The estimate"),),
            frozenset({422}),
            body=ref("EstimateQuery"),
        ),
        Op(
            "PUT",
            "/admin/v1/pricing/models/{model_id}",
            "setModelPrice",
            "Replace a model's price override",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("ModelPriceSet"), "The override"),),
            frozenset({422, 429, 502, 503, 504}),
            (MODEL_ID,),
            ref("ModelPrice"),
            description="Checked against the model's entry in RunComfy's catalog (422 when the "
            "model is not there, or a rule's parameter or value, or `units_param`, does not fit "
            "its input schema); 429 and 5xx when the catalog cannot be read.",
        ),
        Op(
            "DELETE",
            "/admin/v1/pricing/models/{model_id}",
            "clearModelPrice",
            "Back to the catalog price",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("PriceDeleted"), "Cleared"),),
            frozenset({400, 404}),
            (MODEL_ID,),
        ),
        Op(
            "PUT",
            "/admin/v1/pricing/deployments/{deployment_id}",
            "setDeploymentPrice",
            "Set a deployment's GPU rate and expected run time",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("DeploymentPriceSet"), "The rate"),),
            frozenset({422}),
            (DEPLOYMENT_ID,),
            ref("DeploymentPrice"),
        ),
        Op(
            "DELETE",
            "/admin/v1/pricing/deployments/{deployment_id}",
            "clearDeploymentPrice",
            "Forget a deployment's rate",
            tag,
            Auth.ADMIN,
            (Ok(200, ref("PriceDeleted"), "Cleared"),),
            frozenset({400, 404}),
            (DEPLOYMENT_ID,),
        ),
    ]


def _ops() -> list[Op]:
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
        ),
        Op(
            "GET",
            "/readyz",
            "readyz",
            "Readiness: 503 while starting or draining",
            tag,
            Auth.NONE,
            (Ok(200, ref("Readiness"), "Ready"), Ok(503, ref("Readiness"), "Starting or draining")),
        ),
        Op(
            "GET",
            "/metrics",
            "metrics",
            "Prometheus metrics (keep off the public ingress)",
            tag,
            Auth.NONE,
            (Ok(200, STRING, "Prometheus text format", media_type="text/plain"),),
        ),
        Op(
            "GET",
            "/openapi.json",
            "openapi",
            "This document",
            tag,
            Auth.NONE,
            (Ok(200, ANY_OBJECT, "The OpenAPI 3.1 document"),),
        ),
    ]


def operations() -> list[Operation]:
    """Every documented operation: one row per method and path as clients call them."""
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


def _request_body_schemas() -> dict[str, Json]:
    _, top = models_json_schema(
        [(model, "validation") for model in REQUEST_BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Json] = top["$defs"]
    return defs


@functools.cache
def document() -> Json:
    """The OpenAPI 3.1 document of every route the gateway serves."""
    paths: Json = {}
    for op in operations():
        paths.setdefault(op.path, {})[op.method.lower()] = op.to_json()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runcomfy-gateway",
            "version": __version__,
            "description": "A caching, quota-enforcing proxy for the RunComfy APIs. Model API "
            "and Serverless routes mirror RunComfy's own; every error has RunComfy's shape "
            "`{error_code, error_message, detail}`. Malformed HTTP (a header or request line "
            "over `GATEWAY_MAX_HEADER_BYTES`, more than `GATEWAY_MAX_HEADERS` headers) is "
            "refused with a plain-text 400 by the HTTP parser, before any route runs.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "TeamKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A team API key, `rcg_<key id>_<secret>`.",
                },
                "AdminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The bootstrap `GATEWAY_ADMIN_TOKEN` or a named admin token "
                    "`rca_<id>_<secret>`; role `viewer` reads, `admin` also changes.",
                },
            },
            "schemas": {**_request_body_schemas(), **RESPONSE_SCHEMAS},
            "responses": _error_responses(),
            "headers": HEADERS,
        },
    }

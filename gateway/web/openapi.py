"""The gateway's OpenAPI 3.1 document, rendered from the operations table.

Each row of :mod:`gateway.web.operations` is one method and path exactly as clients call them.
Its success answers are response models (:mod:`gateway.web.responses`, admin) or the schemas
below (RunComfy's shapes, which those routes pass on byte for byte); its request body is the
pydantic model the route validates with, so the document cannot drift from validation. Its
error answers come from the error classes it names plus those of every route of its kind
(:meth:`~gateway.web.spec.Operation.all_errors`): one shared response per status, described and
exemplified by each class of that status (``error_code`` and default message), with the
headers those classes send. ``tests/test_openapi.py`` runs schemathesis against a live gateway to
check that answers match the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.common.errors import (
    GatewayError,
    PollRateExceeded,
    QueueFull,
    QuotaRefused,
    RateLimitExceeded,
    ServiceError,
    Unauthorized,
)
from gateway.web.spec import ErrorSpec, Json, Operation, Param, Relayed, status_of


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
# Filters of admin reads: an empty value is the same as none.
OPTIONAL_DATE_TIME: Json = {"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}]}
OPTIONAL_DATE: Json = {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}]}


# --- answers the gateway passes on or renders itself (admin answers are models) ---------

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

ERROR_HEADERS: tuple[tuple[type[GatewayError], tuple[str, ...]], ...] = (
    (Unauthorized, ("WWW-Authenticate",)),
    (RateLimitExceeded, ("Retry-After",)),
    (QueueFull, ("Retry-After",)),
    (PollRateExceeded, ("Retry-After",)),
    (QuotaRefused, ("RateLimit-Policy", "RateLimit")),
)
"""The headers an error class sends beyond ``X-Request-Id`` (a 429 or 503 of the gateway's
or RunComfy's own always carries ``Retry-After``)."""
RELAYED = "RunComfy's own answer about the caller's input, passed on as RunComfy sent it"


def _error_headers(error: ErrorSpec) -> tuple[str, ...]:
    if isinstance(error, Relayed):
        return ("Retry-After",) if error.status == 429 else ()
    names = [n for cls, found in ERROR_HEADERS if issubclass(error, cls) for n in found]
    if issubclass(error, ServiceError) and error.status in (429, 503):
        names.append("Retry-After")
    return tuple(names)


def _meaning(error: ErrorSpec) -> str:
    if isinstance(error, Relayed):
        return f"- {RELAYED} (its `error_code`)"
    return f"- `{error.error_code}` {error.__name__}: {error.default_message}"


def _example(error: type[GatewayError]) -> Json:
    return {
        "summary": f"{error.error_code} {error.__name__}",
        "value": {
            "error_code": error.error_code,
            "error_message": error.default_message,
            "detail": "",
        },
    }


def _error_responses(operations: list[Operation]) -> Json:
    """One shared response per error status, from the classes of that status the rows name."""
    by_status: dict[int, dict[ErrorSpec, None]] = {}
    for op in operations:
        for error in op.all_errors():
            by_status.setdefault(status_of(error), {})[error] = None
    responses: Json = {}
    for status in sorted(by_status):
        errors = sorted(by_status[status], key=_error_order)
        headers = dict.fromkeys(n for e in errors for n in _error_headers(e))
        content: Json = {"schema": ref("Error")}
        classes = [e for e in errors if not isinstance(e, Relayed)]
        if classes:
            content["examples"] = {e.__name__: _example(e) for e in classes}
        responses[f"Error{status}"] = {
            "description": "\n".join(_meaning(e) for e in errors),
            "headers": _headers(("X-Request-Id", *headers)),
            "content": {"application/json": content},
        }
    return responses


def _error_order(error: ErrorSpec) -> tuple[int, str]:
    if isinstance(error, Relayed):
        return (10**9, "")
    return (error.error_code, error.__name__)


def _headers(names: tuple[str, ...]) -> Json:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


# --- operations ------------------------------------------------------------------------------


def _param(param: Param) -> Json:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "schema": param.schema,
        **({"description": param.description} if param.description else {}),
    }


def _schema(body: type[BaseModel] | Json) -> Json:
    return ref(body.__name__) if isinstance(body, type) else body


def _operation(op: Operation) -> Json:
    responses: Json = {}
    for ok in op.ok:
        responses[str(ok.status)] = {
            "description": ok.description,
            "headers": _headers(("X-Request-Id", *ok.headers)),
            "content": {ok.media_type: {"schema": _schema(ok.body)}},
        }
    for status in op.statuses():
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation: Json = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": op.auth.security(),
        "parameters": [_param(p) for p in op.params],
        "responses": responses,
    }
    if op.description:
        operation["description"] = op.description
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _schema(op.body)}},
        }
    return operation


def _model_schemas(operations: list[Operation]) -> Json:
    """The JSON schemas of the rows' request models (as validated) and response models (as
    serialized), with what they nest."""
    requests = {op.body: None for op in operations if isinstance(op.body, type)}
    answers = {ok.body: None for op in operations for ok in op.ok if isinstance(ok.body, type)}
    _, top = models_json_schema(
        [(model, "validation") for model in requests]
        + [(model, "serialization") for model in answers],
        ref_template="#/components/schemas/{model}",
    )
    defs: Json = top["$defs"]
    missing = {m.__name__ for m in [*requests, *answers]} - set(defs)
    assert not missing, f"models named otherwise in the document: {missing}"
    return defs


def document(operations: list[Operation]) -> Json:
    """The OpenAPI 3.1 document of these operations."""
    paths: Json = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
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
            "schemas": {**_model_schemas(operations), **RESPONSE_SCHEMAS},
            "responses": _error_responses(operations),
            "headers": HEADERS,
        },
    }

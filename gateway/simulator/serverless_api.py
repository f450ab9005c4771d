"""Serverless jobs: ``/prod/{v1|v2}/deployments/{id}/inference`` and ``.../requests/{rid}/...``.

The Go client decodes inference, status and cancel answers with ``DisallowUnknownFields``, so
those bodies carry exactly the documented keys and nothing else. Webhook query parameters are
accepted and only show up in the call log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.simulator.clock import iso_timestamp
from gateway.simulator.errors import validation_failed
from gateway.simulator.jobs import Job, status_word
from gateway.simulator.jsonio import json_response
from gateway.simulator.keys import SIM_STATE
from gateway.simulator.parsing import read_json_object
from gateway.simulator.routing import RouteTable
from gateway.simulator.state import SimState
from gateway.simulator.validation import make_validator, schema_errors

PREFIX = "/prod/{version:v1|v2}/deployments/{deployment_id}"
FAILURE = {
    "errorCode": 500,
    "error": "Prompt execution failed (simulated failure).",
    "debugInfo": "Node 31 (KSampler) raised: simulated CUDA error: out of memory",
}
_BODY = make_validator(
    {
        "type": "object",
        "properties": {
            "overrides": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {"inputs": {"type": "object"}},
                },
            },
            "workflow_api_json": {"type": "object"},
            "extra_data": {"type": "object"},
        },
    }
)


def _urls(request: web.Request, job: Job) -> dict[str, str]:
    """Absolute URLs under the API version and host the client used."""
    version = request.match_info["version"]
    base = f"{request.url.origin()}/prod/{version}/deployments/{job.target}/requests/{job.id}"
    return {
        "status_url": f"{base}/status",
        "result_url": f"{base}/result",
        "cancel_url": f"{base}/cancel",
    }


def _job(request: web.Request) -> tuple[SimState, Job]:
    """The state and the job named in the path, or 404 404001."""
    state = request.app[SIM_STATE]
    info = request.match_info
    return state, state.serverless_job(info["deployment_id"], info["request_id"])


async def inference(request: web.Request) -> web.Response:
    """Queue a run of the deployment's workflow; exactly the four documented keys back."""
    state = request.app[SIM_STATE]
    deployment = state.deployment(request.match_info["deployment_id"])
    body = await read_json_object(request)
    details = schema_errors(_BODY, body)
    if details:
        raise validation_failed("Invalid inference request.", details)
    state.require_balance()
    job = state.submit_serverless_job(deployment, body)
    return json_response({"request_id": job.id, **_urls(request, job)})


async def status(request: web.Request) -> web.Response:
    """Only ``request_id, status, queue_position (queued), status_url, result_url``."""
    state, job = _job(request)
    now = state.now()
    phase = job.phase(now)
    body: dict[str, Any] = {"request_id": job.id, "status": status_word(phase)}
    if phase == "in_queue":
        body["queue_position"] = job.queue_position(now)
    urls = _urls(request, job)
    body["status_url"] = urls["status_url"]
    body["result_url"] = urls["result_url"]
    return json_response(body)


async def result(request: web.Request) -> web.Response:
    """``created_at`` always, ``finished_at`` once terminal, ``outputs`` or ``error``."""
    state, job = _job(request)
    now = state.now()
    phase = job.phase(now)
    body: dict[str, Any] = {
        "request_id": job.id,
        "status": phase,
        "created_at": iso_timestamp(job.created_at),
    }
    finished = job.finished_at(now)
    if finished is not None:
        body["finished_at"] = iso_timestamp(finished)
    if phase == "succeeded":
        body["outputs"] = job.output
    elif phase == "failed":
        body["error"] = [dict(FAILURE)]
    return json_response(body)


async def cancel(request: web.Request) -> web.Response:
    """202 with only ``request_id`` and ``status`` (no ``outcome``, unlike the Model API)."""
    state, job = _job(request)
    word = "cancellation_requested" if job.cancel(state.now()) else "not_cancellable"
    return json_response({"request_id": job.id, "status": word}, status=202)


def register(app: web.Application, routes: RouteTable) -> None:
    """Serverless job routes, v1 and v2 alike."""
    routes.add(app, "POST", f"{PREFIX}/inference", inference, "serverless.inference")
    routes.add(app, "GET", f"{PREFIX}/requests/{{request_id}}/status", status, "serverless.status")
    routes.add(app, "GET", f"{PREFIX}/requests/{{request_id}}/result", result, "serverless.result")
    routes.add(app, "POST", f"{PREFIX}/requests/{{request_id}}/cancel", cancel, "serverless.cancel")

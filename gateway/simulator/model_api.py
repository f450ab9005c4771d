"""Model API jobs: submit, status, result, cancel (``/v1/models/{id}``, ``/v1/requests/{id}``).

``/status`` says ``completed`` for failed jobs too; only ``/result`` tells success from failure.
URLs in answers are built from the request's own Host, so they point back at the simulator.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.simulator.catalog import MICRO
from gateway.simulator.clock import iso_timestamp
from gateway.simulator.errors import validation_failed
from gateway.simulator.jobs import TERMINAL, status_word
from gateway.simulator.jsonio import json_response
from gateway.simulator.keys import SIM_STATE
from gateway.simulator.parsing import query_flag, read_json_object
from gateway.simulator.routing import RouteTable

FAILURE = {
    "code": "generation_failed",
    "message": "The model failed to generate an output (simulated failure).",
}


def _urls(request: web.Request, request_id: str) -> dict[str, str]:
    """Absolute status/result/cancel URLs on the host the client called."""
    base = f"{request.url.origin()}/v1/requests/{request_id}"
    return {
        "status_url": f"{base}/status",
        "result_url": f"{base}/result",
        "cancel_url": f"{base}/cancel",
    }


async def submit(request: web.Request) -> web.Response:
    """Validate the input against the model's schema, check the balance, queue a job."""
    state = request.app[SIM_STATE]
    model = state.catalog.get(request.match_info["model_id"])
    body = await read_json_object(request)
    details = model.validate(body)
    if details:
        raise validation_failed(f"Input does not match the schema of {model.model_id}.", details)
    state.require_balance()
    job = state.submit_model_job(model, body)
    return json_response({"request_id": job.id, **_urls(request, job.id)})


async def status(request: web.Request) -> web.Response:
    """The job's state; ``queue_position`` only while queued."""
    state = request.app[SIM_STATE]
    job = state.model_job(request.match_info["request_id"])
    now = state.now()
    phase = job.phase(now)
    body: dict[str, Any] = {"request_id": job.id, "status": status_word(phase)}
    if phase == "in_queue":
        body["queue_position"] = job.queue_position(now)
    urls = _urls(request, job.id)
    body["status_url"] = urls["status_url"]
    body["result_url"] = urls["result_url"]
    return json_response(body)


async def result(request: web.Request) -> web.Response:
    """The current state while unfinished, then output, error or cancellation (always 200)."""
    state = request.app[SIM_STATE]
    job = state.model_job(request.match_info["request_id"])
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
        body["output"] = job.output
    elif phase == "failed":
        body["error"] = dict(FAILURE)
    if phase in TERMINAL and query_flag(request, "include_cost"):
        body["cost"] = job.billed_micro(now) / MICRO
    return json_response(body)


async def cancel(request: web.Request) -> web.Response:
    """202 always; ``outcome`` says whether it worked (only queued jobs can be cancelled)."""
    state = request.app[SIM_STATE]
    job = state.model_job(request.match_info["request_id"])
    now = state.now()
    outcome = "cancelled" if job.cancel(now) else "not_cancellable"
    body = {"request_id": job.id, "status": status_word(job.phase(now)), "outcome": outcome}
    return json_response(body, status=202)


def register(app: web.Application, routes: RouteTable) -> None:
    """Model API job routes (the catalog shares ``/v1/models``; see ``catalog_api``)."""
    routes.add(app, "POST", "/v1/models/{model_id:.+}", submit, "model.submit")
    routes.add(app, "GET", "/v1/requests/{request_id}/status", status, "model.status")
    routes.add(app, "GET", "/v1/requests/{request_id}/result", result, "model.result")
    routes.add(app, "POST", "/v1/requests/{request_id}/cancel", cancel, "model.cancel")

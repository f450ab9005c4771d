"""Forwarding of team requests to RunComfy under gateway request ids.

Each call resolves the caller's gateway id to RunComfy's job id, forwards, and rewrites the answer
so the client only ever sees gateway ids and gateway URLs (asset URLs are left untouched).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import structlog

from gateway.credentials import KeyCredential
from gateway.errors import (
    GatewayError,
    NotFound,
    StoreUnavailable,
    SubmitOutcomeUnknown,
    UpstreamBadGateway,
    UpstreamClientError,
)
from gateway.request_records import Api, RequestRecord, RequestRecords, SubmitState
from gateway.store.client import STORE_FAILURES
from gateway.teams import TeamPrincipal
from gateway.upstream import UpstreamClient, UpstreamReply
from gateway.urls import URL_FIELDS, model_request_urls, serverless_request_urls

log = structlog.get_logger(__name__)


def rewrite(body: Any, rid: str, urls: dict[str, str]) -> Any:
    """RunComfy's answer with the gateway's id and URLs; other fields exactly as they were."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if "request_id" in out:
        out["request_id"] = rid
    for field in URL_FIELDS:
        if field in out:
            out[field] = urls[field]
    return out


def _hide_upstream_id(error: UpstreamClientError, upstream_id: str, rid: str) -> None:
    """RunComfy's error messages may name its own job id; the client knows only ours."""
    if upstream_id:
        text = orjson.dumps(error.body()).decode().replace(upstream_id, rid)
        error.replace_body(orjson.loads(text))


class ProxyService:
    def __init__(
        self, records: RequestRecords, model_api: UpstreamClient, serverless: UpstreamClient
    ) -> None:
        self._records = records
        self._model_api = model_api
        self._serverless = serverless

    async def _submit(
        self,
        cred: KeyCredential,
        api: Api,
        target: str,
        upstream: UpstreamClient,
        path: str,
        body: bytes,
        params: dict[str, str] | None,
    ) -> tuple[TeamPrincipal, RequestRecord, UpstreamReply]:
        principal, record = await self._records.begin(cred, api, target)
        slot, rid = principal.slot, record.request_id
        try:
            reply = await upstream.call("POST", path, data=body, params=params, idempotent=False)
            upstream_id = reply.body.get("request_id") if isinstance(reply.body, dict) else None
            if not isinstance(upstream_id, str) or not upstream_id:
                raise SubmitOutcomeUnknown(detail="RunComfy's answer had no request_id")
        except SubmitOutcomeUnknown as exc:
            log.error(
                "submit_outcome_unknown",
                request_id=rid,
                team=principal.team_id,
                target=target,
                reason=str(exc.detail),
            )
            exc.detail = {"request_id": rid, "reason": exc.detail}
            await self._records.mark_unknown(slot, rid, str(exc.detail["reason"]))
            raise
        except GatewayError:
            await self._records.discard(slot, rid)  # RunComfy refused or was never reached
            raise
        try:
            await self._records.mark_submitted(slot, rid, upstream_id)
        except STORE_FAILURES:
            # The job runs and is paid for, but its id could not be stored: say so, loudly.
            log.error(
                "submit_unrecorded",
                request_id=rid,
                upstream_request_id=upstream_id,
                team=principal.team_id,
                target=target,
            )
            raise StoreUnavailable(
                "The job was started but the gateway could not record it; operators can "
                "reconcile it from the logs.",
                detail={"request_id": rid},
            ) from None
        return principal, record, reply

    async def submit_model(
        self, cred: KeyCredential, model_id: str, body: bytes, base: str
    ) -> tuple[TeamPrincipal, RequestRecord, dict[str, Any]]:
        path = f"/v1/models/{quote(model_id, safe='/')}"
        principal, record, reply = await self._submit(
            cred, Api.MODEL, model_id, self._model_api, path, body, None
        )
        urls = model_request_urls(base, record.request_id)
        answer = rewrite(reply.body, record.request_id, urls)
        return principal, record, {"request_id": record.request_id, **urls} | answer

    async def submit_serverless(
        self,
        cred: KeyCredential,
        version: str,
        deployment_id: str,
        body: bytes,
        params: dict[str, str],
        base: str,
    ) -> tuple[TeamPrincipal, RequestRecord, Any]:
        path = f"/prod/{version}/deployments/{quote(deployment_id, safe='')}/inference"
        principal, record, reply = await self._submit(
            cred, Api.SERVERLESS, deployment_id, self._serverless, path, body, params or None
        )
        urls = serverless_request_urls(base, version, deployment_id, record.request_id)
        return principal, record, rewrite(reply.body, record.request_id, urls)

    async def _resolve(
        self, cred: KeyCredential, rid: str, api: Api, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, RequestRecord]:
        principal, record = await self._records.load(cred, rid)
        if record is None or record.api != api:
            raise NotFound(f"Request {rid} not found.")
        if deployment_id is not None and record.target != deployment_id:
            raise NotFound(f"Request {rid} not found.")
        if record.state == SubmitState.UNKNOWN:
            raise SubmitOutcomeUnknown(detail={"request_id": rid, "reason": "submit unanswered"})
        return principal, record

    async def _forward(
        self,
        upstream: UpstreamClient,
        method: str,
        path: str,
        record: RequestRecord,
        urls: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        try:
            reply = await upstream.call(method, path, params=params, idempotent=True)
        except UpstreamClientError as exc:
            _hide_upstream_id(exc, record.upstream_id, record.request_id)
            raise
        if not isinstance(reply.body, dict):
            raise UpstreamBadGateway(detail="RunComfy answered with a non-object JSON body")
        return reply.status, rewrite(reply.body, record.request_id, urls)

    def _pending(self, record: RequestRecord, urls: dict[str, str], leaf: str) -> dict[str, Any]:
        """State of a request whose submit is still on its way to RunComfy."""
        if leaf == "cancel":
            raise SubmitOutcomeUnknown(
                "The request is still being submitted; retry the cancel in a moment.",
                detail={"request_id": record.request_id},
            )
        body: dict[str, Any] = {"request_id": record.request_id, "status": "in_queue"}
        if leaf == "status":
            body |= {"queue_position": 0, "status_url": urls["status_url"]}
            body["result_url"] = urls["result_url"]
        else:
            body["created_at"] = record.created_at
        return body

    async def model_call(
        self, cred: KeyCredential, rid: str, leaf: str, base: str, params: dict[str, str]
    ) -> tuple[TeamPrincipal, int, Any]:
        """status, result or cancel of a Model API request."""
        principal, record = await self._resolve(cred, rid, Api.MODEL)
        urls = model_request_urls(base, rid)
        if record.state == SubmitState.SUBMITTING:
            return principal, 200, self._pending(record, urls, leaf)
        method = "POST" if leaf == "cancel" else "GET"
        path = f"/v1/requests/{quote(record.upstream_id, safe='')}/{leaf}"
        status, body = await self._forward(
            self._model_api, method, path, record, urls, params or None
        )
        return principal, status, body

    async def serverless_call(
        self, cred: KeyCredential, version: str, deployment_id: str, rid: str, leaf: str, base: str
    ) -> tuple[TeamPrincipal, int, Any]:
        """status, result or cancel of a serverless request."""
        principal, record = await self._resolve(cred, rid, Api.SERVERLESS, deployment_id)
        urls = serverless_request_urls(base, version, deployment_id, rid)
        if record.state == SubmitState.SUBMITTING:
            return principal, 200, self._pending(record, urls, leaf)
        method = "POST" if leaf == "cancel" else "GET"
        path = (
            f"/prod/{version}/deployments/{quote(deployment_id, safe='')}"
            f"/requests/{quote(record.upstream_id, safe='')}/{leaf}"
        )
        status, body = await self._forward(self._serverless, method, path, record, urls)
        return principal, status, body

"""What the RunComfy routes ask of the gateway's jobs: submit, status, result and cancel.

A front with no logic of its own, so a route needs one dependency whichever call it serves:
submits are :mod:`gateway.jobs.submit`, status and result :mod:`gateway.jobs.answers`, cancels
:mod:`gateway.jobs.cancels`.
"""

from __future__ import annotations

from typing import Any

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal
from gateway.jobs.answers import AnswerService
from gateway.jobs.cancels import CancelService
from gateway.jobs.dedup import CacheControl
from gateway.jobs.submit import SubmitAnswer, SubmitService
from gateway.upstream.apis import Api

__all__ = ["ProxyService", "SubmitAnswer"]


class ProxyService:
    """The routes' one dependency for RunComfy's calls; each call goes to its own service."""

    def __init__(
        self, submits: SubmitService, answers: AnswerService, cancels: CancelService
    ) -> None:
        self._submits = submits
        self._answers = answers
        self._cancels = cancels

    def needs_catalog(self, api: Api, target: str) -> bool:
        return self._submits.needs_catalog(api, target)

    async def submit(
        self,
        cred: KeyCredential,
        api: Api,
        target: str,
        version: str,
        raw: bytes,
        body: dict[str, Any],
        control: CacheControl,
        base: str,
        webhook: tuple[str, bool] | None = None,
    ) -> SubmitAnswer:
        return await self._submits.submit(
            cred, api, target, version, raw, body, control, base, webhook
        )

    async def status(
        self, cred: KeyCredential, rid: str, api: Api, base: str, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        return await self._answers.status(cred, rid, api, base, deployment_id)

    async def result(
        self,
        cred: KeyCredential,
        rid: str,
        api: Api,
        base: str,
        include_cost: bool,
        deployment_id: str | None = None,
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        return await self._answers.result(cred, rid, api, base, include_cost, deployment_id)

    async def cancel(
        self, cred: KeyCredential, rid: str, api: Api, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, int, dict[str, Any]]:
        return await self._cancels.cancel(cred, rid, api, deployment_id)

"""What an admission tells beyond its client's answer: a budget alert, the webhook of a hit
(final at once) and the cache and refusal metrics. Kept apart from the submit's own steps so
that admitting and sending read without the bookkeeping around them."""

from __future__ import annotations

from typing import Protocol

import orjson

from gateway.common.errors import QuotaRefused
from gateway.jobs.gate import Admission, Outcome
from gateway.jobs.records import RequestRecords
from gateway.jobs.webhooks import Webhooks
from gateway.money.quotas import BudgetAlert
from gateway.observability.metrics import Metrics
from gateway.upstream.apis import Api


class Alerts(Protocol):
    async def budget_alert(self, alert: BudgetAlert) -> None: ...


class AdmissionNotices:
    def __init__(
        self, records: RequestRecords, alerts: Alerts, webhooks: Webhooks, metrics: Metrics
    ) -> None:
        self._records = records
        self._alerts = alerts
        self._webhooks = webhooks
        self._metrics = metrics

    async def admitted(self, admission: Admission, target: str, webhook: str | None) -> None:
        """A budget alert the admission crossed; a hit's webhook, called with the cached result."""
        if admission.alert is not None:
            await self._alerts.budget_alert(admission.alert)
        if admission.outcome is not Outcome.HIT or webhook is None:
            return
        record = admission.record
        job = await self._records.job(admission.principal.slot, record.job_id)
        if job is not None:
            result = orjson.loads(job.result_body or "{}")
            await self._webhooks.enqueue(
                record.request_id, target, webhook, job.state.value, result
            )

    def refused(self, exc: QuotaRefused) -> None:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        team = self._metrics.labels.team(str(detail.get("team_id", "")))
        self._metrics.quota_refusals.labels(team, str(detail.get("limit", "other"))).inc()

    def counted(self, admission: Admission, api: Api, target: str) -> None:
        """The admission's outcome in the cache metrics, and what it saved."""
        metrics = self._metrics
        team = metrics.labels.team(admission.principal.team_id)
        model = metrics.labels.model(target, serverless=api is Api.SERVERLESS)
        outcome = admission.outcome
        metrics.child(metrics.cache_requests, team, model, outcome.value).inc()
        if outcome in (Outcome.HIT, Outcome.COALESCED):
            metrics.child(metrics.calls_avoided, model).inc()
        if admission.saved_micro > 0:
            metrics.cost_saved.add(admission.saved_micro, team, model)

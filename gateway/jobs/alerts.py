"""Budget alerts: a callback to the team's alert webhook when its committed spend first
crosses 50, 80 and 100 % of the period's budget.

The admission and settlement scripts decide, atomically, that a threshold was crossed and mark
it in the period's spend record, so each threshold fires once per period however many
replicas see it; delivery goes through the webhook queue (retries, SSRF policy).
"""

from __future__ import annotations

import structlog

from gateway.common.errors import StoreUnavailable
from gateway.jobs.webhooks import Webhooks
from gateway.money.quotas import BudgetAlert
from gateway.observability.metrics import Metrics
from gateway.store.client import Store
from gateway.store.layout import Layout

log = structlog.get_logger(__name__)


class BudgetAlerts:
    def __init__(self, redis: Store, layout: Layout, webhooks: Webhooks, metrics: Metrics) -> None:
        self._redis = redis
        self._layout = layout
        self._webhooks = webhooks
        self._metrics = metrics

    async def budget_alert(self, alert: BudgetAlert) -> None:
        log.warning(
            "budget_alert",
            team=alert.team_id,
            threshold_percent=alert.level,
            period=alert.period,
            committed_usd=alert.payload()["committed_usd"],
            budget_usd=alert.payload()["budget_usd"],
        )
        self._metrics.budget_alerts.labels(
            self._metrics.labels.team(alert.team_id), str(alert.level)
        ).inc()
        try:
            shard = await self._redis.hget(self._layout.team_index(), alert.team_id)
            if shard is None:
                return
            url = await self._redis.hget(self._layout.limits(str(shard)), "alert_webhook")
            if url:
                mark = f"budget:{alert.team_id}:{alert.period}:{alert.level}"
                await self._webhooks.enqueue_payload(str(url), alert.payload(), mark)
        except StoreUnavailable as exc:
            log.error("budget_alert_not_queued", team=alert.team_id, error_type=type(exc).__name__)

"""Every typed key of shared state on the app and on requests, in one place."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from gateway.admins import AdminActor, AdminTokens
from gateway.alerts import BudgetAlerts
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.credentials import Credential
from gateway.dedup import DedupService
from gateway.metrics import Metrics
from gateway.poller import Poller
from gateway.pricing import Pricing
from gateway.proxy import ProxyService
from gateway.quotas import QuotaService
from gateway.request_records import RequestRecords
from gateway.settings import Settings
from gateway.store.client import Store
from gateway.store.embedded import EmbeddedRedis
from gateway.store.scripts import Scripts
from gateway.teams import TeamService
from gateway.upstream import UpstreamClient
from gateway.webhooks import Webhooks


@dataclass
class Lifecycle:
    """Process state that /readyz reports."""

    started: bool = False
    draining: bool = False
    redis_ok: bool = False
    redis_error: str = ""
    extra: dict[str, str] = field(default_factory=dict)


SETTINGS = web.AppKey("settings", Settings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REDIS: web.AppKey[Store] = web.AppKey("redis")
SCRIPTS = web.AppKey("scripts", Scripts)
EMBEDDED_REDIS = web.AppKey("embedded_redis", EmbeddedRedis)  # only when the gateway runs it
TEAMS = web.AppKey("teams", TeamService)
RECORDS = web.AppKey("records", RequestRecords)
MODEL_API = web.AppKey("model_api", UpstreamClient)
SERVERLESS = web.AppKey("serverless", UpstreamClient)
CATALOG = web.AppKey("catalog", Catalog)
PRICING = web.AppKey("pricing", Pricing)
PROXY = web.AppKey("proxy", ProxyService)
DEDUP = web.AppKey("dedup", DedupService)
POLLER = web.AppKey("poller", Poller)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
METRICS = web.AppKey("metrics", Metrics)
ADMINS = web.AppKey("admins", AdminTokens)
AUDIT = web.AppKey("audit", AuditLog)
QUOTAS = web.AppKey("quotas", QuotaService)
ALERTS = web.AppKey("alerts", BudgetAlerts)

CREDENTIAL: web.RequestKey[Credential | None] = web.RequestKey("credential", object)  # type: ignore[arg-type]
TEAM_ID = web.RequestKey("team_id", str)
GATEWAY_REQUEST_ID = web.RequestKey("gateway_request_id", str)
TARGET = web.RequestKey("target", str)
CORRELATION_ID = web.RequestKey("correlation_id", str)
ADMIN_ACTOR = web.RequestKey("admin_actor", AdminActor)
RAW_BODY = web.RequestKey("raw_body", bytes)
LARGE_BODIES = web.AppKey("large_bodies", asyncio.Semaphore)
METRICS_URL = web.AppKey("metrics_url", str)  # the separate metrics listener, once it listens

"""Every typed key of shared state on the app and on requests, in one place."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from gateway.access.admins import AdminActor, AdminTokens
from gateway.access.audit import AuditLog
from gateway.access.credentials import Credential
from gateway.access.teams import TeamService
from gateway.jobs.dedup import DedupService
from gateway.jobs.proxy import ProxyService
from gateway.jobs.records import RequestRecords
from gateway.jobs.webhooks import Webhooks
from gateway.money.pricing import Pricing
from gateway.money.quotas import QuotaService
from gateway.observability.metrics import Metrics
from gateway.settings import Settings
from gateway.store.client import Store
from gateway.store.commands import Commands
from gateway.store.embedded import EmbeddedRedis
from gateway.store.scripts import Scripts
from gateway.upstream.catalog import Catalog
from gateway.upstream.client import UpstreamClient
from gateway.web.services import Services
from gateway.web.workers import Worker


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
COMMANDS: web.AppKey[Commands] = web.AppKey("commands")
EMBEDDED_REDIS = web.AppKey("embedded_redis", EmbeddedRedis)  # only when the gateway runs it
MODEL_API = web.AppKey("model_api", UpstreamClient)
SERVERLESS = web.AppKey("serverless", UpstreamClient)
SERVICES = web.AppKey("services", Services)
# Services the routes read by their own key (the same objects as in SERVICES).
TEAMS = web.AppKey("teams", TeamService)
RECORDS = web.AppKey("records", RequestRecords)
CATALOG = web.AppKey("catalog", Catalog)
PRICING = web.AppKey("pricing", Pricing)
PROXY = web.AppKey("proxy", ProxyService)
DEDUP = web.AppKey("dedup", DedupService)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
METRICS = web.AppKey("metrics", Metrics)
ADMINS = web.AppKey("admins", AdminTokens)
AUDIT = web.AppKey("audit", AuditLog)
QUOTAS = web.AppKey("quotas", QuotaService)

CREDENTIAL: web.RequestKey[Credential | None] = web.RequestKey("credential", object)  # type: ignore[arg-type]
TEAM_ID = web.RequestKey("team_id", str)
GATEWAY_REQUEST_ID = web.RequestKey("gateway_request_id", str)
TARGET = web.RequestKey("target", str)
CORRELATION_ID = web.RequestKey("correlation_id", str)
ADMIN_ACTOR = web.RequestKey("admin_actor", AdminActor)
RAW_BODY = web.RequestKey("raw_body", bytes)
LARGE_BODIES = web.AppKey("large_bodies", asyncio.Semaphore)
METRICS_URL = web.AppKey("metrics_url", str)  # the separate metrics listener, once it listens
WORKER = web.AppKey("worker", Worker)  # set by `serve --workers N` in each worker process
# A test hook, never a setting: shifts Redis's clock as the scripts and the calendar see it.
CLOCK_OFFSET = web.AppKey("clock_offset", float)

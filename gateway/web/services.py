"""Every service of the gateway, built in one place from the resources the app opened.

The application's cleanup contexts open resources (Redis, upstream sessions, listeners) and run
background tasks; what sits between them is built here, once, in dependency order, and handed
back as one frozen bundle. Nothing is patched after construction: where two services would need
each other (what frees a concurrency slot and the dispatcher that fills it), a small shared
object stands between them (:class:`gateway.jobs.capacity.Vacancies`).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from gateway.access.admins import AdminTokens
from gateway.access.audit import AuditLog
from gateway.access.teams import TeamService
from gateway.common.records import record
from gateway.jobs.alerts import BudgetAlerts
from gateway.jobs.answers import AnswerService
from gateway.jobs.cancels import CancelService
from gateway.jobs.capacity import AccountCapacity, Vacancies
from gateway.jobs.dedup import DedupService, SchemaCache
from gateway.jobs.dispatcher import Dispatcher
from gateway.jobs.gate import Gate
from gateway.jobs.notices import AdmissionNotices
from gateway.jobs.poller import Poller, PollerConfig
from gateway.jobs.proxy import ProxyService
from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import Lifetimes, RequestRecords
from gateway.jobs.schedule import PollSchedule
from gateway.jobs.send import Sender
from gateway.jobs.submit import SubmitService
from gateway.jobs.webhooks import DeliveryConfig, WebhookPolicy, Webhooks
from gateway.jobs.withdrawals import Withdrawals
from gateway.money.pricing import Pricing
from gateway.money.quotas import Calendar, QuotaConfig, QuotaService
from gateway.observability.logs import SecretScrubber
from gateway.observability.metrics import Metrics
from gateway.settings import Settings
from gateway.store.client import Store
from gateway.store.commands import Commands
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api
from gateway.upstream.catalog import Catalog
from gateway.upstream.client import UpstreamClient


@record
class Resources:
    """What the cleanup contexts opened, which the services use."""

    settings: Settings
    metrics: Metrics
    redis: Store
    scripts: Scripts
    commands: Commands
    model_api: UpstreamClient
    serverless: UpstreamClient
    clock_offset: float = 0.0  # tests of period ends shift the clock; production never does


@record
class Services:
    """Every service, built once per application (see :func:`build_services`)."""

    teams: TeamService
    admins: AdminTokens
    audit: AuditLog
    quotas: QuotaService
    gate: Gate  # a client's way in: admission and its own lookups, behind its key
    records: RequestRecords  # the gateway's own reads and writes of requests and jobs
    queues: TeamQueues
    schedule: PollSchedule
    webhooks: Webhooks
    alerts: BudgetAlerts
    catalog: Catalog
    pricing: Pricing
    dedup: DedupService
    submits: SubmitService
    proxy: ProxyService
    withdrawals: Withdrawals  # background: takes back admissions whose answer was lost
    poller: Poller  # background: one poller per job across replicas
    dispatcher: Dispatcher  # background: starts queued jobs


class PricedCharge:
    """The submit's view of pricing: (estimate, serverless rate per second) in micro-dollars."""

    def __init__(self, pricing: Pricing) -> None:
        self._pricing = pricing

    async def charge(self, api: Api, target: str, body: dict[str, Any]) -> tuple[int, int]:
        estimate = await self._pricing.estimate(api, target, body)
        rate = estimate.unit_price_micro if api is Api.SERVERLESS else 0
        return estimate.micro, rate

    def cached(self, api: Api, target: str) -> bool:
        return api is Api.SERVERLESS or self._pricing.catalog_price_cached(target)


@record
class _JobStores:
    """The parts of Redis the job services read and write, each behind its own object."""

    layout: Layout
    lifetimes: Lifetimes
    gate: Gate
    records: RequestRecords
    queues: TeamQueues
    schedule: PollSchedule


@record
class _JobFlow:
    """The services a job passes through, from its submit to its end."""

    submits: SubmitService
    proxy: ProxyService
    withdrawals: Withdrawals
    poller: Poller
    dispatcher: Dispatcher


def build_services(res: Resources) -> Services:
    """Build every service, each from the few it depends on."""
    settings, redis, scripts = res.settings, res.redis, res.scripts
    layout = Layout(settings.redis_namespace)
    secrets = [settings.upstream_token.get_secret_value(), settings.admin_token.get_secret_value()]
    calendar = Calendar(ZoneInfo(settings.quota_timezone), res.clock_offset)
    quota = _quota_config(settings)
    teams = TeamService(redis, scripts, layout)
    stores = _job_stores(res, layout, calendar, quota)
    webhooks = _webhooks(settings, redis, scripts, layout)
    alerts = BudgetAlerts(redis, layout, webhooks, res.metrics)
    catalog = Catalog(res.model_api, settings.catalog_cache_seconds)
    pricing = Pricing(redis, layout, catalog, settings.pricing_cache_seconds)
    dedup = DedupService(redis, scripts, layout, SchemaCache(catalog, res.metrics), res.metrics)
    flow = _job_flow(res, stores, teams, dedup, PricedCharge(pricing), alerts, webhooks)
    return Services(
        teams=teams,
        admins=AdminTokens(redis, scripts, layout),
        audit=AuditLog(redis, layout, SecretScrubber(secrets)),
        quotas=QuotaService(redis, scripts, layout, calendar, quota),
        gate=stores.gate,
        records=stores.records,
        queues=stores.queues,
        schedule=stores.schedule,
        webhooks=webhooks,
        alerts=alerts,
        catalog=catalog,
        pricing=pricing,
        dedup=dedup,
        submits=flow.submits,
        proxy=flow.proxy,
        withdrawals=flow.withdrawals,
        poller=flow.poller,
        dispatcher=flow.dispatcher,
    )


def _job_stores(
    res: Resources, layout: Layout, calendar: Calendar, quota: QuotaConfig
) -> _JobStores:
    redis, scripts, lifetimes = res.redis, res.scripts, _lifetimes(res.settings)
    return _JobStores(
        layout=layout,
        lifetimes=lifetimes,
        gate=Gate(scripts, layout, lifetimes, calendar, quota),
        records=RequestRecords(redis, scripts, layout, lifetimes, calendar, quota, res.commands),
        queues=TeamQueues(redis, scripts, layout, calendar, lifetimes.submit_deadline),
        schedule=PollSchedule(redis, scripts, layout, res.commands),
    )


def _job_flow(
    res: Resources,
    stores: _JobStores,
    teams: TeamService,
    dedup: DedupService,
    estimator: PricedCharge,
    alerts: BudgetAlerts,
    webhooks: Webhooks,
) -> _JobFlow:
    """The submit, send, poll and dispatch services; a Vacancies object stands between what
    frees a concurrency slot and the dispatcher that fills it."""
    settings = res.settings
    records, queues, schedule = stores.records, stores.queues, stores.schedule
    upstreams = {Api.MODEL: res.model_api, Api.SERVERLESS: res.serverless}
    vacancies = Vacancies()
    capacity = AccountCapacity(
        res.scripts,
        stores.layout,
        queues,
        stores.lifetimes,
        settings.global_max_concurrent_jobs,
        vacancies,
    )
    sender = Sender(records, queues, schedule, upstreams, capacity, settings.poll_interval_seconds)
    withdrawals = Withdrawals(records, vacancies)
    submits = SubmitService(
        stores.gate,
        records,
        queues,
        dedup,
        estimator,
        sender,
        withdrawals,
        AdmissionNotices(records, alerts, webhooks, res.metrics),
    )
    heal_after = 3 * settings.poll_interval_seconds + settings.poll_lease_seconds
    answers = AnswerService(stores.gate, schedule, heal_after)
    cancels = CancelService(stores.gate, records, schedule, upstreams, capacity, webhooks)
    config = _poller_config(settings)
    return _JobFlow(
        submits=submits,
        proxy=ProxyService(submits, answers, cancels),
        withdrawals=withdrawals,
        poller=Poller(
            records, schedule, upstreams, config, webhooks, res.metrics, alerts, capacity
        ),
        dispatcher=Dispatcher(
            records, queues, sender, teams, vacancies, settings.dispatch_interval_seconds
        ),
    )


def _quota_config(settings: Settings) -> QuotaConfig:
    return QuotaConfig(
        default_queue_depth=settings.queue_depth,
        usage_retention=settings.usage_retention_days * 86400,
        poll_rate=settings.poll_rate_per_second,
        poll_burst=settings.poll_burst,
        global_max_concurrent=settings.global_max_concurrent_jobs,
    )


def _lifetimes(settings: Settings) -> Lifetimes:
    return Lifetimes(
        request_ttl=settings.request_ttl_seconds,
        job_lifetime=settings.job_lifetime_seconds,
        cache_ttl=settings.cache_ttl_seconds,
        submit_deadline=settings.upstream_submit_timeout + settings.upstream_connect_timeout,
        default_policy=settings.dedup_default_policy,
        shared=settings.cache_scope == "shared",
    )


def _webhooks(settings: Settings, redis: Store, scripts: Scripts, layout: Layout) -> Webhooks:
    allowed = (h.strip().lower() for h in settings.webhook_allowed_hosts.split(","))
    return Webhooks(
        redis,
        scripts,
        layout,
        WebhookPolicy(
            allow_private=settings.webhook_allow_private,
            allowed_hosts=frozenset(h for h in allowed if h),
        ),
        DeliveryConfig(
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_seconds,
            lease=settings.webhook_timeout_seconds + 5,
        ),
        settings.request_ttl_seconds,
    )


def _poller_config(settings: Settings) -> PollerConfig:
    return PollerConfig(
        interval=settings.poll_interval_seconds,
        max_interval=settings.poll_max_interval_seconds,
        lease=settings.poll_lease_seconds,
        batch=settings.poll_concurrency,
        concurrency=settings.poll_concurrency,
    )

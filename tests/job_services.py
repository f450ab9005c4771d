"""The gateway's services on a real Redis and the simulator, without the web app around them.

Unit tests of the job services (submit, poller, dispatcher) drive them directly: the resources
are opened as the app opens them, the services are built by the app's own
:func:`gateway.web.services.build_services`, and no background loop runs unless a test runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.access.credentials import KeyCredential, parse_bearer
from gateway.jobs.dedup import CacheControl
from gateway.jobs.job import Job
from gateway.jobs.submit import SubmitAnswer
from gateway.money.quotas import Limits
from gateway.observability.metrics import Metrics
from gateway.settings import Settings
from gateway.store.client import connect
from gateway.store.commands import RedisPyCommands
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamClient, UpstreamName
from gateway.web.app import upstream_config
from gateway.web.services import Resources, Services, build_services
from tests.conftest import NANO, make_settings

BASE = "http://gateway.test"


@dataclass
class JobServices:
    """The built services, and what a test does with them as a team would."""

    services: Services
    settings: Settings

    async def team(self, team_id: str, **limits: Any) -> KeyCredential:
        """A new team with one key (and ``limits``); returns the key's credential."""
        teams = self.services.teams
        await teams.create_team(team_id, None)
        _, key = await teams.create_key(team_id, None)
        if limits:
            await self.services.quotas.set_limits(await teams.slot_of(team_id), Limits(**limits))
        cred = parse_bearer(f"Bearer {key}", "")
        assert isinstance(cred, KeyCredential)
        return cred

    async def submit(self, cred: KeyCredential, prompt: str) -> SubmitAnswer:
        """A Model API submit of ``prompt`` to the nano model."""
        body = {"prompt": prompt}
        raw = f'{{"prompt": "{prompt}"}}'.encode()
        return await self.services.submits.submit(
            cred, Api.MODEL, NANO, "", raw, body, CacheControl(), BASE
        )

    async def job(self, answer: SubmitAnswer) -> Job:
        job = await self.services.records.job(answer.principal.slot, answer.record.job_id)
        assert job is not None
        return job

    async def poll_until(
        self, answer: SubmitAnswer, done: Callable[[Job], bool], within: float = 10.0
    ) -> Job:
        """Poll the answer's job (as the poller would) until ``done`` says so."""
        return await until(lambda: self._polled(answer), done, within)

    async def _polled(self, answer: SubmitAnswer) -> Job:
        await self.services.poller.poll_once(answer.principal.slot, answer.record.job_id)
        return await self.job(answer)


async def until(
    read: Callable[[], Awaitable[Job]], done: Callable[[Job], bool], within: float = 10.0
) -> Job:
    """Read the job every 50 ms until ``done``; fails after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        job = await read()
        if done(job):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"still {job.state}: {job}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def job_services(
    redis_url: str, namespace: str, upstream: str, tmp: Path, **overrides: Any
) -> AsyncIterator[JobServices]:
    settings = make_settings(redis_url, namespace, upstream, tmp, **overrides)
    metrics = Metrics()
    redis = connect(redis_url)
    clients = [
        UpstreamClient(upstream_config(settings, name, upstream), metrics)
        for name in (UpstreamName.MODEL_API, UpstreamName.SERVERLESS)
    ]
    for client in clients:
        await client.start()
    try:
        resources = Resources(
            settings=settings,
            metrics=metrics,
            redis=redis,
            scripts=Scripts.register(redis),
            commands=RedisPyCommands(redis),
            model_api=clients[0],
            serverless=clients[1],
        )
        yield JobServices(build_services(resources), settings)
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()

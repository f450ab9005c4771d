"""Everything the simulator remembers, in one object stored under ``SIM_STATE``.

In-process tests read it directly (``app[SIM_STATE].calls.count("model.submit")``); HTTP tests
use the ``/_sim/`` control API, which reads and writes the same object.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.simulator.calls import CallLog
from gateway.simulator.catalog import MICRO, Catalog, CatalogModel
from gateway.simulator.clock import SimClock, iso_timestamp
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.deployments import Deployment, seed_deployments
from gateway.simulator.errors import insufficient_balance, not_found
from gateway.simulator.faults import FaultBook
from gateway.simulator.jobs import Api, Job, Outcome
from gateway.simulator.jsonio import dumps


def inputs_digest(inputs: dict[str, Any]) -> str:
    """What ``/_sim/ledger`` shows of a job's inputs: SHA-256 of their sorted-key JSON."""
    return hashlib.sha256(dumps(inputs, sort_keys=True)).hexdigest()


FIRST_QUEUE_POSITION = 3
"""Queue position of a job submitted to an idle simulator; more if others are queued."""


class SimState:
    """Jobs, deployments, balance, call log, faults and the clock, all resettable."""

    def __init__(self, config: SimulatorConfig, catalog: Catalog) -> None:
        self.initial_config = config
        self.catalog = catalog
        self.clock = SimClock()
        self.calls = CallLog()
        self.faults = FaultBook()
        self.jobs: dict[str, Job] = {}
        self.deployments: dict[str, Deployment] = {}
        self.next_outcomes: deque[Outcome] = deque()
        self._unsettled: list[Job] = []
        self.reset(config)

    def reset(self, config: SimulatorConfig | None = None) -> None:
        """Back to a fresh simulator: no jobs, calls or faults, seeded deployments."""
        self.config = config or self.initial_config
        self.rng = random.Random(self.config.seed)
        self.balance_micro = round(self.config.balance_usd * MICRO)
        self.clock.reset()
        self.calls.clear()
        self.faults.clear()
        self.jobs.clear()
        self.next_outcomes.clear()
        self._unsettled.clear()
        self.deployments = {d.id: d for d in seed_deployments()}

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply a validated ``POST /_sim/config`` body."""
        self.settle()  # jobs that finished before a new balance are paid from the old one
        if "balance_usd" in changes:
            self.balance_micro = round(float(changes["balance_usd"]) * MICRO)
        if "next_outcomes" in changes:
            self.next_outcomes = deque(changes["next_outcomes"])
        self.config = replace(
            self.config,
            queue_seconds=float(changes.get("queue_seconds", self.config.queue_seconds)),
            run_seconds=float(changes.get("run_seconds", self.config.run_seconds)),
            balance_usd=float(changes.get("balance_usd", self.config.balance_usd)),
        )

    def now(self) -> float:
        """Simulated time (see :class:`SimClock`)."""
        return self.clock.now()

    def timestamp(self) -> str:
        """Simulated time in RunComfy's layout."""
        return iso_timestamp(self.now())

    # -- money -----------------------------------------------------------------------------

    def settle(self) -> None:
        """Take the cost of every job that finished since the last look off the balance."""
        now = self.now()
        still_open = []
        for job in self._unsettled:
            if job.finished_at(now) is None:
                still_open.append(job)
                continue
            self.balance_micro -= job.billed_micro(now)
        self._unsettled = still_open

    @property
    def balance_usd(self) -> float:
        """The balance after settling finished jobs."""
        self.settle()
        return self.balance_micro / MICRO

    def ledger(self) -> dict[str, Any]:
        """What every job has been charged so far (``GET /_sim/ledger``), to audit the gateway."""
        now = self.now()
        jobs = [
            {
                "request_id": job.id,
                "api": job.api,
                "target": job.target,
                "state": job.phase(now),
                "billed_micro": job.billed_micro(now),
                "inputs_sha256": job.inputs_sha256,
            }
            for job in self.jobs.values()
        ]
        return {"charged_micro": sum(j["billed_micro"] for j in jobs), "jobs": jobs}

    def require_balance(self) -> None:
        """402 400002 when the account cannot pay for another job."""
        if self.balance_usd <= 0:
            raise insufficient_balance(self.balance_usd)

    # -- jobs ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        """A UUID4 string; reproducible when the config has a seed."""
        if self.config.seed is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _take_outcome(self) -> Outcome:
        """The next scripted outcome, else success."""
        return self.next_outcomes.popleft() if self.next_outcomes else "succeeded"

    def _add_job(
        self,
        api: Api,
        target: str,
        cost_micro: int,
        queue_seconds: float,
        run_seconds: float,
        make_output: Callable[[str], dict[str, Any]],
        inputs: dict[str, Any],
    ) -> Job:
        """Create, queue behind the jobs already waiting for the same target, and remember."""
        now = self.now()
        request_id = self._new_id()
        ahead = sum(
            1 for j in self.jobs.values() if j.target == target and j.phase(now) == "in_queue"
        )
        job = Job(
            id=request_id,
            api=api,
            target=target,
            created_at=now,
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            outcome=self._take_outcome(),
            first_queue_position=FIRST_QUEUE_POSITION + ahead,
            cost_micro=cost_micro,
            output=make_output(request_id),
            inputs_sha256=inputs_digest(inputs),
        )
        self.jobs[job.id] = job
        self._unsettled.append(job)
        return job

    def submit_model_job(self, model: CatalogModel, inputs: dict[str, Any]) -> Job:
        """Start a Model API job; its cost and output are fixed now, from the inputs."""
        asset_base_url = self.config.asset_base_url
        return self._add_job(
            "model",
            model.model_id,
            model.cost_micro(inputs),
            self.config.queue_seconds if model.queue_seconds is None else model.queue_seconds,
            self.config.run_seconds if model.run_seconds is None else model.run_seconds,
            lambda request_id: model.outputs(inputs, request_id, asset_base_url),
            inputs,
        )

    def submit_serverless_job(
        self, deployment: Deployment, inputs: dict[str, Any] | None = None
    ) -> Job:
        """Start a serverless job, billed per GPU-second of its run."""
        run_seconds = self.config.run_seconds
        cost = round(deployment.usd_per_second * run_seconds * MICRO)
        asset_base_url = self.config.serverless_asset_base_url
        return self._add_job(
            "serverless",
            deployment.id,
            cost,
            self.config.queue_seconds,
            run_seconds,
            lambda request_id: deployment.outputs(request_id, asset_base_url),
            inputs or {},
        )

    def model_job(self, request_id: str) -> Job:
        """A Model API job, or 404 404001."""
        job = self.jobs.get(request_id)
        if job is None or job.api != "model":
            raise not_found(f"Request not found: {request_id}", {"request_id": request_id})
        return job

    def serverless_job(self, deployment_id: str, request_id: str) -> Job:
        """A serverless job of that deployment, or 404 404001 (also under the wrong one)."""
        self.deployment(deployment_id)
        job = self.jobs.get(request_id)
        if job is None or job.api != "serverless" or job.target != deployment_id:
            raise not_found(f"Request not found: {request_id}", {"request_id": request_id})
        return job

    def deployment(self, deployment_id: str) -> Deployment:
        """A deployment, or 404 404001."""
        try:
            return self.deployments[deployment_id]
        except KeyError:
            detail = {"deployment_id": deployment_id}
            raise not_found(f"Deployment not found: {deployment_id}", detail) from None

    def new_deployment_id(self) -> str:
        """An id for ``POST /prod/v2/deployments``."""
        return self._new_id()

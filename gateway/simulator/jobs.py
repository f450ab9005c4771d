"""A simulated job, whose state is computed from timestamps whenever someone looks.

No background task moves jobs along: a job created at ``t`` is queued until
``t + queue_seconds``, runs until ``t + queue_seconds + run_seconds`` and then has its outcome.
Cancelling records when it happened. So polling and time travel need no bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["model", "serverless"]
Outcome = Literal["succeeded", "failed"]
Phase = Literal["in_queue", "in_progress", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[Phase] = frozenset({"succeeded", "failed", "cancelled"})


def status_word(phase: Phase) -> str:
    """The ``/status`` vocabulary of both APIs: success and failure both read ``completed``."""
    return "completed" if phase in ("succeeded", "failed") else phase


@dataclass(slots=True)
class Job:
    """One request on either API; ``target`` is the model id or the deployment id."""

    id: str
    api: Api
    target: str
    created_at: float
    queue_seconds: float
    run_seconds: float
    outcome: Outcome
    first_queue_position: int
    cost_micro: int
    """What finishing costs; a failed Model API job is free, a failed serverless one is not."""
    output: dict[str, Any] = field(default_factory=dict)
    """What a success delivers, fixed at submit (so the job need not keep large inputs)."""
    inputs_sha256: str = ""
    """SHA-256 of the submitted body (sorted-key JSON), so tests can tell which request started
    which job."""
    cancelled_at: float | None = None

    @property
    def started_at(self) -> float:
        """When the job leaves the queue."""
        return self.created_at + self.queue_seconds

    @property
    def done_at(self) -> float:
        """When the job reaches its outcome, unless cancelled first."""
        return self.started_at + self.run_seconds

    def phase(self, now: float) -> Phase:
        """Where the job is at ``now``."""
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.started_at:
            return "in_queue"
        if now < self.done_at:
            return "in_progress"
        return self.outcome

    def finished_at(self, now: float) -> float | None:
        """When the job became terminal, or None while it is not."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        return self.done_at if now >= self.done_at else None

    def queue_position(self, now: float) -> int:
        """Counts down from ``first_queue_position`` to 1 while queued."""
        if self.queue_seconds <= 0:
            return 1
        remaining = min(1.0, max(0.0, self.started_at - now) / self.queue_seconds)
        first = self.first_queue_position
        return min(first, 1 + math.floor(first * remaining))

    def cancel(self, now: float) -> bool:
        """Cancel if still queued (RunComfy cannot stop a running job); True if it worked."""
        if self.phase(now) != "in_queue":
            return False
        self.cancelled_at = now
        return True

    def billed_micro(self, now: float) -> int:
        """What this job has cost by ``now``: nothing until it finishes, nothing if cancelled."""
        phase = self.phase(now)
        if phase == "succeeded" or (phase == "failed" and self.api == "serverless"):
            return self.cost_micro
        return 0

"""Taking back admissions whose answer was lost with the connection to Redis.

A submit answered 503 sent nothing, but its admission script may have run with only its answer
lost. Each such job nobody will send is taken back, so it neither holds a reservation and a
concurrency slot nor makes identical submits follow a phantom. The queue is this process's own
(the request ids are known only here); its worker runs for the application's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import structlog

from gateway.common.background import sleep_unless
from gateway.common.errors import StoreUnavailable
from gateway.common.records import record
from gateway.jobs.capacity import Vacancies
from gateway.jobs.job import JobChange, JobState
from gateway.jobs.records import RequestRecords

log = structlog.get_logger(__name__)

WITHDRAW_WITHIN = 60.0  # seconds an interrupted admission is looked for, to take it back
WITHDRAW_PAUSE = 0.1  # seconds between two withdrawals (more while Redis keeps failing)


@record
class Interrupted:
    """An admission that may have run: its shard, job and request ids, and until when to try."""

    shard: str
    job_id: str
    request_id: str
    deadline: float


class Withdrawals:
    """This process's queue of interrupted admissions, and the worker that takes them back."""

    def __init__(self, records: RequestRecords, vacancies: Vacancies) -> None:
        self._records = records
        self._vacancies = vacancies
        self._queue: asyncio.Queue[Interrupted] = asyncio.Queue()

    def later(self, shard: str, jid: str, rid: str) -> None:
        """Take back job ``jid`` of request ``rid`` if its admission ran."""
        deadline = time.monotonic() + WITHDRAW_WITHIN
        self._queue.put_nowait(Interrupted(shard, jid, rid, deadline))

    async def run(self, stopping: asyncio.Event) -> None:
        """Withdraw one at a time, after a pause, backing off while Redis fails: admissions fail
        when Redis is overloaded or away, and a burst of retries would only make that worse."""
        pause = WITHDRAW_PAUSE
        while not stopping.is_set():
            item = await self._next(stopping)
            if item is not None:
                pause = await self._withdraw(item, pause, stopping)

    async def _next(self, stopping: asyncio.Event) -> Interrupted | None:
        """The next interrupted admission, or None once ``stopping`` is set."""
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        return None

    async def _withdraw(self, item: Interrupted, pause: float, stopping: asyncio.Event) -> float:
        """Try until done or past the deadline; returns the pause before the next one."""
        while not await sleep_unless(stopping, pause):
            if time.monotonic() > item.deadline:
                log.error(
                    "admission_not_withdrawn", job=item.job_id, gateway_request_id=item.request_id
                )
                return pause
            try:
                await self._take_back(item.shard, item.job_id, item.request_id)
                return WITHDRAW_PAUSE
            except StoreUnavailable:
                pause = min(2.0, pause * 2)
            except Exception as exc:  # a bug must not stop the withdrawals that follow
                log.error("withdrawal_failed", job=item.job_id, error_type=type(exc).__name__)
                return pause
        return pause

    async def _take_back(self, shard: str, jid: str, rid: str) -> None:
        job = await self._records.job(shard, jid)
        if job is None or job.owner != rid:
            return  # the admission never ran (or made a hit or a follower: nothing to undo)
        attached: int | None = None
        if job.state is JobState.QUEUED:
            # Identical submits that followed it were answered `in_queue`: keep it for them.
            expect, attached = JobState.QUEUED, 1
        elif job.state is JobState.SUBMITTING and not job.queued:
            # A miss only this process would have sent. Its followers are still waiting for the
            # owner's outcome, and get this one: 503, resend.
            expect = JobState.SUBMITTING
        else:
            return  # dispatched from the queue meanwhile, or ended: its sender records it
        error = StoreUnavailable()
        previous = await self._records.update_job(
            job,
            JobState.REJECTED,
            settle_micro=0,
            expect=expect,
            expect_attached=attached,
            change=JobChange(
                error_status=error.status,
                error_body=orjson.dumps(error.body()).decode(),
                reason="admission interrupted",
            ),
        )
        if previous == expect:
            log.warning("admission_withdrawn", job=jid, gateway_request_id=rid)
            self._vacancies.freed(shard)
        elif previous == "followed":  # the lost request stops counting as one that waits
            owner = await self._records.request(shard, rid)
            if owner is not None:
                await self._records.detach(owner, shard)

"""Log events never carry a key or a token, wherever in the event they hide, nor the ids of
another job or another request."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs
from structlog.typing import EventDict

from gateway.common.background import background, own_log_context
from gateway.jobs.job import Job
from gateway.observability.logs import (
    REDACTED,
    RecordBudget,
    SecretScrubber,
    configure_logging,
    stdlib_handler,
)
from gateway.web.appkeys import RECORDS, TEAMS
from tests.conftest import NANO, Gateway, Simulator
from tests.job_services import job_services, until

KEY = "rcg_abcdefgh12345678_" + "Z" * 40


def test_keys_tokens_and_configured_secrets_are_scrubbed_at_any_depth() -> None:
    scrub = SecretScrubber(["upstream-secret-token"])
    event = scrub(
        None,
        "info",
        {
            "event": f"failed with {KEY}",
            "authorization": "Bearer anything",
            "detail": {"nested": [f"x {KEY} y", "Bearer abc.def"], "count": 3},
            "error": "upstream said upstream-secret-token is bad",
            "latency_ms": 1.5,
        },
    )
    text = str(event)
    assert KEY not in text and "upstream-secret-token" not in text and "abc.def" not in text
    assert event["authorization"] == REDACTED
    assert event["detail"]["count"] == 3 and event["latency_ms"] == 1.5
    assert event["detail"]["nested"][0] == f"x {REDACTED} y"


def test_admin_tokens_are_scrubbed_like_keys() -> None:
    token = "rca_abcdefgh1234_" + "Q" * 40
    event = SecretScrubber()(None, "info", {"event": f"got {token}", "detail": [token]})
    assert token not in str(event) and event["detail"] == [REDACTED]


def test_a_standard_library_record_is_one_json_line_with_its_traceback_as_data() -> None:
    """aiohttp logs a malformed request with the start of the offending header line."""
    stream = io.StringIO()
    scrubber = SecretScrubber(["upstream-secret-token"])
    handler = stdlib_handler(stream, structlog.processors.JSONRenderer(), scrubber)
    try:
        raise ValueError(f"Got more than 8190 bytes when reading: b'Authorization: Bearer {KEY}'")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request %s",
            ("upstream-secret-token",), sys.exc_info(),
        )  # fmt: skip
    handler.handle(record)
    text = stream.getvalue()
    assert text.count("\n") == 1  # one line, not a multi-line traceback
    event = json.loads(text)
    assert event["event"].startswith("Error handling request")
    assert (event["level"], event["logger"]) == ("error", "aiohttp.server")
    assert event["exception"][0]["exc_type"] == "ValueError"  # the traceback, as data
    assert KEY not in text and "upstream-secret-token" not in text


def test_a_flood_of_standard_library_records_is_cut_to_the_budget_and_counted() -> None:
    budget = RecordBudget(rate=0.001, burst=5)
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "bad", (), None)
    written = [budget.filter(record) for _ in range(50)]
    assert written == [True] * 5 + [False] * 45
    assert budget.dropped == 45


class _Where(enum.StrEnum):
    LEAKED = f"key {KEY}"


def test_secrets_in_every_kind_of_field_are_scrubbed_however_the_line_is_written() -> None:
    """The scrubber looks once for anything that could be a secret before rewriting a value:
    that shortcut must miss nothing, at the top of the event or deep in it."""
    scrub = SecretScrubber(["upstream-secret-token", "abc"])  # too short to be a secret
    event = scrub(
        None,
        "info",
        {
            "event": "request",
            "Api_Key": 12345,  # a sensitive name, in any case, whatever its value
            "where": _Where.LEAKED,  # a str subclass
            "said": "the token upstream-secret-token was refused",
            "pair": ("ok", f"Bearer {KEY}"),
            "ids": {7: KEY},
            "route": "/v1/requests/{request_id}/{leaf}",
            "abc": "abc stays",
            "huge": 2**70,
        },
    )
    text = str(event)
    assert KEY not in text and "upstream-secret-token" not in text
    assert event["Api_Key"] == REDACTED and event["ids"] == {"7": REDACTED}
    assert event["route"] == "/v1/requests/{request_id}/{leaf}" and event["abc"] == "abc stays"
    assert event["huge"] == 2**70


def test_a_line_with_an_integer_past_64_bits_is_written_whole(capsys: Any) -> None:
    configure_logging("info", "json", ["upstream-secret-token"])
    try:
        structlog.get_logger("test").info("big", count=2**70, note="upstream-secret-token")
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().out)
    assert line["count"] == 2**70 and line["note"] == REDACTED and line["event"] == "big"


@contextlib.contextmanager
def captured_with_context() -> Iterator[list[EventDict]]:
    """Log events as the gateway writes them: with the context bound where each was logged
    (``capture_logs`` alone leaves it out)."""
    with capture_logs() as events:
        structlog.get_config()["processors"].insert(0, structlog.contextvars.merge_contextvars)
        yield events


async def test_each_jobs_lines_carry_its_own_upstream_id_and_no_requests_correlation_id(
    gateway: Gateway, simulator: Simulator
) -> None:
    """Jobs submitted by requests of their own (one waits in its team's queue and is sent by
    the dispatcher), each followed by status calls: the poller's ``job_finished`` names its
    job's upstream id and no request's correlation id; any other line naming a job carries
    only that job's ids."""
    await simulator.configure(queue_seconds=0.0, run_seconds=0.5)  # the second of team one waits
    one = await gateway.new_team("one", max_concurrent=1)
    many = await gateway.new_team("many")
    submits = {"first": one, "second": one, "a": many, "b": many, "c": many}
    with captured_with_context() as events:
        answers = await asyncio.gather(*(submit(gateway, key, p) for p, key in submits.items()))
        assert [cache for _, cache in answers].count("queued") == 1
        rids = {prompt: rid for prompt, (rid, _) in zip(submits, answers, strict=True)}
        own: dict[str, tuple[str | None, str]] = {}  # job id: its upstream id, its prompt
        for prompt, rid in rids.items():
            await completed(gateway, submits[prompt], rid, prompt)
            job = await job_of(gateway, rid)
            own[job.job_id] = (job.upstream_id, prompt)
        await until_logged(events, "job_finished", len(own))
    about_jobs = [e for e in events if e.get("job") in own]
    finished = [e for e in about_jobs if e["event"] == "job_finished"]
    assert sorted(e["job"] for e in finished) == sorted(own)
    for event in finished:
        assert event.get("upstream_request_id") == own[event["job"]][0], event
        assert "correlation_id" not in event, event
    for event in about_jobs:
        upstream_id, prompt = own[event["job"]]
        assert event.get("upstream_request_id") in (None, upstream_id), event
        assert event.get("correlation_id") in (None, f"submit-{prompt}", f"status-{prompt}")


async def submit(gateway: Gateway, key: str, prompt: str) -> tuple[str, str]:
    """A submit with a correlation id naming its prompt: the gateway's id and cache outcome."""
    status, body, headers = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": prompt},
        headers={"X-Request-Id": f"submit-{prompt}"},
    )  # fmt: skip
    assert status == 200, body
    return body["request_id"], headers["X-Gateway-Cache"]


async def completed(gateway: Gateway, key: str, rid: str, prompt: str) -> None:
    """Poll the job's status as a client does, each call a request of its own."""
    for _ in range(300):
        status, body, _ = await gateway.request(
            "GET", f"/v1/requests/{rid}/status", key=key,
            headers={"X-Request-Id": f"status-{prompt}"},
        )  # fmt: skip
        assert status == 200, body
        if body["status"] == "completed":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{rid} never completed")


async def job_of(gateway: Gateway, rid: str) -> Job:
    """The job behind the gateway's request ``rid``, as recorded."""
    records = gateway.app[RECORDS]
    for shard in set((await gateway.app[TEAMS].slots()).values()):
        record = await records.request(shard, rid)
        if record is not None:
            job = await records.job(shard, record.job_id)
            assert job is not None and job.upstream_id
            return job
    raise AssertionError(f"no record of {rid}")


async def until_logged(events: list[EventDict], name: str, count: int) -> None:
    """A job's end is logged after its status reads completed: wait for the lines."""
    for _ in range(200):
        if sum(e["event"] == name for e in events) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} {name} lines")


async def test_polls_and_queued_sends_log_their_own_jobs_ids_whoever_drives_them(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    """The poller and the dispatcher driven from one task that sent jobs itself and carries a
    request's correlation id: each ``job_finished`` names its own job's upstream id, not the
    one that task bound last, and not the request."""
    async with job_services(redis_url, namespace, simulator.url, tmp_path) as world:
        cred = await world.team("design", max_concurrent=1)
        other = await world.team("other")
        with (
            structlog.contextvars.bound_contextvars(correlation_id="a-request"),
            captured_with_context() as events,
        ):
            first, queued = await world.submit(cred, "first"), await world.submit(cred, "queued")
            answers = [first, queued] + [await world.submit(other, p) for p in "abc"]
            for answer in answers:
                if answer is queued:
                    assert await world.services.dispatcher.pass_once() == 1
                    await until(lambda: world.job(queued), lambda j: j.upstream_id is not None)
                await world.poll_until(answer, lambda j: j.terminal)
        own = {job.job_id: job.upstream_id for job in [await world.job(a) for a in answers]}
    finished = [e for e in events if e["event"] == "job_finished"]
    assert sorted(e["job"] for e in finished) == sorted(own)
    for event in finished:
        assert event.get("upstream_request_id") == own[event["job"]], event
        assert "correlation_id" not in event, event


async def test_a_loop_started_from_a_request_logs_none_of_its_fields() -> None:
    """asyncio copies a task's context into the tasks it starts: a loop started from a request
    would log that request's ids all its life. It does not; the request keeps them."""
    ticked = asyncio.Event()

    async def loop(stopping: asyncio.Event) -> None:
        structlog.get_logger().info("tick")
        ticked.set()
        await stopping.wait()

    with (
        captured_with_context() as events,
        structlog.contextvars.bound_contextvars(correlation_id="req", upstream_request_id="u"),
    ):
        async with background(loop, "test-loop"):
            await ticked.wait()
            structlog.get_logger().info("in_request")
    tick, in_request = events
    assert (tick["event"], in_request["event"]) == ("tick", "in_request")
    assert "correlation_id" not in tick and "upstream_request_id" not in tick
    assert (in_request["correlation_id"], in_request["upstream_request_id"]) == ("req", "u")


def test_a_unit_of_work_logs_its_own_fields_and_gives_the_callers_back_after() -> None:
    with (
        captured_with_context() as events,
        structlog.contextvars.bound_contextvars(correlation_id="req", job="other"),
    ):
        with own_log_context(job="mine"):
            structlog.contextvars.bind_contextvars(upstream_request_id="u-mine")
            structlog.get_logger().info("inside")
        structlog.get_logger().info("after")
    inside, after = events
    assert (inside["job"], inside["upstream_request_id"]) == ("mine", "u-mine")
    assert "correlation_id" not in inside
    assert (after["job"], after["correlation_id"]) == ("other", "req")
    assert "upstream_request_id" not in after

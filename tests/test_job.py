"""The job record: read from its Redis hash in one place, written in the scripts' formats."""

from __future__ import annotations

import uuid

from gateway.jobs.job import Job, JobChange, JobField, JobState
from gateway.jobs.records import new_id
from gateway.upstream.apis import Api


def test_a_job_written_by_an_older_version_still_loads_with_defaults() -> None:
    job = Job.from_fields("j1", "abcdefgh", {"state": "active", "api": "model", "target": "m"})
    assert (job.state, job.api, job.target) == (JobState.ACTIVE, Api.MODEL, "m")
    assert job.upstream_id is None and job.started_ts is None and job.error_status is None
    assert (job.estimate_micro, job.poll_errors, job.queue_position) == (0, 0, 0)
    assert not (job.queued or job.store or job.effects_pending or job.terminal)


def test_a_job_reads_every_field_in_the_format_the_scripts_wrote_it() -> None:
    raw = {
        "state": "rejected",
        "api": "serverless",
        "hash": "id1",
        "owner": "r1",
        "queued": "1",
        "body": '{"prompt": "x"}',
        "estimate": "150000",
        "settled": "1.5e+14",  # a Lua number past 14 digits
        "created_ts": "1712345678.1235",
        "error_status": "422",
        "started_ts": "",  # written empty by earlier versions: not started
        "effects_pending": "1",
    }
    job = Job.from_fields("j1", "abcdefgh", raw)
    assert job.state is JobState.REJECTED and job.terminal and job.api is Api.SERVERLESS
    assert (job.identity, job.owner, job.queued) == ("id1", "r1", True)
    assert job.body == b'{"prompt": "x"}'
    assert (job.estimate_micro, job.settled_micro) == (150_000, 150_000_000_000_000)
    assert job.created_ts == 1712345678.1235
    assert job.error_status == 422 and job.started_ts is None and job.effects_pending


def test_a_change_writes_only_what_it_sets_under_the_hash_field_names() -> None:
    change = JobChange(upstream_status="", last_poll_ts=1.5, poll_errors=0, effects_pending=True)
    assert change.to_fields() == {
        "upstream_status": "",
        "last_poll_ts": 1.5,
        "poll_errors": 0,
        "effects_pending": 1,
    }
    assert JobChange().to_fields() == {}
    names = {value for name, value in vars(JobField).items() if name.isupper()}
    assert set(JobChange.__dataclass_fields__) <= names


def test_request_and_job_ids_are_random_uuids_as_runcomfy_writes_them() -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, dashed, 36 characters
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    bits = [int(uuid.UUID(t)) for t in ids]  # all 122 random bits vary
    fixed = 0xF000 << 64 | 0xC000 << 48
    assert all(any(b >> i & 1 for b in bits) for i in range(128) if not fixed >> i & 1)

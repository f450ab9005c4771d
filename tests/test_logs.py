"""Log events never carry a key or a token, wherever in the event they hide."""

from __future__ import annotations

import io
import json
import logging
import sys

import structlog

from gateway.observability.logs import REDACTED, RecordBudget, SecretScrubber, stdlib_handler

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

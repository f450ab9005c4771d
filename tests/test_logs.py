"""Log events never carry a key or a token, wherever in the event they hide."""

from __future__ import annotations

import enum
import io
import json
import logging
import sys
from typing import Any

import structlog

from gateway.observability.logs import (
    REDACTED,
    RecordBudget,
    SecretScrubber,
    configure_logging,
    stdlib_handler,
)

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

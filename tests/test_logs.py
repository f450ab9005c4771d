"""Log events never carry a key or a token, wherever in the event they hide."""

from __future__ import annotations

import logging
import sys

from gateway.logs import REDACTED, ScrubbingFormatter, SecretScrubber

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


def test_standard_library_records_and_their_tracebacks_are_scrubbed() -> None:
    """aiohttp logs a malformed request with the start of the offending header line."""
    formatter = ScrubbingFormatter(SecretScrubber(["upstream-secret-token"]))
    try:
        raise ValueError(f"Got more than 8190 bytes when reading: b'Authorization: Bearer {KEY}'")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request %s",
            ("upstream-secret-token",), sys.exc_info(),
        )  # fmt: skip
    text = formatter.format(record)
    assert "Traceback" in text and "Error handling request" in text
    assert KEY not in text and "upstream-secret-token" not in text

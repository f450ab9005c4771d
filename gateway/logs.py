"""structlog JSON logging with secrets scrubbed from every event.

Redaction happens in the processor chain, not at call sites, so a secret that slips into an
exception message or a field is still never written. Standard-library log records (aiohttp's,
redis-py's) go through the same scrubber in their formatter.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_KEY_PATTERN = re.compile(r"rcg_[a-z0-9]{16}_[A-Za-z0-9]{40}|rca_[a-z0-9]{12}_[A-Za-z0-9]{40}")
_BEARER_PATTERN = re.compile(r"(?i)bearer\s+\S+")
_SENSITIVE_FIELDS = frozenset({"authorization", "token", "api_key", "key", "secret", "password"})
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter configured "secrets" would redact ordinary text


class SecretScrubber:
    """Removes API keys, admin tokens, bearer tokens and the configured secrets from log events."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def scrub(self, value: str) -> str:
        value = _KEY_PATTERN.sub(REDACTED, value)
        value = _BEARER_PATTERN.sub("Bearer " + REDACTED, value)
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def clean(self, name: str, value: Any) -> Any:
        """``value`` with secrets removed, keeping JSON structure where there is one."""
        if name.lower() in _SENSITIVE_FIELDS:
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, int | float | bool | type(None)):
            return value
        if isinstance(value, dict):
            return {str(k): self.clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean("", v) for v in value]
        return self.scrub(str(value))

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name, value in list(event.items()):
            event[name] = self.clean(name, value)
        return event


_info_enabled = True


def info_enabled() -> bool:
    """Whether info events are written: the access log skips building its event otherwise."""
    return _info_enabled


class ScrubbingFormatter(logging.Formatter):
    """Standard-library records scrubbed like structlog events, tracebacks included: aiohttp's
    own error lines (e.g. for an oversized header) quote what the client sent."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__("%(message)s")
        self._scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self._scrubber.scrub(super().format(record))


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Route structlog (and stdlib logging) to stdout as one JSON object per line."""
    global _info_enabled
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    _info_enabled = numeric <= logging.INFO
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            SecretScrubber(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(ScrubbingFormatter(SecretScrubber(secrets)))
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[stderr])

"""structlog JSON logging with secrets scrubbed from every event.

Redaction happens in the processor chain, not at call sites, so a secret that slips into an
exception message or a field is still never written. Standard-library log records (aiohttp's,
redis-py's) are rendered by the same chain (structlog's ``ProcessorFormatter``): one JSON line
each, the traceback as data, scrubbed alike. A client can make aiohttp log one for every
malformed request it sends, so they are budgeted (:class:`RecordBudget`): past the budget they
are counted (``gateway_log_records_dropped_total``), not written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from typing import IO, Any

import orjson
import structlog

_KEY_PATTERN = re.compile(r"rcg_[a-z0-9]{16}_[A-Za-z0-9]{40}|rca_[a-z0-9]{12}_[A-Za-z0-9]{40}")
_BEARER_PATTERN = re.compile(r"(?i)bearer\s+\S+")
_SENSITIVE_FIELDS = frozenset({"authorization", "token", "api_key", "key", "secret", "password"})
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter configured "secrets" would redact ordinary text


class SecretScrubber:
    """Removes API keys, admin tokens, bearer tokens and the configured secrets from log events.

    It runs on every field of every line (the access log writes one per request), so a string
    is first searched once for anything that could be a secret, and rewritten only on a find:
    most values are route templates, ids and numbers."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
        alternatives = [_KEY_PATTERN.pattern, r"(?i:bearer)\s"]
        alternatives += [re.escape(secret) for secret in self._secrets]
        self._suspect = re.compile("|".join(alternatives))
        self._sensitive: dict[str, bool] = {}

    def scrub(self, value: str) -> str:
        return value if self._suspect.search(value) is None else self._rewrite(value)

    def _rewrite(self, value: str) -> str:
        """``value`` with every secret in it replaced (it may hold one: the search found it)."""
        value = _KEY_PATTERN.sub(REDACTED, value)
        value = _BEARER_PATTERN.sub("Bearer " + REDACTED, value)
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def _is_sensitive(self, name: str) -> bool:
        known = self._sensitive.get(name)
        if known is None:
            known = name.lower() in _SENSITIVE_FIELDS
            if len(self._sensitive) < _NAMES_REMEMBERED:  # names inside logged data are open
                self._sensitive[name] = known
        return known

    def clean(self, name: str, value: Any) -> Any:
        """``value`` with secrets removed, keeping JSON structure where there is one."""
        if self._is_sensitive(name):
            return REDACTED
        kind = type(value)
        if kind is str:
            return self.scrub(value)
        if kind in _PLAIN:
            return value
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
        suspect = self._suspect.search
        for name, value in event.items():  # values replaced in place: the keys stay
            kind = type(value)
            if self._is_sensitive(name):
                event[name] = REDACTED
            elif kind is str:
                if suspect(value) is not None:
                    event[name] = self._rewrite(value)
            elif kind not in _PLAIN:
                event[name] = self.clean(name, value)
        return event


_PLAIN = frozenset({int, float, bool, type(None)})
_NAMES_REMEMBERED = 1024


def _dumps(event: Any, **_: Any) -> str:
    """One event as JSON, by orjson (the stdlib encoder was a fifth of an access line's cost);
    what orjson refuses (an integer past 64 bits) falls back to the stdlib encoder."""
    try:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event, default=str)


_info_enabled = True


def info_enabled() -> bool:
    """Whether info events are written: the access log skips building its event otherwise."""
    return _info_enabled


class RecordBudget(logging.Filter):
    """At most ``rate`` standard-library records a second, in bursts of ``burst``: a flood of
    malformed requests cannot turn the log into a disk problem. The rest are counted."""

    def __init__(self, rate: float = 20.0, burst: int = 100) -> None:
        super().__init__()
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._last = float(burst), time.monotonic()
        self._lock = threading.Lock()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.dropped += 1
            return False


RECORD_BUDGET = RecordBudget()
"""The process's budget of standard-library records (its drops are a metric of every app)."""


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
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    scrubber = SecretScrubber(secrets)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (print() makes two under PYTHONUNBUFFERED, as in the image):
        # the workers of `serve --workers N` share stdout, and their lines must not interleave.
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING),
        handlers=[stdlib_handler(sys.stdout, renderer, scrubber, dict_tracebacks=fmt == "json")],
        force=True,
    )


def stdlib_handler(
    stream: IO[str], renderer: Any, scrubber: SecretScrubber, *, dict_tracebacks: bool = True
) -> logging.Handler:
    """Standard-library records (aiohttp's, redis-py's) as events of the same log: one line
    each, a traceback as data (no locals: they may hold what a client sent), scrubbed, within
    :data:`RECORD_BUDGET`."""
    tracebacks: Any = (
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        if dict_tracebacks
        else structlog.processors.format_exc_info
    )
    handler = logging.StreamHandler(stream)
    handler.addFilter(RECORD_BUDGET)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                tracebacks,
                scrubber,
                renderer,
            ],
        )
    )
    return handler

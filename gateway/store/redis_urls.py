"""Connection options of a ``redis://``, ``rediss://`` or ``unix://`` URL.

redis-py parses URLs only inside ``from_url`` (its ``parse_url`` is private), and the gateway
needs the options themselves: for every seed of a cluster, every Sentinel, and the pipelined
connection. Query options become keyword arguments of redis-py's connections; the numeric and
boolean ones the gateway documents are converted, others stay text (``ssl_cert_reqs=none``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


def _flag(value: str) -> bool:
    return value.lower() not in ("", "0", "false", "f", "n", "no")


QUERY_TYPES: dict[str, Callable[[str], Any]] = {
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "socket_keepalive": _flag,
    "health_check_interval": int,
    "max_connections": int,
    "ssl_check_hostname": _flag,
    "protocol": int,
}


def url_options(url: str) -> dict[str, Any]:
    """``host``/``port`` or ``path``, ``username``, ``password``, ``db``, ``ssl`` (for
    ``rediss://``) and the query's options of ``url``; ValueError for another scheme or a
    query value of the wrong type."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query):
        convert = QUERY_TYPES.get(name, str)
        try:
            options[name] = convert(value)
        except ValueError:
            raise ValueError(f"invalid value for {name!r} in the Redis URL: {value!r}") from None
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.scheme == "unix":
        if parts.path:
            options["path"] = unquote(parts.path)
        return options
    if parts.hostname:
        options["host"] = unquote(parts.hostname)
    if parts.port:
        options["port"] = parts.port
    database = unquote(parts.path).strip("/")
    if database.isdigit() and "db" not in options:  # like redis-py, a path of text is ignored
        options["db"] = int(database)
    if parts.scheme == "rediss":
        options["ssl"] = True
    return options

"""Redis URL options: the gateway's parse agrees with what redis-py's own ``from_url`` connects
with, for every form of URL the gateway documents."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.store.redis_urls import url_options

URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://:p%40ss@cache.example:6380/3",
    "redis://user:secret@cache.example?db=5&socket_timeout=2.5&health_check_interval=7",
    "rediss://default:pw@clustercfg.example:6379?ssl_cert_reqs=none&ssl_check_hostname=false",
    "unix:///run/redis/redis.sock?db=2",
    "redis://localhost",
]


@pytest.mark.parametrize("url", URLS)
def test_options_are_what_redis_py_connects_with(url: str) -> None:
    ours = url_options(url)
    pool = aioredis.ConnectionPool.from_url(url)
    theirs: dict[str, Any] = dict(pool.connection_kwargs)
    assert ours.pop("ssl", False) == (pool.connection_class.__name__ == "SSLConnection")
    assert ours == {name: theirs[name] for name in ours}, theirs
    # and nothing redis-py read from the URL is lost
    for name in ("host", "port", "path", "username", "password", "db", "ssl_cert_reqs"):
        if name in theirs and not (name in ("host", "port") and url.startswith("unix")):
            expected_default = {"host": "localhost", "port": 6379, "db": 0}.get(name)
            assert name in ours or theirs[name] == expected_default, name


def test_wrong_schemes_and_values_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        url_options("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="socket_timeout"):
        url_options("redis://127.0.0.1?socket_timeout=soon")

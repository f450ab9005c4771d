"""Redis Sentinel: the gateway finds the primary through Sentinel and follows a failover.

A primary, a replica and one Sentinel (quorum 1), all started from the same ``redis-server``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from gateway.settings import Settings
from gateway.store.client import ObservedSentinelRedis, connect
from gateway.store.embedded import EmbeddedRedis, find_redis_server
from tests.conftest import NANO, Gateway, Simulator, assert_error_shape, free_port

SERVICE = "gw"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    client: Any = connect(
        "redis+sentinel://:secret@10.0.0.1,10.0.0.2:5000/gw/2?sentinel_password=s"
    )
    assert isinstance(client, ObservedSentinelRedis)
    pool: Any = client.connection_pool
    assert pool.service_name == "gw"
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("secret", 2)
    assert pool.connection_kwargs["decode_responses"] is True
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"], s.get("password")) for s in sentinels] == [
        ("10.0.0.1", 26379, "s"),
        ("10.0.0.2", 5000, "s"),
    ]
    for bad, reason in (
        ("redis+sentinel://10.0.0.1", "names its service"),
        ("redis+sentinel://10.0.0.1/gw/x", "must be a number"),
    ):
        with pytest.raises(ValidationError, match=reason):
            Settings(redis_url=bad)


@dataclass
class SentinelSetup:
    primary: EmbeddedRedis
    replica: EmbeddedRedis
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def primary_port(self) -> int:
        client = redis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            address: Any = client.sentinel_get_master_addr_by_name(SERVICE)
            return int(address[1])
        finally:
            client.close()

    def replica_ready(self) -> bool:
        client = redis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            replicas: Any = client.sentinel_slaves(SERVICE)
            return any(r.get("is_slave") and not r.get("is_disconnected") for r in replicas)
        except redis.ResponseError:
            return False
        finally:
            client.close()


def _wait(check: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within} s")
        time.sleep(0.1)


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A primary with one replica, watched by one Sentinel that fails over after 1 s down
    (requested before the gateways, so it outlives them)."""
    tmp = tmp_path / "sentinel"
    tmp.mkdir()
    # Redis 7 and Valkey wait 5 s before a diskless full sync, for more replicas to join
    primary = EmbeddedRedis(
        tmp / "primary", port=free_port(), extra_args=["--repl-diskless-sync-delay", "0"]
    ).start()
    replica_port = free_port()
    replica = EmbeddedRedis(
        tmp / "replica",
        port=replica_port,
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    ).start()
    port = free_port()
    conf = tmp / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    sentinel = subprocess.Popen(
        [str(find_redis_server()), str(conf), "--sentinel"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    setup = SentinelSetup(primary, replica, port)
    try:
        _wait(setup.replica_ready, "a replica known to Sentinel")
        yield setup
    finally:
        sentinel.terminate()
        sentinel.wait(10)
        replica.stop()
        primary.stop()


@pytest.mark.slow
async def test_the_gateway_finds_the_primary_through_sentinel_and_follows_a_failover(
    sentinel_setup: SentinelSetup, simulator: Simulator, gateway_factory: Any
) -> None:
    setup = sentinel_setup
    gw: Gateway = await gateway_factory(redis_url=setup.url)
    key = await gw.new_team("design")
    submit = f"/v1/models/{NANO}"
    status, sub, _ = await gw.request("POST", submit, key=key, json={"prompt": "one"})
    assert status == 200, sub
    _, ready, _ = await gw.request("GET", "/readyz")
    assert ready["redis"] == "ok"

    direct = redis.Redis(port=setup.primary.port)
    try:
        assert direct.wait(1, 2000) == 1  # the replica has everything so far
    finally:
        direct.close()
    setup.primary.stop()
    status, body, _ = await gw.request("POST", submit, key=key, json={"prompt": "two"})
    if status != 200:  # before Sentinel promotes the replica: an outage, not an error
        assert status == 503, body
        assert_error_shape(body, 503003)

    deadline = time.monotonic() + 30
    while (await gw.request("POST", submit, key=key, json={"prompt": "three"}))[0] != 200:
        assert time.monotonic() < deadline, "no primary after the failover"
        await asyncio.sleep(0.2)
    assert setup.primary_port() == setup.replica.port
    status, body, _ = await gw.request("GET", f"/v1/requests/{sub['request_id']}/status", key=key)
    assert status == 200, body  # written to the old primary, read from the new one

"""The pipelined script connection: every concurrent caller gets its own answer, and Redis
going away, timing out or forgetting its scripts fails cleanly (``StoreUnavailable``, chained to
the Redis error) and recovers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc

from gateway.common.errors import StoreUnavailable
from gateway.store.embedded import EmbeddedRedis
from gateway.store.pipelined import PipelinedRedis, PipelinedScript

ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}"


async def test_a_thousand_concurrent_calls_each_get_their_own_reply(redis_url: str) -> None:
    client = PipelinedRedis(redis_url)
    echo = PipelinedScript(client, ECHO)
    try:
        replies = await asyncio.gather(
            *(echo(keys=[f"k{i}"], args=[f"v{i}", i]) for i in range(1000))
        )
        assert replies == [[f"k{i}", f"v{i}", 2 * i] for i in range(1000)]
    finally:
        await client.close()


async def test_a_flushed_script_cache_is_reloaded_without_running_twice(redis_url: str) -> None:
    client = PipelinedRedis(redis_url)
    counter = PipelinedScript(client, "return redis.call('INCR', KEYS[1])")
    plain = aioredis.Redis.from_url(redis_url)
    try:
        await plain.delete("pipelined:count")
        assert await counter(keys=["pipelined:count"]) == 1
        await plain.script_flush()
        assert await counter(keys=["pipelined:count"]) == 2  # reloaded, ran once
        await plain.delete("pipelined:count")
    finally:
        await plain.aclose()
        await client.close()


async def test_errors_in_scripts_are_redis_response_errors(redis_url: str) -> None:
    client = PipelinedRedis(redis_url)
    try:
        with pytest.raises(rexc.ResponseError):
            await PipelinedScript(client, "return redis.call('NOPE')")()
        assert await PipelinedScript(client, "return 7")() == 7  # the connection is fine
    finally:
        await client.close()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(
    redis_url: str,
) -> None:
    client = PipelinedRedis(redis_url)
    hello = PipelinedScript(client, "return 'hello'")
    plain = aioredis.Redis.from_url(redis_url)
    try:
        assert await hello() == "hello"
        await plain.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(await hello())
            except StoreUnavailable:
                outcomes.append("lost")
        assert outcomes[-1] == "hello"
    finally:
        await plain.aclose()
        await client.close()


async def test_a_call_that_outlives_its_timeout_fails_and_the_connection_recovers(
    redis_url: str,
) -> None:
    client = PipelinedRedis(redis_url, call_timeout=0.1)
    # busy for a few tenths of a second by counting, not by reading TIME: Valkey's TIME stands
    # still inside a script until the 5 s busy threshold, past which other clients get BUSY
    busy = PipelinedScript(client, "local n = 0 for i = 1, 5e7 do n = n + i end return 1")
    try:
        with pytest.raises(StoreUnavailable) as timed_out:
            await busy()
        assert isinstance(timed_out.value.__cause__, rexc.TimeoutError)
        for _ in range(50):  # Redis is busy until the script ends
            try:
                assert await PipelinedScript(client, "return 2")() == 2
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("never recovered")
    finally:
        await client.close()


async def test_it_authenticates_selects_the_database_and_talks_over_unix_sockets(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "r", persistent=False) as server:
        admin = aioredis.Redis.from_url(server.url)
        await admin.config_set("requirepass", "pw")
        await admin.aclose()
        url = server.url.replace("unix://", "unix://:pw@").replace("db=0", "db=3")
        client = PipelinedRedis(url)
        try:
            script = PipelinedScript(client, "redis.call('SET', KEYS[1], 'x') return 1")
            assert await script(keys=["where"]) == 1
            plain = aioredis.Redis.from_url(url, decode_responses=True)
            assert await plain.get("where") == "x"  # database 3, not 0
            wrong = PipelinedRedis(server.url)  # no password
            try:
                with pytest.raises(rexc.ResponseError):
                    await PipelinedScript(wrong, "return 1")()
            finally:
                await wrong.close()
            await plain.config_set("requirepass", "")  # the fixture stops it with a plain SHUTDOWN
            await plain.aclose()
        finally:
            await client.close()

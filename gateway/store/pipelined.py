"""A pipelined Redis connection for the gateway's Lua scripts, the hot path of every request.

Profiling showed a third of the gateway's CPU in redis-py's layers around one ``EVALSHA`` per
request (pool checkout, retry wrapper, per-read timeout, health checks). Every request of the
gateway is one script call, so this client does only that, the way ioredis' auto-pipelining
does: one connection per process, commands of all concurrent requests written together once per
event-loop tick, replies parsed by hiredis and matched to callers in order (Redis answers a
connection's commands in the order it received them).

Failures are redis-py's exception types inside this module; ``call`` raises an outage as
``StoreUnavailable`` (``failures.py``), as the redis-py client does, and a refused command as
redis-py's ``ResponseError``. A broken or timed-out connection fails every call in flight on
it and is replaced by the next call; nothing is re-sent, because a script that may have run must
not run twice. ``NOSCRIPT`` (the script cache was flushed, or Redis restarted) is safe to retry:
the script did not run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as rexc

from gateway.store.failures import REDIS_FAILURES, unavailable
from gateway.store.redis_urls import url_options

CommandObserver = Callable[[str, float, bool], None]
Arg = str | bytes | int | float


REPLY_ERRORS: dict[str, type[rexc.RedisError]] = {
    "NOSCRIPT": rexc.NoScriptError,
    "LOADING": rexc.BusyLoadingError,  # a restarted Redis reading its AOF: nothing ran
    "READONLY": rexc.ReadOnlyError,
    "MASTERDOWN": rexc.MasterDownError,
    "TRYAGAIN": rexc.TryAgainError,
    "CLUSTERDOWN": rexc.ClusterDownError,
    "OOM": rexc.OutOfMemoryError,
}
"""Error replies that name a state of the server rather than a bad command, as redis-py maps
them, so that the gateway answers them as an unavailable store (503), not as its own bug."""


def reply_error(message: str) -> type[rexc.RedisError]:
    """The redis-py exception class for an error reply."""
    return REPLY_ERRORS.get(message.split(" ", 1)[0], rexc.ResponseError)


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    return repr(arg).encode()


def pack(*args: Arg) -> bytes:
    """One command in RESP: hiredis' encoder (C, 3x faster on an admission's 40 arguments),
    or this module's own for values it does not take (it refuses bools, for one)."""
    try:
        return cast(bytes, hiredis.pack_command(args))  # type: ignore[arg-type]  # stub: 1-tuple
    except TypeError:
        return _pack(args)


def _pack(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    """Writes are buffered and flushed once per loop tick; replies resolve callers in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._buffer: list[bytes] = []
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.last_received = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.last_received = self._loop.time()

    def send(self, data: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.lost is not None or self.transport is None:
            future.set_exception(rexc.ConnectionError("connection to Redis lost"))
            return future
        self._pending.append(future)
        self._buffer.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._buffer and self.transport is not None and self.lost is None:
            self.transport.write(b"".join(self._buffer))
        self._buffer.clear()

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(rexc.ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self._pending:  # pragma: no cover - Redis never answers unasked
                self.abort(rexc.ConnectionError("unexpected reply from Redis"))
                return
            future = self._pending.popleft()
            if future.done():  # its caller timed out; the reply still had to be read
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                future.set_exception(reply_error(message)(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rexc.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def abort(self, error: BaseException) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
        self._buffer.clear()


class PipelinedRedis:
    """Script calls over one pipelined connection (TCP or unix socket, AUTH and SELECT)."""

    def __init__(
        self,
        url: str,
        *,
        call_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        observer: CommandObserver | None = None,
    ) -> None:
        self._options = url_options(url)
        self._call_timeout = call_timeout
        self._connect_timeout = connect_timeout
        self.observer = observer
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @staticmethod
    def supports(url: str) -> bool:
        """TLS and cluster URLs stay with redis-py."""
        return url.startswith(("redis://", "unix://"))

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol
            self._protocol = await self._connect()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(
                        lambda: _Protocol(loop), options["path"]
                    )
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(loop),
                        options.get("host", "localhost"),
                        int(options.get("port", 6379)),
                    )
                setup = []
                if options.get("password"):
                    user = options.get("username")
                    auth = (
                        ("AUTH", user, options["password"])
                        if user
                        else ("AUTH", options["password"])
                    )
                    setup.append(protocol.send(pack(*auth)))
                if options.get("db"):
                    setup.append(protocol.send(pack("SELECT", int(options["db"]))))
                for step in setup:
                    await step
        except TimeoutError:
            raise rexc.TimeoutError("timed out connecting to Redis") from None
        except OSError as exc:
            raise rexc.ConnectionError(f"cannot connect to Redis: {exc}") from None
        return protocol

    async def call(self, *args: Arg) -> Any:
        """One command, pipelined with every other call of this tick; ``StoreUnavailable`` when
        Redis is away, too slow or refusing it for its state."""
        started = time.perf_counter()
        failed = True
        try:
            protocol = await self._connection()
            future = protocol.send(pack(*args))
            loop = asyncio.get_running_loop()
            timeout = self._call_timeout
            timer = loop.call_later(timeout, self._expire, protocol, future, timeout)
            try:
                result = await future
            finally:
                timer.cancel()
            failed = False
            return result
        except rexc.NoScriptError:
            failed = False
            raise
        except REDIS_FAILURES as exc:
            raise unavailable() from exc
        finally:
            if self.observer is not None:
                self.observer(str(args[0]).upper(), time.perf_counter() - started, failed)

    @staticmethod
    def _expire(protocol: _Protocol, future: asyncio.Future[Any], timeout: float) -> None:
        """A call outlived its timeout. If the connection said nothing for that long it is
        dead: fail everything on it. If it is only slow (replies still arrive), fail this call
        alone; its reply is read and dropped when it comes, keeping the order."""
        if future.done():
            return
        error = rexc.TimeoutError("Redis did not answer in time")
        if protocol._loop.time() - protocol.last_received >= timeout:
            protocol.abort(error)
        else:
            future.set_exception(error)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class PipelinedScript:
    """A Lua script called by SHA over :class:`PipelinedRedis`; same call shape as redis-py's
    ``AsyncScript`` (``await script(keys=[...], args=[...])``)."""

    def __init__(self, redis: PipelinedRedis, text: str) -> None:
        import hashlib

        self._redis = redis
        self._text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis names scripts so

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await self._redis.call(*command)
        except rexc.NoScriptError:
            # Not run: load it (Redis restarted or its script cache was flushed) and call again.
            await self._redis.call("SCRIPT", "LOAD", self._text)
            return await self._redis.call(*command)

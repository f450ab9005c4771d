"""Request bodies: read only when a route asks for one, within time, size and turn bounds.

aiohttp reads a body only when asked, so nothing reads one before the route knows who is
asking: an unknown route, a malformed credential or a refused caller is answered without
reading the body; what is left of it is then read and discarded only when it is small and
arrives at once (:func:`_discard_small_rest`), else the connection is closed rather than drained
(the server's own ``lingering_time`` is 0). The middleware refuses, unread, a declared
``Content-Length`` over ``GATEWAY_MAX_BODY_BYTES`` (413) and a ``Content-Encoding`` other than
gzip or deflate (415, rather than aiohttp's "install Brotli"). Routes read bodies with
:func:`read_body`:

* the whole body within ``GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS``, else 408 and the connection
  closed (aiohttp bounds neither how long a body may take nor, by itself, what it inflates to);
* the first :data:`UNVERIFIED_BODY_BYTES` freely (a submit's key is then verified by its one
  admission round trip); a larger body is read further only after ``verify`` (the key checked
  in Redis), so a forged key never makes the gateway hold, parse or hash a large body;
* identity bodies up to ``GATEWAY_MAX_BODY_BYTES``; compressed ones (the server does not
  inflate anything itself: ``auto_decompress`` is off) are inflated here, chunk by chunk and
  never more than a chunk ahead of what is read, and refused (413) as soon as they grow past
  ``GATEWAY_MAX_INFLATED_BODY_BYTES``;
* at most ``GATEWAY_MAX_LARGE_BODIES`` bodies over :data:`UNVERIFIED_BODY_BYTES` read and parsed
  at once per process (parsing holds the GIL, so threads would not help); others wait for a turn
  within the body's deadline, then get 503.

Slow *headers* (slowloris) never reach a middleware: ``serve`` bounds them with the server's
idle timeout (``GATEWAY_CLIENT_IDLE_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from gateway.common.errors import (
    BadRequest,
    GatewayBusy,
    GatewayError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.common.jsonutil import parse_json_object
from gateway.settings import Settings
from gateway.web.appkeys import ADMIN_ACTOR, LARGE_BODIES, RAW_BODY, SETTINGS
from gateway.web.middlewares.errors import error_response

T = TypeVar("T")

UNVERIFIED_BODY_BYTES = 64 * 1024
"""What a body may be read up to before its caller was verified in Redis."""
READ_CHUNK = 256 * 1024
DISCARD_WITHIN = 1.0  # seconds a small unread remainder may take to arrive before the close
DISCARD_UP_TO = 1024 * 1024
"""The most of a refused or unread body discarded so that its client reads the answer: a client
that writes its whole body before reading (most do) gets a reset instead of its 413 when the
connection closes under bytes still in flight. Past it, the close is cheaper than the bytes."""
CODINGS = frozenset({"", "identity", "gzip", "deflate"})


def _encoding(request: web.Request) -> str:
    return request.headers.get("Content-Encoding", "").strip().lower()


@web.middleware
async def bodies_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse what can be refused from the headers alone, and read nothing the route did not
    ask for. Outside the error middleware, so that it sees every answer: one whose body was
    left unread says ``Connection: close`` (see :func:`_discard_small_rest`)."""
    if not request.body_exists:
        return await handler(request)
    refusal = _refusal(request)
    response = error_response(refusal) if refusal is not None else await handler(request)
    if not await _discard_small_rest(request):
        response.force_close()
    return response


def _refusal(request: web.Request) -> GatewayError | None:
    encoding = _encoding(request)
    if encoding not in CODINGS:
        return UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body as is, "
            "or gzip or deflate it.",
            detail="content_encoding",
        )
    limit = request.app[SETTINGS].max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        return PayloadTooLarge(detail=f"the body is {declared} bytes; the limit is {limit}")
    return None


async def _discard_small_rest(request: web.Request) -> bool:
    """Whether the connection may be kept: its body was read, or what the route left of it was
    small and came at once (at most :data:`DISCARD_UP_TO` bytes within
    :data:`DISCARD_WITHIN` s), and has been read and discarded now, raw, never inflated.

    The server never drains a body itself (``lingering_time`` 0): draining a large or slow one
    would cost the gateway what the client did not pay for, so such a connection is closed
    after its answer instead."""
    if RAW_BODY in request or request.content.at_eof():
        return True
    declared = request.content_length
    if declared is not None and declared > DISCARD_UP_TO:
        return False
    discarded = 0
    try:
        async with asyncio.timeout(DISCARD_WITHIN):
            while discarded <= DISCARD_UP_TO and not request.content.at_eof():
                discarded += len(await request.content.read(DISCARD_UP_TO + 1 - discarded))
    except (TimeoutError, OSError, RequestPayloadError):
        return False
    return request.content.at_eof()


def setup_bodies(app: web.Application) -> None:
    app.middlewares.append(bodies_middleware)


def _unchanged(raw: bytes) -> bytes:
    return raw


async def read_body(
    request: web.Request,
    *,
    verify: Callable[[], Awaitable[object]] | None = None,
    parse: Callable[[bytes], T] = _unchanged,  # type: ignore[assignment]
) -> T:
    """The body, bounded as the module says, passed through ``parse`` (while a large body
    holds its turn). ``verify`` runs before more than :data:`UNVERIFIED_BODY_BYTES` are read;
    without it, a larger body is read only for a caller the route verified already (an admin
    token), else refused (413)."""
    cached = request.get(RAW_BODY)
    if cached is not None:
        return parse(cached)
    if not request.body_exists:
        request[RAW_BODY] = b""
        return parse(b"")
    settings = request.app[SETTINGS]
    encoded = _encoding(request) in ("gzip", "deflate")
    declared = request.content_length
    if (  # all here already (most submits): nothing to wait for, bound or inflate
        not encoded
        and declared is not None
        and declared <= min(UNVERIFIED_BODY_BYTES, settings.max_body_bytes)
        and request.content.is_eof()
    ):
        raw = request.content.read_nowait(-1)
        request[RAW_BODY] = raw
        return parse(raw)
    limit = settings.max_body_bytes
    if encoded:
        limit = min(limit, settings.max_inflated_body_bytes)
    deadline = asyncio.get_running_loop().time() + settings.client_body_timeout_seconds
    what = "inflates to more than" if encoded else "is larger than"
    inflow = _Inflow(request, _encoding(request))
    head = await _read(inflow, min(UNVERIFIED_BODY_BYTES, limit) + 1, deadline, settings)
    if len(head) > limit:
        raise PayloadTooLarge(detail=f"the body {what} {limit} bytes")
    if len(head) <= UNVERIFIED_BODY_BYTES:
        request[RAW_BODY] = head
        return parse(head)
    if verify is not None:
        await verify()
    elif ADMIN_ACTOR not in request:
        raise PayloadTooLarge(detail=f"this route accepts at most {UNVERIFIED_BODY_BYTES} bytes")
    try:
        async with asyncio.timeout_at(deadline):
            await request.app[LARGE_BODIES].acquire()
    except TimeoutError:
        raise GatewayBusy(
            "The gateway is busy reading other large bodies; retry shortly.",
            detail=f"at most {settings.max_large_bodies} large bodies at once",
        ) from None
    try:
        rest = await _read(inflow, limit + 1 - len(head), deadline, settings)
        raw = head + rest
        if len(raw) > limit:
            raise PayloadTooLarge(detail=f"the body {what} {limit} bytes")
        request[RAW_BODY] = raw
        return parse(raw)
    finally:
        request.app[LARGE_BODIES].release()


class _Inflow:
    """A request's body as it arrives, inflated here when it is compressed: at most a chunk of
    inflated bytes exists beyond what was asked for, whatever the compression ratio."""

    def __init__(self, request: web.Request, encoding: str) -> None:
        self._content = request.content
        self._pending = b""
        self._inflater: Any = None
        if encoding == "gzip":
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj()
        self._raw_deflate = encoding == "deflate"  # some clients send deflate without its header
        self._started = False

    async def read(self, most: int) -> bytes:
        """Up to ``most`` bytes of the (inflated) body; fewer only at its end."""
        out: list[bytes] = []
        total = 0
        while total < most:
            if not self._pending and not await self._fill():
                break
            take = self._pending[: most - total]
            self._pending = self._pending[len(take) :]
            out.append(take)
            total += len(take)
        return b"".join(out)

    async def _fill(self) -> bool:
        inflater = self._inflater
        if inflater is not None and inflater.unconsumed_tail:
            self._pending = self._inflate(inflater.unconsumed_tail)
            return True
        chunk = await self._content.read(READ_CHUNK)
        if not chunk:
            if inflater is not None and self._started and not inflater.eof:
                raise BadRequest("The compressed request body is truncated.", detail="encoding")
            return False
        if inflater is None:
            self._pending = chunk
            return True
        if not self._started and self._raw_deflate and chunk[0] & 0x0F != 8:
            self._inflater = inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._started = True
        self._pending = self._inflate(chunk)
        return True

    def _inflate(self, data: bytes) -> bytes:
        try:
            return bytes(self._inflater.decompress(data, READ_CHUNK))
        except zlib.error as exc:
            raise BadRequest(
                "The request body could not be decompressed.", detail=str(exc)
            ) from None


async def _read(inflow: _Inflow, most: int, deadline: float, settings: Settings) -> bytes:
    """Up to ``most`` bytes of the (inflated) body, before ``deadline``."""
    try:
        async with asyncio.timeout_at(deadline):
            return await inflow.read(most)
    except TimeoutError:
        seconds = settings.client_body_timeout_seconds
        raise RequestTimeout(detail=f"the body took over {seconds:g} s") from None


async def read_json_object(
    request: web.Request,
    *,
    required: bool = True,
    verify: Callable[[], Awaitable[object]] | None = None,
) -> dict[str, Any]:
    """The body as a JSON object (see :func:`gateway.common.jsonutil.parse_json_object`), read as
    :func:`read_body` reads; an empty body is ``{}`` unless ``required``."""

    def parse(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            if required:
                raise BadRequest("The request body must be a JSON object.", detail="empty body")
            return {}
        return parse_json_object(raw)

    return await read_body(request, verify=verify, parse=parse)

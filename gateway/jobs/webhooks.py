"""Serverless webhooks, delivered by the gateway itself to every follower of a job.

RunComfy would call a webhook with *its* request id, which the gateway's clients never see, so
the gateway keeps each client's webhook with its gateway id and calls it when the job moves on:
once at the end, and on every status change when ``webhook_intermediate_status`` is true.
Coalesced followers and cache hits get their own callbacks with their own ids.

Deliveries are queued in Redis (a due-time sorted set plus one hash per delivery), so a delivery
survives the death of the replica that queued it; any replica's worker claims due deliveries
with a lease, POSTs them, and retries failures with exponential backoff. Delivery is
at-least-once: ``X-Gateway-Delivery`` (gateway request id and status) marks duplicates.

Targets are checked against a policy before they are stored and again at each delivery, inside
the resolver the delivery connects with (:class:`PolicyResolver`), so the addresses checked are
the addresses connected to: a rebinding DNS answer cannot pass the check with a public address
and then connect to a private one. Loopback, link-local (cloud metadata), private, multicast,
reserved and IPv4-compatible IPv6 (``::/96``) addresses are refused unless the operator allows
private targets or names the host. Failed deliveries are retried with jittered exponential
backoff, so deliveries that failed together do not retry in lock-step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.common.background import sleep_unless
from gateway.common.errors import BadRequest, StoreUnavailable
from gateway.common.records import record
from gateway.jobs.job import Job
from gateway.store.client import Store
from gateway.store.contracts import DeliveryEnqueueArgs, PollClaimArgs
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

log = structlog.get_logger(__name__)

MAX_URL_LENGTH = 2048
_JITTER = random.Random()  # its own generator: the global one belongs to the application


@record
class WebhookPolicy:
    allow_private: bool
    allowed_hosts: frozenset[str]

    def check_url(self, url: str) -> str:
        """The URL if it may be stored as a webhook, else a clear 400."""
        parts = urlsplit(url)
        if (
            len(url) > MAX_URL_LENGTH
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username
            or parts.password
        ):
            raise BadRequest(
                "The webhook must be an absolute http(s) URL without credentials.",
                detail="webhook_invalid",
            )
        host = parts.hostname.lower().rstrip(".")
        if host == "localhost" or host.endswith(".localhost"):
            self.check_address(host, ipaddress.ip_address("127.0.0.1"))  # RFC 6761: loopback
            return url
        address = _literal_address(host)
        if address is None:
            return url  # a name: checked again after resolution, before each delivery
        self.check_address(host, address)
        return url

    def check_address(
        self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> None:
        if self.allow_private or host.lower() in self.allowed_hosts:
            return
        if _ipv4_compatible(address) or any(
            not a.is_global or a.is_multicast for a in _with_embedded(address)
        ):
            raise BadRequest(
                f"Webhook target {host} is a loopback, link-local, private or reserved address; "
                "the gateway's policy refuses it.",
                detail="webhook_forbidden_target",
            )


class WebhookTargetForbidden(OSError):
    """A webhook's name resolved to an address the policy refuses (raised inside aiohttp's
    connector, which wraps it in ``ClientConnectorDNSError``)."""


class PolicyResolver(AbstractResolver):
    """Resolves webhook targets and refuses a name if any of its addresses is not allowed.

    The check runs inside the lookup whose answer the connection uses, so a rebinding DNS
    server gets no second question to answer differently. Literal addresses never reach a
    resolver: :meth:`WebhookPolicy.check_url` checks those.
    """

    def __init__(self, policy: WebhookPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self._policy.check_address(host, ipaddress.ip_address(result["host"]))
            except (BadRequest, ValueError):
                raise WebhookTargetForbidden(f"{host} resolves to a refused address") from None
        return results

    async def close(self) -> None:
        await self._inner.close()


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated; ::127.0.0.1 reaches loopback


def _ipv4_compatible(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(address, ipaddress.IPv6Address) and address in _IPV4_COMPATIBLE


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, legacy IPv4 forms included (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``: resolvers read them as addresses), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _with_embedded(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address and any IPv4 address it carries (mapped, 6to4, Teredo, NAT64), which the
    network may route to: ``[64:ff9b::a9fe:a9fe]`` reaches 169.254.169.254 through NAT64."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        found += [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
        if address.teredo is not None:
            found += list(address.teredo)
        if any(address in net for net in _NAT64):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


@record
class DeliveryConfig:
    timeout: float
    max_attempts: int
    backoff_base: float
    lease: float


class Webhooks:
    """Queues callbacks for a job's followers and delivers them."""

    def __init__(
        self,
        redis: Store,
        scripts: Scripts,
        layout: Layout,
        policy: WebhookPolicy,
        config: DeliveryConfig,
        record_ttl: int,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self.policy = policy
        self._config = config
        self._record_ttl = record_ttl
        self._session: aiohttp.ClientSession | None = None

    # --- queueing ---------------------------------------------------------------------------

    async def job_changed(self, job: Job, status: str, body: dict[str, Any], final: bool) -> None:
        """Queue a callback for every follower of ``job`` that asked for this one."""
        hooks = await self._redis.smembers(self._layout.job_hooks(job.shard, job.job_id))
        for rid in (str(r) for r in hooks):
            record = await self._redis.hmget(
                self._layout.request(job.shard, rid),
                ["webhook", "webhook_intermediate", "detached", "target"],
            )
            url, intermediate, detached, target = (None if v is None else str(v) for v in record)
            if not url or detached == "1" or (not final and intermediate != "1"):
                continue
            await self.enqueue(rid, str(target), url, status, body)

    async def enqueue(
        self, rid: str, deployment_id: str, url: str, status: str, body: dict[str, Any]
    ) -> None:
        payload = {**body, "request_id": rid, "deployment_id": deployment_id, "status": status}
        await self.enqueue_payload(url, payload, f"{rid}:{status}")

    async def enqueue_payload(self, url: str, payload: dict[str, Any], mark: str) -> None:
        """Queue any JSON callback (job updates, budget alerts) with at-least-once delivery."""
        delivery_id = uuid.uuid4().hex
        body = orjson.dumps(payload).decode()
        await self._scripts.run(
            DeliveryEnqueueArgs(
                delivery_record=self._layout.delivery(delivery_id),
                due_deliveries=self._layout.delivery_due(),
                delivery_id=delivery_id,
                due_at=time.time(),
                record_ttl=self._record_ttl,
                fields=("url", url, "body", body, "mark", mark, "attempts", 0),
            )
        )

    # --- delivery ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver due callbacks until ``stopping`` is set."""
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        # No DNS cache: every delivery asks (and checks) again, as the policy may have changed.
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy), use_dns_cache=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            while not stopping.is_set():
                try:
                    reply = await self._scripts.run(
                        PollClaimArgs(
                            due_set=self._layout.delivery_due(),
                            lease_seconds=self._config.lease,
                            batch_size=32,
                        )
                    )
                    claimed = reply.members
                except StoreUnavailable:
                    await sleep_unless(stopping, 1.0)
                    continue
                if not claimed:
                    await sleep_unless(stopping, 0.1)
                    continue
                outcomes = await asyncio.gather(
                    *(self._deliver(d) for d in claimed), return_exceptions=True
                )
                for outcome in outcomes:
                    # A Redis failure mid-delivery: its lease lapses and it is delivered again
                    # (at least once). Anything else is a bug, and must not end the worker
                    # quietly either.
                    if isinstance(outcome, StoreUnavailable):
                        log.warning("webhook_store_error", error_type=type(outcome).__name__)
                    elif isinstance(outcome, BaseException):
                        log.error("webhook_failed", error_type=type(outcome).__name__)

    async def _deliver(self, delivery_id: str) -> None:
        key = self._layout.delivery(delivery_id)
        fields = {str(k): str(v) for k, v in (await self._redis.hgetall(key)).items()}
        if not fields:
            await self._redis.zrem(self._layout.delivery_due(), delivery_id)
            return
        attempts = int(fields["attempts"]) + 1
        url = fields["url"]
        try:
            self.policy.check_url(url)  # literal addresses: the policy may have changed since
            assert self._session is not None
            async with self._session.post(
                url,
                data=fields["body"],
                headers={
                    "Content-Type": "application/json",
                    "X-Gateway-Delivery": fields["mark"],
                    "User-Agent": "runcomfy-gateway-webhooks",
                },
                allow_redirects=False,
            ) as resp:
                ok = 200 <= resp.status < 300
                reason = f"HTTP {resp.status}"
        except BadRequest:
            ok, reason, attempts = False, "forbidden target", self._config.max_attempts
        except aiohttp.ClientConnectorError as exc:
            ok, reason = False, type(exc).__name__
            if isinstance(exc.os_error, WebhookTargetForbidden):
                reason, attempts = "forbidden target", self._config.max_attempts
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, reason = False, type(exc).__name__
        if ok:
            await self._forget(delivery_id)
            log.info("webhook_delivered", mark=fields["mark"], attempts=attempts)
            return
        if attempts >= self._config.max_attempts:
            await self._forget(delivery_id)
            log.warning("webhook_abandoned", mark=fields["mark"], attempts=attempts, reason=reason)
            return
        # Jittered: deliveries that failed together (a receiver down) spread out again.
        delay = self._config.backoff_base * 2 ** (attempts - 1) * _JITTER.uniform(0.5, 1.0)
        # Not atomic, and needs not be: without the new due time the claim's lease runs out
        # and the delivery is simply retried sooner.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, "attempts", attempts)
            pipe.zadd(self._layout.delivery_due(), {delivery_id: time.time() + delay})
            await pipe.execute()
        log.info("webhook_retry", mark=fields["mark"], attempts=attempts, reason=reason)

    async def _forget(self, delivery_id: str) -> None:
        """Drop a finished delivery. The hash goes first: a due entry left behind by a failure in
        between is dropped by the next claim, which finds no hash."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._layout.delivery(delivery_id))
            pipe.zrem(self._layout.delivery_due(), delivery_id)
            await pipe.execute()

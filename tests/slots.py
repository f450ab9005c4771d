"""Proof that the gateway keeps every multi-key operation in one Redis Cluster hash slot.

A cluster refuses a command or a script's declared keys that span slots, but Redis (7.0 as 6.2)
and Valkey refuse a key a script *names itself* only when another node serves it: a key of
another slot on the same node passes, and breaks once slots move. So tests on the cluster read
``MONITOR`` on every primary while they run and check each command of the test's namespace: its
keys (and key prefixes) in one slot, and each command a script runs in the slot of the script's
own keys.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.store.client import connect

LINE = re.compile(r"^\S+ \[\d+ ([^\]]+)\] (.*)$")
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
SCRIPT_CALLS = ("EVALSHA", "EVAL")


def _args(text: str) -> list[str]:
    return [a.replace('\\"', '"').replace("\\\\", "\\") for a in ARG.findall(text)]


@dataclass
class SlotWatch:
    """``MONITOR`` on every primary of a cluster, for the keys under ``namespace``."""

    url: str
    namespace: str
    lines: dict[str, list[str]] = field(default_factory=dict)
    _clients: list[aioredis.Redis] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _marker: str = field(default_factory=lambda: "slot-watch-" + uuid.uuid4().hex)

    async def __aenter__(self) -> SlotWatch:
        cluster: Any = connect(self.url)
        try:
            await cluster.initialize()
            nodes = [(str(n.host), int(n.port)) for n in cluster.get_primaries()]
            auth = {k: cluster.connection_kwargs.get(k) for k in ("username", "password")}
        finally:
            await cluster.aclose()
        started = []
        for host, port in nodes:
            # no read timeout (redis-py 8 defaults to 5 s): on busy cores the test's own load can
            # keep this reader waiting longer for its turn; __aexit__ bounds the wait instead
            client = aioredis.Redis(
                host=host, port=port, decode_responses=True, socket_timeout=None, **auth
            )
            self._clients.append(client)
            name = f"{host}:{port}"
            self.lines[name] = []
            ready = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.create_task(self._follow(client, name, ready)))
            started.append(ready)
        await asyncio.gather(*started)
        return self

    async def _follow(self, client: aioredis.Redis, name: str, ready: asyncio.Future[None]) -> None:
        async with client.monitor() as monitor:
            ready.set_result(None)
            connection: Any = monitor.connection
            while True:
                line = str(await connection.read_response())
                self.lines[name].append(line)
                if self._marker in line:
                    return

    async def __aexit__(self, *exc: object) -> None:
        """Stop once every node has shown a marker sent after the test's last command. After a
        load of hundreds of clients on busy cores, reading the backlog of MONITOR lines can take
        many seconds: the bound is only there so that a lost marker cannot hang the suite."""
        try:
            for client in self._clients:
                await client.echo(self._marker)
            await asyncio.wait_for(asyncio.gather(*self._tasks), 90)
        finally:
            for task in self._tasks:
                task.cancel()
            for client in self._clients:
                await client.aclose()

    def _slots(self, args: list[str]) -> set[int]:
        return {key_slot(a.encode()) for a in args if a.startswith(self.namespace + ":")}

    def scripts_seen(self) -> int:
        """Script calls of the namespace seen (so a check of nothing cannot pass)."""
        calls = 0
        for lines in self.lines.values():
            for line in lines:
                match = LINE.match(line)
                if match and match[1] != "lua":
                    args = _args(match[2])
                    calls += bool(args[:1] == ["EVALSHA"] and self._slots(args))
        return calls

    def violations(self) -> list[str]:
        """Every command or script step of the namespace that left its slot."""
        found: list[str] = []
        for node, lines in self.lines.items():
            script_slots: set[int] | None = None
            script = ""
            for line in lines:
                match = LINE.match(line)
                if not match:
                    continue
                client, args = match[1], _args(match[2])
                slots = self._slots(args)
                if client != "lua":
                    script_slots, script = None, line
                    if args[:1] and args[0].upper() in SCRIPT_CALLS:
                        script_slots = self._slots(args[3 : 3 + int(args[2])])  # declared keys
                    if len(slots) > 1:
                        found.append(f"{node}: one command over slots {sorted(slots)}: {line}")
                elif slots and script_slots is not None and not slots <= script_slots:
                    found.append(
                        f"{node}: a script stepped out of its slots {sorted(script_slots)}: "
                        f"{line}\n  in {script[:300]}"
                    )
        return found

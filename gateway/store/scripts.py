"""Lua scripts, called by SHA and reloaded after NOSCRIPT, over the pipelined connection
(:mod:`gateway.store.pipelined`) when the URL allows it, else over redis-py.

Every script gets ``common.lua`` (key verification, Redis's clock, terminal states) and
``quota.lua`` (periods, GCRA, budget alerts, usage counters) prepended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Protocol

from gateway.store.client import Store
from gateway.store.pipelined import PipelinedRedis, PipelinedScript


def _read(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


class ScriptCall(Protocol):
    """``await script(keys=[...], args=[...])``: redis-py's AsyncScript or a PipelinedScript."""

    async def __call__(self, keys: Any = None, args: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Scripts:
    authenticate: ScriptCall
    team_policy: ScriptCall
    load_request: ScriptCall
    admit: ScriptCall
    refuse_submit: ScriptCall
    job_update: ScriptCall
    detach: ScriptCall
    reattach: ScriptCall
    poll_claim: ScriptCall
    poll_schedule: ScriptCall
    delete_team: ScriptCall
    revoke_key: ScriptCall
    dispatch: ScriptCall
    requeue: ScriptCall
    queue_body: ScriptCall
    resolve_unreconciled: ScriptCall
    global_slot: ScriptCall
    zrem_if_older: ScriptCall
    create_key: ScriptCall
    rotate_key: ScriptCall
    now: ScriptCall
    admin_token_create: ScriptCall
    admin_token_revoke: ScriptCall
    replace_hash: ScriptCall
    purge_target: ScriptCall
    delivery_enqueue: ScriptCall

    @classmethod
    def register(
        cls, redis: Store, clock_offset: float = 0.0, pipelined: PipelinedRedis | None = None
    ) -> Scripts:
        """``clock_offset`` shifts Redis's clock as the scripts see it (tests of period ends)."""
        prelude = "\n".join(
            [f"local CLOCK_OFFSET = {clock_offset!r}", _read("common.lua"), _read("quota.lua")]
        )
        texts = {f.name: prelude + "\n" + _read(f"{f.name}.lua") for f in fields(cls)}
        if pipelined is not None:
            return cls(**{name: PipelinedScript(pipelined, text) for name, text in texts.items()})
        return cls(**{name: redis.register_script(text) for name, text in texts.items()})


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A hash from a flat field/value reply (a script's, or HGETALL's over the pipelined
    connection; strings, as both clients decode replies)."""
    fields = iter(flat)
    return dict(zip(fields, fields, strict=True))

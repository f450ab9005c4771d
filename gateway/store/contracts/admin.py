"""Contracts of the scripts behind admin actions on a team's data: replacing its limits or
policy, purging cached results, resolving submits of unknown outcome."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from gateway.common.records import record
from gateway.store.contracts.base import Done, ScriptArgs, key, rest


@record(kw_only=True)
class ReplaceHashArgs(ScriptArgs[Done]):
    script: ClassVar[str] = "replace_hash"
    hash_key: str = key()
    fields: tuple[str, ...] = rest()  # field, value, ... (none: the hash is removed)

    def parse_reply(self, raw: Any) -> Done:
        return Done.parse(raw)


@record
class Purged:
    purged: int  # cached entries that existed

    @classmethod
    def parse(cls, raw: Any) -> Purged:
        return cls(int(raw))


@record(kw_only=True)
class PurgeTargetArgs(ScriptArgs[Purged]):
    script: ClassVar[str] = "purge_target"
    target_index: str = key()
    cached_targets: str = key()
    dedup_prefix: str
    target: str

    def parse_reply(self, raw: Any) -> Purged:
        return Purged.parse(raw)


class Resolution(StrEnum):
    CHARGED = "charged"  # RunComfy charged it: its cost, or the reservation
    REFUNDED = "refunded"


@record
class Resolved:
    found: bool  # False: the job is not in the ledger
    reserved_micro: int = 0
    settled_micro: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Resolved:
        if int(raw[0]) == 0:
            return cls(False)
        _, reserved, settled = raw
        return cls(True, int(reserved), int(settled))


@record(kw_only=True)
class ResolveUnreconciledArgs(ScriptArgs[Resolved]):
    script: ClassVar[str] = "resolve_unreconciled"
    unreconciled: str = key()
    job_id: str
    resolution: Resolution
    cost_micro: int | None  # None: the reservation
    usage_retention: int

    def parse_reply(self, raw: Any) -> Resolved:
        return Resolved.parse(raw)

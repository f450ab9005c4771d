"""The Redis key layout, version 1.

Everything one team request touches lives in that team's hash slot, ``{t:<slot>}``, where
``<slot>`` is a random tag carried inside the team's API keys. The gateway therefore knows the
slot before it looks anything up, every multi-key script stays inside one Redis Cluster slot, and
another team's records are simply not addressable with your key.

    <ns>:v1:teams                       hash  team_id -> slot         bound: admin actions
    <ns>:v1:{t:<slot>}:team             hash  team record              bound: admin actions
    <ns>:v1:{t:<slot>}:keys             set   key ids of the team      bound: admin actions
    <ns>:v1:{t:<slot>}:key:<kid>        hash  key record (hash only)   bound: admin actions
    <ns>:v1:{t:<slot>}:req:<rid>        hash  gateway request record   TTL: request_ttl_seconds
    <ns>:v1:{t:<slot>}:unknown          zset  submits of unknown outcome, by time
                                              TTL: request_ttl_seconds, trimmed to 10,000

The ``v1`` segment is the layout version: a replica with an incompatible layout uses ``v2`` keys, so
old and new replicas can share one Redis during a rolling upgrade without misreading each other.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT_VERSION = "v1"
UNKNOWN_SUBMITS_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Layout:
    """Builds key names under one namespace."""

    namespace: str

    @property
    def root(self) -> str:
        return f"{self.namespace}:{LAYOUT_VERSION}"

    def team_index(self) -> str:
        return f"{self.root}:teams"

    def team_tag(self, slot: str) -> str:
        return f"{self.root}:{{t:{slot}}}"

    def team(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:team"

    def team_keys(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:keys"

    def key(self, slot: str, kid: str) -> str:
        return f"{self.team_tag(slot)}:key:{kid}"

    def request(self, slot: str, rid: str) -> str:
        return f"{self.team_tag(slot)}:req:{rid}"

    def unknown_submits(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:unknown"

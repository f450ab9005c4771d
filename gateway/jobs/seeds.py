"""Whether a request pins its randomness, for the ``seeded`` dedup policy.

A generation is random unless the caller fixes its seed, so under ``seeded`` only a request
that pins every seed it can is worth a stored result; every other identical request only joins a
job in flight. What counts:

* **Seed parameters** (Model API) are the top-level properties of the model's catalog
  ``input_schema`` named ``seed`` or ``*_seed`` (``noise_seed``) whose type, if given, is a
  number. A model without one cannot be pinned by its caller, so under ``seeded`` its results are
  never stored: a client rerunning it (ComfyUI's "randomize" changes nothing RunComfy sees) gets
  a new generation. With no usable schema (the catalog unreachable) nothing is pinned.
* **Pinned** means every seed parameter is in the body *as the client sent it* (a default the
  gateway fills in pins nothing: RunComfy may draw a seed for an absent one) with a value that is
  not random: an integer (an integral float counts) that is not negative (``-1`` is the random
  sentinel of nearly every API that takes one) and is not a value the parameter's description
  or title names as random (``"0 for random"``, ``"-1 = random"``, ``"random if 0"``).
  ``null``, strings and other values are not pinned.
* **Serverless** bodies have no schema the gateway can read: a deployment request is pinned when
  its ``overrides`` (and any ``workflow_api_json`` it sends) set at least one node input named
  ``seed`` or ``*_seed``, and every such input holds a pinned value (a link to another node, such
  as ``["30", 0]``, is not). Seeds of the deployed workflow that the request does not override
  cannot be seen; a deployment whose other samplers draw their own seed should get ``inflight``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NUMBER_TYPES = frozenset({"integer", "int", "number", "float"})
_RANDOM_AFTER = re.compile(
    r"(?<![\w.])(-?\d+)\s*(?:\)\s*)?(?:=|:|means|is|for|to|gives|picks)?\s*(?:a\s+|use\s+a\s+)?"
    r"random",
    re.IGNORECASE,
)
_RANDOM_BEFORE = re.compile(
    r"random\w*(?:\s+seed)?\s*(?:\(|,)?\s*(?:if|when|with|=|:)\s*(?:set\s+to\s+|it\s+is\s+)?"
    r"(-?\d+)(?![\w.])",
    re.IGNORECASE,
)


def is_seed_name(name: str) -> bool:
    """``seed`` and ``*_seed`` (``noise_seed``), the names ComfyUI and model schemas use."""
    lowered = name.lower()
    return lowered == "seed" or lowered.endswith("_seed")


def _is_number_typed(spec: Mapping[str, Any]) -> bool:
    declared = spec.get("type")
    if declared is None:
        return True
    names = declared if isinstance(declared, list) else [declared]
    return any(isinstance(n, str) and n in _NUMBER_TYPES for n in names)


def seed_parameters(schema: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The seed parameters of a model's input schema, by name (empty: none, or no schema)."""
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: spec
        for name, spec in properties.items()
        if isinstance(name, str)
        and is_seed_name(name)
        and isinstance(spec, Mapping)
        and _is_number_typed(spec)
    }


def random_sentinels(spec: Mapping[str, Any]) -> frozenset[int]:
    """Values the parameter's description or title names as "random"."""
    text = " ".join(str(spec.get(f, "")) for f in ("description", "title"))
    found = {int(m.group(1)) for m in _RANDOM_AFTER.finditer(text)}
    found |= {int(m.group(1)) for m in _RANDOM_BEFORE.finditer(text)}
    return frozenset(found)


def pinned_value(value: Any, sentinels: frozenset[int] = frozenset()) -> bool:
    """Whether ``value`` fixes a seed: a non-negative integer that is no random sentinel."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        if not value.is_integer():
            return False
        value = int(value)
    return isinstance(value, int) and value >= 0 and value not in sentinels


def model_request_pinned(body: Mapping[str, Any], schema: Mapping[str, Any] | None) -> bool:
    """Whether a Model API body, as the client sent it, pins every seed of the model."""
    seeds = seed_parameters(schema)
    return bool(seeds) and all(
        name in body and pinned_value(body[name], random_sentinels(spec))
        for name, spec in seeds.items()
    )


def _node_seed_values(nodes: Any) -> list[Any]:
    """The values of every seed-named input of a ``{node_id: {"inputs": {...}}}`` mapping."""
    values: list[Any] = []
    if not isinstance(nodes, Mapping):
        return values
    for node in nodes.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if isinstance(inputs, Mapping):
            values += [v for k, v in inputs.items() if isinstance(k, str) and is_seed_name(k)]
    return values


def serverless_request_pinned(body: Mapping[str, Any]) -> bool:
    """Whether a deployment request sets at least one seed input, and every one it sets pins."""
    values = _node_seed_values(body.get("overrides")) + _node_seed_values(
        body.get("workflow_api_json")
    )
    return bool(values) and all(pinned_value(v) for v in values)

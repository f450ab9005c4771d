"""The identity of a request, so that the same generation is only paid for once.

Two requests are the same request when RunComfy would do the same work for both. The identity
is a SHA-256 over the API (``model`` or ``serverless``), the target (model id or deployment id)
and a canonical form of the body, built by these rules:

* Webhook fields (``webhook``, ``webhook_intermediate_status``) are dropped from the top level:
  they say where to report, not what to generate.
* When the target's input schema is known, absent top-level properties are filled with their
  schema defaults, because RunComfy would use them. A ``null`` default is never filled in, and an
  explicit ``null`` for a property whose default is ``null`` is dropped: absent, ``null`` and the
  default are one request. With no usable schema the body is taken as sent.
* Object keys are sorted by code point; array order is kept; whitespace and escapes do not count.
* Numbers have one form: an integral float that a double holds exactly (``1.0``) is the int
  ``1``, other floats use their shortest round-trip repr. Booleans stay booleans, so ``true`` is
  never ``1``. NaN and Infinity are not JSON and are refused.
* Strings are compared exactly: no case folding and no Unicode normalisation, because a model may
  see ``é`` precomposed and decomposed differently.
* Bodies nested deeper than :data:`gateway.jsonutil.MAX_JSON_DEPTH` are refused (``ValueError``)
  rather than recursed into; the gateway refuses such bodies before they get here.

Everything else counts: any changed value, added key or removed non-default key is a new request.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.jsonutil import MAX_JSON_DEPTH

WEBHOOK_FIELDS: frozenset[str] = frozenset({"webhook", "webhook_intermediate_status"})

# Bump when the rules above change, so identities made under old rules can never match new ones.
_IDENTITY_VERSION = b"runcomfy-gateway/request-identity/v1"
_MAX_EXACT_INTEGRAL_FLOAT = 2**53


def apply_defaults(body: dict[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``body`` as RunComfy would see it once the schema's defaults are applied.

    Only top-level properties are filled in. A malformed or missing schema leaves the body as
    sent: guessing defaults could merge requests that RunComfy treats as different. Defaults are
    deep-copied so a caller editing the result can never change a cached schema.
    """
    result = dict(body)
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return result
    for name, spec in properties.items():
        if not isinstance(spec, Mapping) or "default" not in spec:
            continue
        default = spec["default"]
        if default is None:
            if name in result and result[name] is None:
                del result[name]
        elif name not in result:
            result[name] = copy.deepcopy(default)
    return result


def _normalise(value: Any, depth: int = 0) -> Any:
    """``value`` with every number in its one canonical form; refuses what JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a JSON number")
        if value.is_integer() and abs(value) <= _MAX_EXACT_INTEGRAL_FLOAT:
            return int(value)
        return value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, Mapping):
        return {key: _normalise(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item, depth + 1) for item in value]
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The one UTF-8 JSON encoding of ``value``, so equal requests give equal bytes.

    orjson's ``OPT_SORT_KEYS`` compares keys as UTF-8 bytes, which is code point order.
    Raises ``ValueError`` for NaN, Infinity or too deep nesting and ``TypeError`` for non-JSON
    values, non-string keys or ints beyond 64 bits (``orjson.loads`` never produces those).
    """
    return orjson.dumps(_normalise(value), option=orjson.OPT_SORT_KEYS)


def request_identity(
    api: str, target: str, body: dict[str, Any], schema: Mapping[str, Any] | None = None
) -> str:
    """Hex SHA-256 naming the work a request asks for; equal exactly when the work is the same.

    ``api`` and ``target`` are length-prefixed so ``("a", "b/c")`` and ``("a/b", "c")`` cannot
    collide; the canonical body goes last. Webhook fields are dropped after defaults are applied,
    so even a schema that declares a webhook default cannot make them part of the identity.
    """
    filled = apply_defaults(body, schema)
    payload = canonical_json({k: v for k, v in filled.items() if k not in WEBHOOK_FIELDS})
    digest = hashlib.sha256(_IDENTITY_VERSION)
    for part in (api, target):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    digest.update(payload)
    return digest.hexdigest()

"""The identity of a request, so that the same generation is only paid for once.

Two requests are the same request when RunComfy would do the same work for both. The identity
is a keyed hash (HMAC-SHA256 under a secret the gateway creates once and keeps in Redis, so
nobody outside can recompute a prompt's fingerprint) over the API (``model`` or ``serverless``),
the target (model id or deployment id) and a canonical form of the body, built by these rules:

* The body is what RunComfy acts on: parsed as Python's ``json`` module parses it, so integers
  of any size are exact (``2**64`` and ``2**64 + 1`` differ) and of an object key written twice
  the last value counts (:func:`gateway.common.jsonutil.read_json_object`).
* Webhook fields (``webhook``, ``webhook_intermediate_status``) are dropped from the top level:
  they say where to report, not what to generate.
* When the target's input schema is known, absent top-level properties are filled with their
  schema defaults, because RunComfy would use them. A ``null`` default is never filled in, and an
  explicit ``null`` for a property whose default is ``null`` is dropped: absent, ``null`` and the
  default are one request. With no usable schema the body is taken as sent.
* Object keys are sorted by code point; array order is kept; whitespace and escapes do not count.
* Numbers have one form: an integral float that a double holds exactly (``1.0``, at most
  ``2**53``) is the int ``1``; other floats are written as Python's shortest round-trip ``repr``;
  integers exactly, in decimal. Booleans stay booleans, so ``true`` is never ``1``. NaN and
  Infinity are not JSON and are refused.
* Strings are compared exactly: no case folding and no Unicode normalisation, because a model may
  see ``é`` precomposed and decomposed differently.
* Bodies nested deeper than :data:`gateway.common.jsonutil.MAX_JSON_DEPTH` are refused
  (``ValueError``) rather than recursed into; the gateway refuses such bodies before they get here.

Everything else counts: any changed value, added key or removed non-default key is a new request.

The canonical encoding is written here, not by a JSON library, so that replicas running
different library versions always agree; ``tests/golden/identities.json`` pins it, and any
change to these rules or to the encoding bumps :data:`_IDENTITY_VERSION`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import math
from collections.abc import Mapping
from typing import Any

from gateway.common.jsonutil import MAX_JSON_DEPTH

WEBHOOK_FIELDS: frozenset[str] = frozenset({"webhook", "webhook_intermediate_status"})

# Bump when the rules above or the encoding change, so identities made under old rules can
# never match new ones (tests/golden/identities.json holds the version its identities are of).
_IDENTITY_VERSION = b"runcomfy-gateway/request-identity/v2"
_MAX_EXACT_INTEGRAL_FLOAT = 2**53
# JSON's mandatory escapes only (the quote, the backslash and the C0 controls), short forms
# where JSON has them.
_ESCAPES: dict[int, str] = (
    {i: f"\\u{i:04x}" for i in range(0x20)}
    | {ord(c): "\\" + e for c, e in zip("\b\f\n\r\t", "bfnrt", strict=True)}
    | {ord('"'): '\\"', ord("\\"): "\\\\"}
)
SECRET_BYTES = 32


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


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number")
    if value.is_integer() and abs(value) <= _MAX_EXACT_INTEGRAL_FLOAT:
        return str(int(value))
    return repr(value)


def _encode(value: Any, out: list[str], depth: int) -> None:
    """Append the canonical text of ``value`` to ``out``."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append('"' + value.translate(_ESCAPES) + '"')
    elif isinstance(value, Mapping | list | tuple):
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, Mapping):
            out.append("{")
            for i, key in enumerate(sorted(value)):
                if not isinstance(key, str):
                    raise TypeError(f"object keys must be strings, not {type(key).__name__}")
                out.append(',"' if i else '"')
                out.append(key.translate(_ESCAPES))
                out.append('":')
                _encode(value[key], out, depth + 1)
            out.append("}")
        else:
            out.append("[")
            for i, item in enumerate(value):
                if i:
                    out.append(",")
                _encode(item, out, depth + 1)
            out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The one UTF-8 JSON encoding of ``value``, so equal requests give equal bytes.

    Python sorts ``str`` keys by code point. Raises ``ValueError`` for NaN, Infinity or too deep
    nesting and ``TypeError`` for non-JSON values or non-string keys.
    """
    out: list[str] = []
    _encode(value, out, 0)
    return "".join(out).encode("utf-8", "surrogatepass")


class RequestIdentity:
    """Names the work a request asks for under this gateway's secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the identity secret must be at least 16 bytes")
        self._secret = secret

    def __call__(
        self, api: str, target: str, body: dict[str, Any], schema: Mapping[str, Any] | None = None
    ) -> str:
        """Hex HMAC-SHA256 of the request's work; equal exactly when the work is the same.

        ``api`` and ``target`` are length-prefixed so ``("a", "b/c")`` and ``("a/b", "c")``
        cannot collide; the canonical body goes last. Webhook fields are dropped after defaults
        are applied, so even a schema that declares a webhook default cannot make them part of
        the identity.
        """
        filled = apply_defaults(body, schema)
        payload = canonical_json({k: v for k, v in filled.items() if k not in WEBHOOK_FIELDS})
        mac = hmac.new(self._secret, _IDENTITY_VERSION, hashlib.sha256)
        for part in (api, target):
            encoded = part.encode()
            mac.update(len(encoded).to_bytes(8, "big"))
            mac.update(encoded)
        mac.update(payload)
        return mac.hexdigest()

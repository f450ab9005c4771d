"""The golden request identities (``tests/golden/identities.json``): raw bodies and the identity
each must have, under a fixed test secret.

A replica must name a request exactly as every other replica does, whatever library versions it
runs, or identical requests stop sharing one job. The file pins the identities; when a change of
the rules or the encoding is deliberate, bump ``gateway.jobs.canonical._IDENTITY_VERSION`` and
rewrite the file with ``python -m tests.golden_identities``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.common.jsonutil import parse_json_object
from gateway.jobs.canonical import _IDENTITY_VERSION, RequestIdentity

GOLDEN = Path(__file__).parent / "golden" / "identities.json"
SECRET = b"golden-identity-secret/0123456789abcdef"
NANO = "google/nano-banana/pro/text-to-image"
SCHEMAS: dict[str, Any] = {
    "nano": {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "default": "A pair of mannequin legs"},
            "aspect_ratio": {"type": "string", "default": "16:9"},
            "resolution": {"type": "string", "default": "1K"},
            "seed": {"type": "integer", "default": None},
        },
    }
}
# (api, target, schema name or None, raw body): each a rule the identity must keep.
BODIES: list[tuple[str, str, str | None, str]] = [
    ("model", NANO, None, '{"prompt": "a red fox"}'),
    ("model", NANO, "nano", '{"prompt": "a red fox"}'),
    ("model", NANO, "nano", '{"resolution":"1K","prompt":"a red fox","aspect_ratio":"16:9"}'),
    ("model", NANO, "nano", '{"prompt": "a red fox", "seed": null}'),
    ("model", NANO, None, '{"seed": 18446744073709551615}'),
    ("model", NANO, None, '{"seed": 18446744073709551616}'),
    ("model", NANO, None, '{"seed": 18446744073709551617}'),
    ("model", NANO, None, '{"seed": -9223372036854775809}'),
    ("model", NANO, None, '{"seed": 123456789012345678901234567890}'),
    ("model", NANO, None, '{"seed": 1e20}'),
    ("model", NANO, None, '{"seed": 100000000000000000000}'),
    ("model", NANO, None, '{"seed": 1.0, "n": -0.0, "m": 9007199254740992.0}'),
    ("model", NANO, None, '{"x": 9007199254740994.0}'),
    ("model", NANO, None, '{"x": [0.1, 1e-7, 5e-324, 1.7976931348623157e308, 1e300, 1e16]}'),
    ("model", NANO, None, '{"x": [123456789.123456789, 2.5e-5, 0.000001, 1e22, 1e21]}'),
    ("model", NANO, None, '{"x": [true, false, null, 1, "1", [], {}]}'),
    ("model", NANO, None, r'{"prompt": "caf\u00e9 \ud83e\udd8a \"q\" \\ \n\t\u0001\u007f"}'),
    ("model", NANO, None, '{"prompt": "café"}'),
    ("model", NANO, None, '{"prompt": "cafe\\u0301"}'),
    ("model", NANO, None, '{"prompt": "\\u2028\\u2029\\ufeff"}'),
    ("model", NANO, None, '{"b": 1, "a": {"z": [3, 2, 1], "\\u00e9": 1, "Z": 2, "": 3}}'),
    ("model", NANO, None, '{"prompt": "first", "prompt": "last"}'),
    ("model", NANO, None, '{"prompt": "x", "webhook": "https://example.com/h"}'),
    ("model", "a/b", None, '{"c": 1}'),
    ("model", "a", None, '{"c": 1}'),
    ("serverless", "2b3c0d5e-deployment", None, '{"overrides": {"6": {"inputs": {"seed": 7}}}}'),
]


def identity_of(api: str, target: str, schema: str | None, body: str) -> str:
    identity = RequestIdentity(SECRET)
    parsed = parse_json_object(body.encode())
    return identity(api, target, parsed, SCHEMAS[schema] if schema else None)


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return loaded


def main() -> None:
    cases = [
        {"api": a, "target": t, "schema": s, "body": b, "identity": identity_of(a, t, s, b)}
        for a, t, s, b in BODIES
    ]
    document = {"version": _IDENTITY_VERSION.decode(), "cases": cases}
    GOLDEN.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} identities to {GOLDEN}")


if __name__ == "__main__":
    main()

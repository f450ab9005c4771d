"""Fault rules: make chosen routes fail the ways a real upstream does, a set number of times.

A rule names a route (or an ``fnmatch`` pattern such as ``*`` or ``serverless.*``) and an action:

- ``status``: answer ``status`` (default 500) in RunComfy's error shape, or with ``body`` if given
  (a string is sent raw, anything else as JSON);
- ``delay``: sleep ``delay`` seconds, then answer normally (or as ``status`` if one is given);
  with ``"after": true`` the call is handled first (a submit starts its job, whatever happens to
  the connection) and only the answer is late: the classic "outcome unknown" of a timed-out
  submit;
- ``drop``: close the connection without answering (the client sees a disconnect);
- ``invalid_json``: answer 200 (or ``status``) with ``Content-Type: application/json`` and a
  body that does not parse (or ``body`` if given as a string).

Any rule may carry ``delay`` (slept first) and ``headers``. ``times`` (default 1, ``null`` for
ever) says how many matching calls it hits; the first matching live rule wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, cast

import orjson
from aiohttp import web

from gateway.simulator.errors import ApiFamily, default_error_code, error_body, validation_failed
from gateway.simulator.jsonio import JSON_CONTENT_TYPE
from gateway.simulator.validation import make_validator, schema_errors

FaultAction = Literal["status", "delay", "drop", "invalid_json"]
INVALID_JSON_BODY = b'{"request_id": "7c0a3f9e-truncated'
"""What ``invalid_json`` sends by default: looks like JSON, labelled JSON, does not parse."""

_RULE_VALIDATOR = make_validator(
    {
        "type": "object",
        "required": ["route", "action"],
        "additionalProperties": False,
        "properties": {
            "route": {"type": "string", "minLength": 1},
            "action": {"enum": ["status", "delay", "drop", "invalid_json"]},
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "body": {},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "delay": {"type": "number", "minimum": 0},
            "times": {"type": ["integer", "null"], "minimum": 1},
            "after": {"type": "boolean"},
        },
    }
)


@dataclass(slots=True)
class FaultRule:
    """One armed fault; ``times`` counts down, ``None`` means it never runs out."""

    route: str
    action: FaultAction
    status: int | None = None
    body: Any = None
    has_body: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int | None = 1
    after: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FaultRule:
        """A rule from its JSON form (already validated)."""
        return cls(
            route=raw["route"],
            action=cast(FaultAction, raw["action"]),
            status=raw.get("status"),
            body=raw.get("body"),
            has_body="body" in raw,
            headers=dict(raw.get("headers", {})),
            delay=float(raw.get("delay", 0.0)),
            times=raw.get("times", 1),
            after=bool(raw.get("after", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """How ``GET /_sim/faults`` shows the rule."""
        shown: dict[str, Any] = {"route": self.route, "action": self.action, "times": self.times}
        if self.status is not None:
            shown["status"] = self.status
        if self.has_body:
            shown["body"] = self.body
        if self.headers:
            shown["headers"] = self.headers
        if self.delay:
            shown["delay"] = self.delay
        if self.after:
            shown["after"] = True
        return shown

    def response(self, family: ApiFamily) -> web.Response:
        """The answer for ``status``, ``invalid_json`` and ``delay`` with a status."""
        if self.action == "invalid_json":
            status = self.status or 200
            raw = self.body.encode() if isinstance(self.body, str) else INVALID_JSON_BODY
        else:
            status = self.status or 500
            if not self.has_body:
                message = f"Simulated upstream failure (HTTP {status})."
                raw = orjson.dumps(error_body(default_error_code(status, family), message))
            elif isinstance(self.body, str):
                raw = self.body.encode()
            else:
                raw = orjson.dumps(self.body)
        return web.Response(
            body=raw, status=status, content_type=JSON_CONTENT_TYPE, headers=self.headers
        )


def parse_rules(payload: Any) -> list[FaultRule]:
    """Rules from a JSON object or list, or a 422 pointing at the bad one."""
    items = payload if isinstance(payload, list) else [payload]
    details: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        details += schema_errors(_RULE_VALIDATOR, item, root=f"body[{index}]")
    if details:
        raise validation_failed("Invalid fault rule.", details)
    return [FaultRule.parse(item) for item in items]


class FaultBook:
    """The armed rules, in the order they were added."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rules: list[FaultRule]) -> None:
        """Arm more rules after the existing ones."""
        self.rules.extend(rules)

    def take(self, route: str) -> FaultRule | None:
        """The first live rule for ``route``, used up by one; None if the call goes through."""
        for rule in self.rules:
            if fnmatchcase(route, rule.route):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    def clear(self) -> None:
        """Disarm everything."""
        self.rules.clear()

    def to_json(self) -> list[dict[str, Any]]:
        """The live rules."""
        return [rule.to_json() for rule in self.rules]

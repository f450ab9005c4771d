"""The shape every script contract shares: a frozen dataclass of a script's arguments, whose
fields are its KEYS and ARGV in the order (and under the names) of the locals at the top of its
``.lua`` file, and a reply type whose ``parse`` names every element of the raw reply.

A field made by :func:`key` is one of KEYS, any other field one of ARGV; ``rest=True`` marks a
trailing variadic tuple (``local x = {unpack(KEYS, n)}`` in Lua). Values go over the wire as the
clients encode them, except that ``True``/``False`` become ``1``/``0``, ``None`` becomes ``''``
(the scripts' "none") and an enum its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import Field, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

R = TypeVar("R")
Wire = str | int | float | bytes
Value = Wire | bool | Enum | None

KEY = "key"
REST = "rest"


def key(*, rest: bool = False) -> Any:
    """A field that is one of KEYS (``rest``: the trailing ones, as a tuple)."""
    return field(metadata={KEY: True, REST: rest})


def rest() -> Any:
    """The trailing ARGV, as a tuple (field, value pairs mostly)."""
    return field(metadata={KEY: False, REST: True})


def is_key(f: Field[Any]) -> bool:
    return bool(f.metadata.get(KEY, False))


def is_rest(f: Field[Any]) -> bool:
    return bool(f.metadata.get(REST, False))


_PLAIN = (str, int, float, bytes)
# Per arguments class: (name, is_rest) of its KEYS fields and of its ARGV fields, read from the
# dataclass once. Every request builds a script's arguments; walking ``fields()`` and their
# metadata each time cost the hit path about a tenth of its CPU.
_Plan = tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        all_fields = fields(cls)
        plan = (
            tuple((f.name, is_rest(f)) for f in all_fields if is_key(f)),
            tuple((f.name, is_rest(f)) for f in all_fields if not is_key(f)),
        )
        _PLANS[cls] = plan
    return plan


def _wire(value: Value) -> Wire:
    """A value that is not plain (``_values`` sends those as they are)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Enum):
        return str(value.value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptArgs(Generic[R]):
    """The arguments of one script; subclasses name the script and parse its reply."""

    script: ClassVar[str]

    def _values(self, keys: bool) -> list[Wire]:
        out: list[Wire] = []
        plain = _PLAIN
        for name, trailing in _plan(type(self))[0 if keys else 1]:
            value = getattr(self, name)
            if trailing:
                out += [v if type(v) in plain else _wire(v) for v in value]
            elif type(value) in plain:  # most values: sent as they are (a bool's type is bool)
                out.append(value)
            else:
                out.append(_wire(value))
        return out

    def keys(self) -> list[Wire]:
        return self._values(keys=True)

    def argv(self) -> list[Wire]:
        return self._values(keys=False)

    def parse_reply(self, raw: Any) -> R:
        raise NotImplementedError


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A hash from a flat field/value reply (a script's, or HGETALL's over the pipelined
    connection; strings, as both clients decode replies)."""
    items = iter(flat)
    return {str(k): str(v) for k, v in zip(items, items, strict=True)}


@dataclass(frozen=True, slots=True)
class Done:
    """The reply of a script that always answers 1."""

    @classmethod
    def parse(cls, raw: Any) -> Done:
        return cls()

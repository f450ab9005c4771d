"""The shape every script contract shares: a frozen dataclass of a script's arguments, whose
fields are its KEYS and ARGV in the order (and under the names) of the locals at the top of its
``.lua`` file, and a reply type whose ``parse`` names every element of the raw reply.

A field made by :func:`key` is one of KEYS, any other field one of ARGV; ``rest=True`` marks a
trailing variadic tuple (``local x = {unpack(KEYS, n)}`` in Lua). Values go over the wire as the
clients encode them, except that ``True``/``False`` become ``1``/``0``, ``None`` becomes ``''``
(the scripts' "none") and an enum its value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import Field, field, fields
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from gateway.common.records import record

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
Encoder = Callable[[Any], list[Wire]]
# Per arguments class: a function for its KEYS and one for its ARGV, written out field by field
# the first time the class is used (as dataclasses write ``__init__``). Every request builds a
# script's arguments: walking ``fields()`` each time cost the hit path about a tenth of its CPU,
# and a loop of ``getattr`` over the names is a Python call and a branch per field.
_ENCODERS: dict[type, tuple[Encoder, Encoder]] = {}


def _encoder(names: list[tuple[str, bool]]) -> Encoder:
    """``[self.a if plain else wire(self.a), *[... for each of self.rest], ...]`` for ``names``
    (field names of a dataclass: identifiers, so safe to write into code)."""
    parts = [
        f"*[v if type(v) in plain else wire(v) for v in self.{name}]"
        if trailing
        else f"(v if type(v := self.{name}) in plain else wire(v))"
        for name, trailing in names
    ]
    namespace: dict[str, Any] = {"plain": _PLAIN, "wire": _wire}
    exec(f"def encode(self):\n    return [{', '.join(parts)}]\n", namespace)  # noqa: S102
    encode: Encoder = namespace["encode"]
    return encode


def _encoders(cls: type) -> tuple[Encoder, Encoder]:
    pair = _ENCODERS.get(cls)
    if pair is None:
        all_fields = fields(cls)
        pair = (
            _encoder([(f.name, is_rest(f)) for f in all_fields if is_key(f)]),
            _encoder([(f.name, is_rest(f)) for f in all_fields if not is_key(f)]),
        )
        _ENCODERS[cls] = pair
    return pair


def _wire(value: Value) -> Wire:
    """A value that is not plain (the encoders send those as they are)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Enum):
        return str(value._value_)  # not .value: a property, ~10x slower on the hot path
    return value


@record(kw_only=True)
class ScriptArgs(Generic[R]):
    """The arguments of one script; subclasses name the script and parse its reply."""

    script: ClassVar[str]

    def keys(self) -> list[Wire]:
        return _encoders(type(self))[0](self)

    def argv(self) -> list[Wire]:
        return _encoders(type(self))[1](self)

    def parse_reply(self, raw: Any) -> R:
        raise NotImplementedError


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A hash from a flat field/value reply: HGETALL's, or a script's made of HGETALL's and
    ``tostring`` values. Both clients decode replies to strings, so they are taken as they are
    (a status call reads ~40 pairs; converting each cost ~70 % more)."""
    if len(flat) % 2:
        raise ValueError(f"a field without its value in a reply of {len(flat)} elements")
    items = iter(flat)
    return dict(zip(items, items, strict=False))  # even: checked above


@record
class Done:
    """The reply of a script that always answers 1."""

    @classmethod
    def parse(cls, raw: Any) -> Done:
        return cls()

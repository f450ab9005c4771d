"""``@record``: an immutable record to the type checker, a plain slotted dataclass at run time.

A frozen dataclass assigns each field in ``__init__`` through ``object.__setattr__``, several
times the cost of a plain assignment: a job (31 fields) cost about 9 µs to build that way, and
the status path builds a job, a request record, a credential and a script's arguments on every
call. Records are never changed after they are built, and ``mypy --strict`` holds code to that
(``frozen_default``: an assignment to a field is an error there); at run time they are built
like any slotted dataclass. They hash by value, as frozen dataclasses do, and
:func:`dataclasses.replace` makes changed copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field
from typing import TypeVar, dataclass_transform, overload

T = TypeVar("T")


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(
    cls: type[T] | None = None, /, *, kw_only: bool = False
) -> type[T] | Callable[[type[T]], type[T]]:
    """``@record`` or ``@record(kw_only=True)`` on a class, like ``@dataclass(frozen=True,
    slots=True)``."""

    def make(klass: type[T]) -> type[T]:
        return dataclass(slots=True, kw_only=kw_only, unsafe_hash=True)(klass)

    return make if cls is None else make(cls)

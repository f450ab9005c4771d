"""From HTML forms to the admin API's JSON bodies, and its refusals back to the fields.

Forms send text; the API's own models parse it (``"60"`` is an integer to pydantic), so a
value is passed on as typed, and a wrong one gets the API's message next to its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multidict import MultiDictProxy

from gateway.common.errors import GatewayError


@dataclass
class Outcome:
    """What a change did, for the page that shows it: a message, or a refusal and the fields
    it names (field name -> the API's messages about it)."""

    message: str = ""
    error: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)


def refusal(
    exc: GatewayError,
    aliases: dict[str, str] | None = None,
    paths: dict[tuple[str, ...], str] | None = None,
) -> Outcome:
    """The API's refusal as an :class:`Outcome`: each detail with a ``loc`` goes to the field it
    names (``aliases`` maps an API field to the form's; ``paths`` a nested one, such as
    ``("keys", key_id, "daily_requests")``, whose message then names no path), the rest stays
    general."""
    outcome = Outcome(error=exc.message)
    details = exc.detail if isinstance(exc.detail, list) else [exc.detail] if exc.detail else []
    for item in details:
        if isinstance(item, dict) and item.get("loc"):
            loc = tuple(str(part) for part in item["loc"])
            msg = str(item.get("msg", ""))
            nested = next((p for p in (paths or {}) if loc[: len(p)] == p), None)
            if nested is not None:
                name, rest = (paths or {})[nested], loc[len(nested) :]
                text = f"{'.'.join(rest)}: {msg}" if rest else msg
            else:
                name = (aliases or {}).get(loc[0], loc[0])
                text = f"{'.'.join([name, *loc[1:]])}: {msg}" if len(loc) > 1 else msg
            outcome.fields.setdefault(name, []).append(text)
        else:
            outcome.other.append(str(item.get("msg", item) if isinstance(item, dict) else item))
    return outcome


def text(form: MultiDictProxy[str], name: str) -> str | None:
    """A text field, stripped; None when empty (the API's "not set")."""
    value = str(form.get(name, "")).strip()
    return value or None


def listed(form: MultiDictProxy[str], name: str) -> list[str] | None:
    """A comma- or line-separated list; None when empty."""
    raw = str(form.get(name, "")).replace("\n", ",")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return items or None


def seconds(form: MultiDictProxy[str], name: str, unit: int) -> int | str | None:
    """A count of ``unit`` seconds (days, hours) as seconds; text the API will refuse as is."""
    value = text(form, name)
    if value is None:
        return None
    try:
        return int(float(value) * unit)
    except ValueError:
        return value


def body_of(form: MultiDictProxy[str], names: tuple[str, ...]) -> dict[str, Any]:
    """The named text fields, those left empty omitted."""
    return {name: value for name in names if (value := text(form, name)) is not None}

"""JSON Schema validation with RunComfy's dialect, reported as FastAPI-style ``detail`` entries.

RunComfy's model schemas are not strict JSON Schema: numbers may be typed ``"float"``, media
inputs carry formats such as ``image_uri``/``image_uris`` and unknown keys such as
``validations``, and a property whose default is ``null`` accepts ``null``. The schema served
to clients stays verbatim; :func:`normalise_schema` derives the one actually validated against.
"""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.protocols import Validator

_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {
        "float": lambda checker, instance: checker.is_type(instance, "number"),
        "int": lambda checker, instance: checker.is_type(instance, "integer"),
    }
)

RunComfyValidator = validators.extend(  # type: ignore[no-untyped-call]  # untyped in stubs
    Draft202012Validator, type_checker=_TYPE_CHECKER
)
"""Draft 2020-12 plus RunComfy's ``float``/``int`` type names; formats are not asserted."""


def normalise_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a model's input schema that :data:`RunComfyValidator` reads as intended."""
    normalised = copy.deepcopy(schema)
    for prop in normalised.get("properties", {}).values():
        if not isinstance(prop, dict):
            continue
        declared = prop.get("type")
        if "default" in prop and prop["default"] is None and isinstance(declared, str):
            prop["type"] = [declared, "null"]
        fmt = prop.get("format")
        if declared == "array" and isinstance(fmt, str) and fmt.endswith("_uris"):
            prop.setdefault("items", {"type": "string"})
    return normalised


def make_validator(schema: dict[str, Any]) -> Validator:
    """A validator for an already normalised schema."""
    validator: Validator = RunComfyValidator(schema)
    return validator


def schema_errors(validator: Validator, instance: Any, root: str = "body") -> list[dict[str, Any]]:
    """Every problem with ``instance``, one ``{"loc", "msg", "type"}`` entry per field."""
    details: list[dict[str, Any]] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        loc: list[str | int] = [root, *error.path]
        required = error.validator_value
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in required if isinstance(required, list) else []:
                entry = {"loc": [*loc, name], "msg": "Field required", "type": "missing"}
                if name not in error.instance and entry not in details:
                    details.append(entry)
            continue
        details.append({"loc": loc, "msg": error.message, "type": str(error.validator)})
    return details

"""The simulated model catalog: entries served by ``/v1/models`` and what a job on each costs.

Entries live in ``catalog.json`` in RunComfy's public shape, plus a ``simulator`` block (never
served) saying which output key a model answers with and which input counts outputs or seconds,
so costs follow RunComfy's rule: ``base_price_usd`` per output, or per second of media.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
from jsonschema.protocols import Validator

from gateway.simulator.errors import not_found
from gateway.simulator.validation import make_validator, normalise_schema, schema_errors

OutputKey = Literal["image", "images", "video", "videos", "audio"]
_OUTPUT_KEYS: frozenset[str] = frozenset({"image", "images", "video", "videos", "audio"})
_EXTENSIONS = {
    **{"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp"},
    **{"mp3": "mp3", "wav": "wav", "flac": "flac", "mp4": "mp4", "mov": "mov"},
}
"""``output_format`` values and the file extension their URLs end in."""
MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model: its public entry plus what the simulator needs to run it."""

    entry: dict[str, Any]
    validator: Validator
    output: OutputKey
    extension: str
    count_param: str | None
    duration_param: str | None
    queue_seconds: float | None
    run_seconds: float | None

    @property
    def model_id(self) -> str:
        """The id clients submit to, slashes included."""
        return str(self.entry["model_id"])

    @property
    def price_micro(self) -> int:
        """``base_price_usd`` in micro-dollars, so costs add up without float drift."""
        return round(float(self.entry["base_price_usd"]) * MICRO)

    def public(self, *, include_schema: bool) -> dict[str, Any]:
        """The entry as the catalog endpoints serve it."""
        if include_schema:
            return dict(self.entry)
        return {k: v for k, v in self.entry.items() if k != "input_schema"}

    def validate(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``detail`` entries for every way ``body`` breaks the input schema (empty if none)."""
        return schema_errors(self.validator, body)

    def _input(self, body: dict[str, Any], name: str) -> Any:
        """An input as the model sees it: the caller's value, else the schema default."""
        if body.get(name) is not None:
            return body[name]
        return self.entry["input_schema"].get("properties", {}).get(name, {}).get("default")

    def units(self, body: dict[str, Any]) -> float:
        """How many priced units a job with ``body`` produces: outputs or seconds."""
        param = self.duration_param if self.entry["price_unit"] == "second" else self.count_param
        if param is None:
            return 1.0
        try:
            value = float(self._input(body, param))
        except (TypeError, ValueError):
            return 1.0
        return value if math.isfinite(value) and value > 0 else 1.0

    def cost_micro(self, body: dict[str, Any]) -> int:
        """What a successful job with ``body`` costs."""
        return round(self.price_micro * self.units(body))

    def outputs(self, body: dict[str, Any], request_id: str, asset_base_url: str) -> dict[str, Any]:
        """The ``output`` object of a succeeded result, on RunComfy's asset host."""
        fmt = self._input(body, "output_format")
        ext = _EXTENSIONS.get(str(fmt).lower(), self.extension) if fmt else self.extension
        count = max(1, int(self.units(body))) if self.count_param else 1
        base = asset_base_url.rstrip("/")
        urls = [f"{base}/model-api/{request_id}/output-{i}.{ext}" for i in range(count)]
        return {self.output: urls if self.output.endswith("s") else urls[0]}


def _model_from_entry(raw: dict[str, Any]) -> CatalogModel:
    """Split one catalog.json entry into its public part and its simulator hints."""
    entry = {k: v for k, v in raw.items() if k != "simulator"}
    hints: dict[str, Any] = raw.get("simulator", {})
    output = hints.get("output") or _output_from_categories(entry.get("categories", []))
    if output not in _OUTPUT_KEYS:
        raise ValueError(f"{entry.get('model_id')}: unknown output key {output!r}")
    return CatalogModel(
        entry=entry,
        validator=make_validator(normalise_schema(entry["input_schema"])),
        output=output,
        extension=str(hints.get("extension", "mp4" if output.startswith("video") else "png")),
        count_param=hints.get("count_param"),
        duration_param=hints.get("duration_param"),
        queue_seconds=hints.get("queue_seconds"),
        run_seconds=hints.get("run_seconds"),
    )


def _output_from_categories(categories: Iterable[str]) -> OutputKey:
    """RunComfy's convention: a category ending in video/audio names the output type."""
    for category in categories:
        if category.endswith("video"):
            return "video"
        if category.endswith("audio"):
            return "audio"
    return "image"


class Catalog:
    """All models, in file order (which is the order ``/v1/models`` pages through)."""

    def __init__(self, models: Iterable[CatalogModel]) -> None:
        self._models = {model.model_id: model for model in models}

    @classmethod
    def load(cls, path: str | None = None) -> Catalog:
        """The bundled catalog, or the one at ``path``."""
        if path is None:
            raw = resources.files("gateway.simulator").joinpath("catalog.json").read_bytes()
        else:
            raw = Path(path).read_bytes()
        return cls(_model_from_entry(entry) for entry in orjson.loads(raw)["models"])

    def get(self, model_id: str) -> CatalogModel:
        """The model, or a 404 404001 naming it."""
        try:
            return self._models[model_id]
        except KeyError:
            raise not_found(f"Model not found: {model_id}", {"model_id": model_id}) from None

    def search(
        self, *, search: str | None, category: str | None, kind: str | None
    ) -> list[CatalogModel]:
        """Models matching every given filter; ``search`` is a case-insensitive substring."""
        needle = (search or "").strip().lower()
        found = []
        for model in self._models.values():
            entry = model.entry
            if category and category not in entry.get("categories", []):
                continue
            if kind and entry.get("kind") != kind:
                continue
            haystack = " ".join(
                str(entry.get(k, "")) for k in ("model_id", "display_name", "description")
            )
            if needle and needle not in haystack.lower():
                continue
            found.append(model)
        return found

    def categories(self) -> list[str]:
        """Every category used by some model, sorted."""
        return sorted({c for m in self._models.values() for c in m.entry.get("categories", [])})

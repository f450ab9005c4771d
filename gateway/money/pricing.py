"""What a request will cost, estimated before it runs, so a budget can reserve it at admission.

RunComfy bills the Model API per output or per second of media (the catalog's ``base_price_usd``
times the units the request asks for) and Serverless per GPU-second. The estimate applies the
same rule to the request body. Where the catalog's flat price is not the whole story (a 4K option
that costs more, a duration the schema does not name, a deployment's GPU rate, which RunComfy
does not publish), admins set overrides, kept in Redis and reused by every replica for at most
``GATEWAY_PRICING_CACHE_SECONDS``.

The reservation is settled later to what RunComfy actually charged, so an estimate only has to be
close. It never invents a price, though: an unknown model, a deployment without a rate or a
catalog that cannot be read give ``micro=0`` with ``source="unknown"``, and admission decides.

Money is integer micro-dollars (1 USD = 1,000,000), converted and multiplied by the rules of
:mod:`gateway.money.amounts`.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from typing import Any, Literal

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from gateway.common.errors import GatewayError, UpstreamClientError
from gateway.common.records import record
from gateway.money.amounts import MICRO, scale_micro, settle_serverless_micro, usd_to_micro
from gateway.store.client import Store
from gateway.store.layout import Layout
from gateway.upstream.apis import Api
from gateway.upstream.catalog import Catalog

log = structlog.get_logger(__name__)

COUNT_PARAMS = (
    "num_images",
    "num_outputs",
    "num_videos",
    "num_samples",
    "number_of_images",
    "batch_size",
    "n",
)
"""Inputs that say how many outputs a request asks for, most specific first."""
DURATION_PARAMS = (
    "duration",
    "duration_seconds",
    "video_duration",
    "audio_duration",
    "length_seconds",
    "seconds",
)
"""Inputs that say how many seconds of media a request asks for."""
FALLBACK_SECONDS = 10.0
"""Seconds assumed for a per-second model whose request, schema and override name no duration."""
# No estimate exceeds $10M (the dearest deployment rate for a day is $8.64M): a request asking
# for 1e18 images must not overflow Redis's 64-bit counters or JSON's integers (it was a 500).
MAX_ESTIMATE_MICRO = 10_000_000 * MICRO
CATALOG_TTL = 600.0
"""How long a model's catalog price is reused; settlement corrects a price that changed since."""
CATALOG_RETRY = 30.0
"""How long a failed catalog read is remembered, so an outage does not slow every submit."""
_MAX_MODELS = 4096
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")

Unit = Literal["output", "second"]
Source = Literal["catalog", "override", "deployment", "unknown"]


@record
class Estimate:
    """A request's expected cost and how it was derived.

    ``micro`` is ``unit_price_micro`` times ``units``, rounded half up (:func:`scale_micro`). For
    a deployment, ``unit_price_micro`` is its rate per GPU-second: keep it to settle the job
    with :func:`settle_serverless_micro`.
    """

    micro: int
    unit_price_micro: int
    units: float
    unit: Unit | None
    source: Source
    notes: tuple[str, ...] = ()

    @classmethod
    def unknown(cls, why: str) -> Estimate:
        """No price is known: zero, saying why."""
        return cls(0, 0, 0.0, None, "unknown", (why,))

    def to_json(self) -> dict[str, Any]:
        """The estimate as error details and the usage API show it."""
        return {
            "micro": self.micro,
            "unit_price_micro": self.unit_price_micro,
            "units": int(self.units)
            if float(self.units).is_integer() and self.units < 2**53
            else self.units,
            "unit": self.unit,
            "source": self.source,
            "notes": list(self.notes),
        }


# --- what an admin sets ------------------------------------------------------------------------

_Value = StrictStr | StrictInt | StrictFloat | StrictBool


class PriceRule(BaseModel):
    """When input ``param`` equals ``equals``, replace the unit price or multiply it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    param: str = Field(min_length=1, max_length=100)
    equals: _Value
    unit_price_usd: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    multiplier: float | None = Field(default=None, ge=0, le=1_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_effect(self) -> PriceRule:
        if (self.unit_price_usd is None) == (self.multiplier is None):
            raise ValueError("set exactly one of unit_price_usd and multiplier")
        return self


class ModelPrice(BaseModel):
    """An admin's correction of one model's catalog price; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit_price_usd: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    price_unit: Unit | None = None
    units_param: str | None = Field(default=None, min_length=1, max_length=100)
    default_units: float | None = Field(default=None, gt=0, le=1_000_000, allow_inf_nan=False)
    rules: tuple[PriceRule, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _not_empty(self) -> ModelPrice:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError("set at least one field (an empty override changes nothing)")
        return self


class DeploymentPrice(BaseModel):
    """A deployment's GPU rate and how long its jobs are expected to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    usd_per_second: float = Field(ge=0, le=100, allow_inf_nan=False)
    estimated_seconds: float = Field(gt=0, le=86_400, allow_inf_nan=False)


@record
class PriceBook:
    """Every override, as stored in Redis."""

    models: dict[str, ModelPrice]
    deployments: dict[str, DeploymentPrice]

    def to_json(self) -> dict[str, Any]:
        return {
            "models": {k: v.model_dump(exclude_none=True) for k, v in sorted(self.models.items())},
            "deployments": {
                k: v.model_dump(exclude_none=True) for k, v in sorted(self.deployments.items())
            },
        }


# --- the estimator -----------------------------------------------------------------------------


@record
class CatalogPrice:
    """What the estimate needs from a model's catalog entry."""

    unit_price_micro: int
    unit: Unit
    properties: dict[str, Any]

    def input(self, body: dict[str, Any], name: str) -> Any:
        """An input as the model sees it: the caller's value, else the schema default."""
        if body.get(name) is not None:
            return body[name]
        spec = self.properties.get(name)
        return spec.get("default") if isinstance(spec, dict) else None


@record
class _Cached:
    expires: float
    value: CatalogPrice | str  # a reason when the model has no usable price


class Pricing:
    """Estimates from the catalog and the admins' overrides; stores the overrides."""

    def __init__(
        self, redis: Store, layout: Layout, catalog: Catalog, cache_seconds: float
    ) -> None:
        self._redis = redis
        self._key = layout.pricing()
        self._catalog = catalog
        self._cache_seconds = cache_seconds
        self._book: tuple[float, PriceBook] | None = None
        self._writes = 0  # a read that overlapped a write of this replica must not be cached
        self._prices: OrderedDict[str, _Cached] = OrderedDict()

    async def estimate(self, api: Api, target: str, body: dict[str, Any]) -> Estimate:
        """What a submit of ``body`` to ``target`` should cost.

        A missing price is an ``unknown`` estimate, never an error; only a Redis failure raises.
        """
        book = await self._cached_book()
        if api is Api.SERVERLESS:
            deployment = book.deployments.get(target)
            if deployment is None:
                return Estimate.unknown("no rate set for this deployment")
            return _deployment_estimate(deployment)
        price = await self._catalog_price(target)
        if isinstance(price, str):
            return Estimate.unknown(price)
        return _model_estimate(price, book.models.get(target), body)

    # -- overrides ------------------------------------------------------------------------------

    async def price_book(self) -> PriceBook:
        """Every override, read from Redis now (not the cached copy)."""
        writes = self._writes
        raw = await self._redis.hgetall(self._key)
        models: dict[str, ModelPrice] = {}
        deployments: dict[str, DeploymentPrice] = {}
        for field, value in raw.items():
            kind, _, name = str(field).partition(":")
            try:
                if kind == "model":
                    models[name] = ModelPrice.model_validate_json(value)
                elif kind == "deployment":
                    deployments[name] = DeploymentPrice.model_validate_json(value)
            except ValidationError:
                # Written by another version of the gateway: skip it rather than fail admission.
                log.warning("price_override_unreadable", field=field)
        book = PriceBook(models, deployments)
        if writes == self._writes:
            self._book = (time.monotonic() + self._cache_seconds, book)
        return book

    async def set_model_price(self, model_id: str, price: ModelPrice) -> None:
        """Replace a model's override."""
        await self._write(f"model:{model_id}", price.model_dump_json(exclude_none=True))

    async def clear_model_price(self, model_id: str) -> bool:
        """Drop a model's override; False if it had none."""
        return await self._delete(f"model:{model_id}")

    async def set_deployment_price(self, deployment_id: str, price: DeploymentPrice) -> None:
        """Replace a deployment's rate."""
        await self._write(f"deployment:{deployment_id}", price.model_dump_json())

    async def clear_deployment_price(self, deployment_id: str) -> bool:
        """Drop a deployment's rate; False if it had none."""
        return await self._delete(f"deployment:{deployment_id}")

    async def _write(self, field: str, value: str) -> None:
        await self._redis.hset(self._key, field, value)
        self._forget_book()

    async def _delete(self, field: str) -> bool:
        removed: int = await self._redis.hdel(self._key, field)
        self._forget_book()
        return removed > 0

    def _forget_book(self) -> None:
        """This replica uses its own change at once; the others within the cache bound."""
        self._book = None
        self._writes += 1

    async def _cached_book(self) -> PriceBook:
        if self._book is not None and self._book[0] > time.monotonic():
            return self._book[1]
        return await self.price_book()

    # -- catalog --------------------------------------------------------------------------------

    def catalog_price_cached(self, model_id: str) -> bool:
        """Whether an estimate for this model needs no catalog read now."""
        cached = self._prices.get(model_id)
        return cached is not None and cached.expires > time.monotonic()

    async def _catalog_price(self, model_id: str) -> CatalogPrice | str:
        """The model's catalog price, or why there is none; the last known one during outages."""
        now = time.monotonic()
        cached = self._prices.get(model_id)
        if cached is not None and cached.expires > now:
            return cached.value
        value: CatalogPrice | str
        try:
            value = _catalog_price(await self._catalog.model(model_id))
            expires = now + CATALOG_TTL
        except GatewayError as exc:
            expires = now + CATALOG_RETRY
            if isinstance(exc, UpstreamClientError) and exc.status == 404:
                value = "model not in RunComfy's catalog"
            elif cached is not None and isinstance(cached.value, CatalogPrice):
                value = cached.value
            else:
                value = f"RunComfy's catalog is unavailable ({type(exc).__name__})"
            log.info("catalog_price_unavailable", model=model_id, error=type(exc).__name__)
        self._prices[model_id] = _Cached(expires, value)
        self._prices.move_to_end(model_id)
        while len(self._prices) > _MAX_MODELS:
            self._prices.popitem(last=False)
        return value


def _catalog_price(entry: Any) -> CatalogPrice | str:
    """Read ``base_price_usd``, ``price_unit`` and the schema's properties from an entry."""
    if not isinstance(entry, dict):
        return "the catalog entry is not an object"
    usd = entry.get("base_price_usd")
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not 0 <= usd < math.inf:
        return "the catalog entry has no usable base_price_usd"
    schema = entry.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    unit: Unit = "second" if entry.get("price_unit") == "second" else "output"
    # A price above any estimate is capped like an estimate (usd_to_micro refuses huge amounts).
    micro = usd_to_micro(min(usd, MAX_ESTIMATE_MICRO // MICRO))
    return CatalogPrice(micro, unit, properties if isinstance(properties, dict) else {})


def _model_estimate(
    price: CatalogPrice, override: ModelPrice | None, body: dict[str, Any]
) -> Estimate:
    """Catalog price, corrected by the override's price and rules, times the units asked for."""
    unit_price, unit = price.unit_price_micro, price.unit
    notes: list[str] = []
    overridden = False
    if override is not None:
        if override.unit_price_usd is not None:
            unit_price, overridden = usd_to_micro(override.unit_price_usd), True
            notes.append("unit price set by the override")
        if override.price_unit is not None:
            unit, overridden = override.price_unit, True
        for rule in override.rules:
            value = price.input(body, rule.param)
            if value is None or _as_text(value) != _as_text(rule.equals):
                continue
            overridden = True
            if rule.unit_price_usd is not None:
                unit_price = usd_to_micro(rule.unit_price_usd)
                notes.append(f"rule {rule.param}={_as_text(value)}: unit price {unit_price} micro")
            elif rule.multiplier is not None:
                unit_price = scale_micro(unit_price, rule.multiplier, MAX_ESTIMATE_MICRO)
                notes.append(f"rule {rule.param}={_as_text(value)}: x{rule.multiplier:g}")
    units, how, units_overridden = _units(price, unit, override, body)
    notes.append(how)
    source: Source = "override" if overridden or units_overridden else "catalog"
    unit_price = min(unit_price, MAX_ESTIMATE_MICRO)
    total = scale_micro(unit_price, units, MAX_ESTIMATE_MICRO + 1)
    if total > MAX_ESTIMATE_MICRO:
        notes.append(f"capped at {MAX_ESTIMATE_MICRO // MICRO:,} USD")
        total = MAX_ESTIMATE_MICRO
    return Estimate(total, unit_price, units, unit, source, tuple(notes))


def _units(
    price: CatalogPrice, unit: Unit, override: ModelPrice | None, body: dict[str, Any]
) -> tuple[float, str, bool]:
    """How many outputs or seconds the request asks for, what said so, and if the override did."""
    param = override.units_param if override is not None else None
    named_by_override = param is not None
    if param is None:
        candidates = DURATION_PARAMS if unit == "second" else COUNT_PARAMS
        inputs = price.properties or body  # the body only when the catalog has no schema
        param = next((p for p in candidates if p in inputs), None)
    if param is not None:
        given = _positive_number(body.get(param))
        if given is not None:
            return given, f"{param}={given:g} from the request", named_by_override
        spec = price.properties.get(param)
        default = _positive_number(spec.get("default") if isinstance(spec, dict) else None)
        if default is not None:
            return default, f"{param}={default:g} from the schema default", named_by_override
    if override is not None and override.default_units is not None:
        return override.default_units, "units from the override's default_units", True
    if unit == "output":
        return 1.0, "one output", False
    return FALLBACK_SECONDS, f"no duration given: {FALLBACK_SECONDS:g} s assumed", False


def _deployment_estimate(deployment: DeploymentPrice) -> Estimate:
    rate = usd_to_micro(deployment.usd_per_second)
    seconds = deployment.estimated_seconds
    return Estimate(
        settle_serverless_micro(rate, seconds),
        rate,
        seconds,
        "second",
        "deployment",
        (f"{seconds:g} GPU-seconds estimated by the admin",),
    )


def _positive_number(value: Any) -> float | None:
    """A count or duration as a number: 5, 5.0, "5" and "5s" all read 5."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (match := _NUMBER.match(value)):
        number = float(match.group(1))
    else:
        return None
    return number if 0 < number < math.inf else None


def _as_text(value: Any) -> str:
    """Inputs compared as text, so 1080, 1080.0 and "1080" match a rule alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

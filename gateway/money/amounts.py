"""Money: integer micro-dollars, one conversion rule, and what a finished job settles to.

Every amount the gateway keeps or adds is an integer number of micro-dollars (1 USD =
1,000,000), so budgets and spend counters add exactly in Redis. USD enters as a decimal
(RunComfy's ``cost``, a catalog price, an admin's budget) and is converted here, once, by one
rule: the amount's decimal string (a float's shortest ``repr``, so ``0.1`` is 0.1) rounded to
the micro-dollar half up. Amounts that are not finite, negative or beyond what the admin API
accepts (:data:`MAX_USD`) are refused, not clamped: a bad number must not become a charge.

Settlement (:func:`settle`) says what a finished job costs: RunComfy's reported cost where it
gives one, a serverless deployment's rate times the run the poller saw, else the estimate.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from enum import StrEnum

from gateway.common.records import record

MICRO = 1_000_000
MAX_USD = Decimal("999999999999.999999")
"""The largest amount an admin can set (18 digits, 6 of them decimals: ``budget_usd``)."""
MAX_MICRO = 999_999_999_999_999_999
""":data:`MAX_USD` in micro-dollars: below 2**63, so Redis's integer counters hold it."""
_ONE_MICRO = Decimal("0.000001")

Usd = Decimal | str | int | float


def usd_to_micro(usd: Usd) -> int:
    """USD to micro-dollars: the decimal string rounded half up; ValueError if not an amount."""
    value = _decimal(usd)
    if not value.is_finite() or value < 0 or value > MAX_USD + 1:
        raise ValueError(f"not a USD amount between 0 and {MAX_USD}: {usd!r}")
    micro = int(value.quantize(_ONE_MICRO, rounding=ROUND_HALF_UP).scaleb(6))
    if micro > MAX_MICRO:
        raise ValueError(f"not a USD amount between 0 and {MAX_USD}: {usd!r}")
    return micro


def micro_to_decimal(micro: int) -> Decimal:
    """Micro-dollars as an exact USD decimal, without trailing zeros (``12.5``)."""
    return Decimal(micro) / MICRO


def micro_to_usd(micro: int) -> float:
    """Micro-dollars as a JSON number of USD: the float nearest the exact amount, whose
    ``repr`` reads back to the same micro-dollars below $1,000,000,000."""
    return micro / MICRO


def usd_text(micro: int) -> str:
    """Micro-dollars as an exact USD string with six decimals, e.g. ``"-0.000500"``."""
    return f"{Decimal(micro).scaleb(-6):.6f}"


def scale_micro(micro: int, factor: float, at_most: int) -> int:
    """``micro`` times a non-negative ``factor`` (a count, a duration, a multiplier), rounded
    half up, and at most ``at_most``: no factor, however large, overflows a counter."""
    if (type(factor) is int or (type(factor) is float and factor.is_integer())) and factor >= 0:
        return min(micro * int(factor), at_most)  # a whole count, the common case: exact as is
    by = _decimal(factor)
    if not by.is_finite() or by < 0:
        raise ValueError(f"not a non-negative factor: {factor!r}")
    if by > at_most:  # the product is over the cap already (micro is 0 or at least 1)
        return at_most if micro > 0 else 0
    with localcontext() as exact:
        exact.prec = 80  # enough digits that the product is exact, so it is rounded once
        product = Decimal(micro) * by
        return min(int(product.to_integral_value(rounding=ROUND_HALF_UP)), at_most)


def settle_serverless_micro(micro_per_second: int, seconds: float) -> int:
    """What a serverless run costs: the deployment's rate times its GPU-seconds (none if
    negative), rounded half up to the micro-dollar."""
    return scale_micro(micro_per_second, max(0.0, seconds), MAX_MICRO)


def reported_micro(reported: object) -> int | None:
    """RunComfy's ``cost`` (USD) in micro-dollars, or None if it gave none or not an amount."""
    if isinstance(reported, bool) or not isinstance(reported, int | float):
        return None
    try:
        return usd_to_micro(reported)
    except ValueError:
        return None


class Outcome(StrEnum):
    """How a job ended, as settlement distinguishes it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@record
class FinishedJob:
    """What the gateway knows of a job's cost when it ends."""

    serverless: bool
    outcome: Outcome
    estimate_micro: int  # what admission reserved
    rate_micro: int = 0  # serverless: the deployment's micro-dollars per GPU-second
    ran_seconds: float | None = None  # serverless: how long the poller saw it run, if it did
    reported: object = None  # RunComfy's ``cost`` field as it came (``include_cost``)


def settle(job: FinishedJob) -> int:
    """What a finished job costs, in micro-dollars.

    RunComfy's own figure where it gives one; a serverless job's rate times the run the poller
    saw (an upper bound, never the maybe much larger estimate); a cancelled job, or a failed
    Model API job, nothing; else the estimate.
    """
    reported = reported_micro(job.reported)
    if reported is not None:
        return reported
    if job.outcome is Outcome.CANCELLED:
        return 0
    if job.serverless and job.rate_micro > 0 and job.ran_seconds is not None:
        return settle_serverless_micro(job.rate_micro, job.ran_seconds)
    if job.outcome is Outcome.FAILED and not job.serverless:
        return 0
    return max(0, job.estimate_micro)


def _decimal(number: Usd) -> Decimal:
    """A number as the decimal it was written as: a float by its shortest ``repr``."""
    if isinstance(number, bool):
        raise ValueError(f"not a number: {number!r}")
    if isinstance(number, Decimal):
        return number
    try:
        return Decimal(repr(number) if isinstance(number, float) else number)
    except InvalidOperation:
        raise ValueError(f"not a number: {number!r}") from None

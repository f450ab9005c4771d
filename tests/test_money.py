"""Money as an admin reads it in budgets and usage: exact micro-dollars, one rounding rule, and
settlements that never go negative, never exceed what the rules allow and add up exactly."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.money.amounts import (
    MAX_MICRO,
    MAX_USD,
    FinishedJob,
    Outcome,
    micro_to_decimal,
    micro_to_usd,
    scale_micro,
    settle,
    settle_serverless_micro,
    usd_text,
    usd_to_micro,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
micro_amounts = st.integers(min_value=0, max_value=MAX_MICRO)
json_exact_micro = st.integers(min_value=0, max_value=10**15 - 1)  # below $1,000,000,000
rates = st.integers(min_value=0, max_value=100_000_000)  # up to $100 per GPU-second, the API's max
durations = st.floats(min_value=-1e3, max_value=1e7, allow_nan=False)
estimates = st.integers(min_value=0, max_value=10**13)
anything_reported = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),  # NaN, infinities, negatives and huge numbers included
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)


# --- conversions ------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(micro_amounts)
def test_an_amount_shown_as_a_usd_string_reads_back_to_the_same_micro_dollars(micro: int) -> None:
    assert usd_to_micro(usd_text(micro)) == micro
    assert usd_to_micro(micro_to_decimal(micro)) == micro


@PROPERTY_SETTINGS
@given(json_exact_micro)
@example(1)
@example(10**15 - 1)
def test_an_amount_in_a_json_answer_reads_back_to_the_same_micro_dollars(micro: int) -> None:
    """Budgets and spend are JSON numbers of USD; a client that converts them back (as the CLI
    and the admin API do) gets the stored integer exactly, below a billion dollars."""
    assert usd_to_micro(micro_to_usd(micro)) == micro
    assert usd_to_micro(repr(micro_to_usd(micro))) == micro


@PROPERTY_SETTINGS
@given(st.decimals(min_value=0, max_value=MAX_USD - 1, allow_nan=False, places=9))
def test_usd_is_rounded_to_the_nearest_micro_dollar_and_halves_up(usd: Decimal) -> None:
    micro = usd_to_micro(usd)
    error = Decimal(micro) - usd * 1_000_000
    assert -Decimal("0.5") < error <= Decimal("0.5")


@PROPERTY_SETTINGS
@given(st.lists(micro_amounts.map(lambda m: m // 1000), min_size=1, max_size=50))
def test_costs_in_whole_micro_dollars_add_up_exactly(parts: list[int]) -> None:
    """The spend of many jobs equals what RunComfy billed for all of them: no drift."""
    total = sum(micro_to_decimal(m) for m in parts)
    assert sum(usd_to_micro(usd_text(m)) for m in parts) == usd_to_micro(total)


def test_a_float_usd_amount_is_read_as_the_decimal_it_shows() -> None:
    """The one rule: a float's shortest repr, rounded half up. The old float rule
    (``round(usd * 1e6)``, banker's rounding of an inexact product) disagreed on these."""
    assert usd_to_micro(0.0000005) == 1  # float rule: 0 (half to even)
    assert usd_to_micro(0.0000025) == 3  # float rule: 2 (2.4999999999999996)
    assert usd_to_micro(3.0383065) == 3_038_307  # float rule: 3_038_306 (3038306.4999999995)
    assert usd_to_micro(0.1 + 0.2) == 300_000  # repr 0.30000000000000004: both rules agree
    assert usd_to_micro("0.0000005") == usd_to_micro(Decimal("0.0000005")) == 1
    assert usd_to_micro(12) == 12_000_000


@pytest.mark.parametrize(
    "amount",
    [math.nan, math.inf, -math.inf, "NaN", "Infinity", -0.01, "-1", "1e13", 10**12, True, "$5", ""],
)
def test_what_is_not_a_usd_amount_is_refused_not_charged(amount: object) -> None:
    with pytest.raises(ValueError, match=r"^not a (USD amount|number)"):
        usd_to_micro(amount)  # type: ignore[arg-type]


def test_the_largest_amount_an_admin_can_set_fits_redis_counters() -> None:
    assert usd_to_micro(MAX_USD) == MAX_MICRO < 2**63
    assert usd_to_micro("999999999999.9999994") == MAX_MICRO
    with pytest.raises(ValueError, match="not a USD amount between 0 and"):
        usd_to_micro("999999999999.9999995")  # rounds to $10^12, past the limit


def test_amounts_are_shown_with_six_decimals() -> None:
    assert usd_text(1_500_000) == "1.500000"
    assert usd_text(5) == "0.000005"
    assert usd_text(-500) == "-0.000500"
    assert micro_to_decimal(12_500_000) == Decimal("12.5")
    assert micro_to_usd(42_000) == 0.042


# --- scaling and serverless settlement ---------------------------------------------------------


@PROPERTY_SETTINGS
@given(rates, durations, durations)
def test_a_longer_serverless_run_never_costs_less(rate: int, a: float, b: float) -> None:
    short, long = sorted((a, b))
    assert 0 <= settle_serverless_micro(rate, short) <= settle_serverless_micro(rate, long)


@PROPERTY_SETTINGS
@given(rates, rates, durations)
def test_a_dearer_deployment_never_costs_less_for_the_same_run(a: int, b: int, s: float) -> None:
    cheap, dear = sorted((a, b))
    assert settle_serverless_micro(cheap, s) <= settle_serverless_micro(dear, s)


@PROPERTY_SETTINGS
@given(rates, st.lists(st.integers(min_value=0, max_value=86_400), min_size=1, max_size=20))
def test_whole_seconds_settled_in_parts_cost_the_same_as_settled_at_once(
    rate: int, parts: list[int]
) -> None:
    whole = settle_serverless_micro(rate, float(sum(parts)))
    assert sum(settle_serverless_micro(rate, float(s)) for s in parts) == whole == rate * sum(parts)


@PROPERTY_SETTINGS
@given(rates, st.lists(st.floats(min_value=0, max_value=3600), min_size=1, max_size=20))
def test_a_run_settled_in_parts_is_off_by_at_most_half_a_micro_dollar_a_part(
    rate: int, parts: list[float]
) -> None:
    whole = settle_serverless_micro(rate, math.fsum(parts))
    in_parts = sum(settle_serverless_micro(rate, s) for s in parts)
    assert abs(in_parts - whole) <= (len(parts) + 1) / 2 + 1


def test_a_serverless_run_is_rounded_half_up_to_the_micro_dollar() -> None:
    assert settle_serverless_micro(5, 0.5) == 3  # float rule: round(2.5) == 2
    assert settle_serverless_micro(540, 2.0) == 1080
    assert settle_serverless_micro(540, -3.0) == 0  # a clock step back is no refund


def test_a_count_of_any_size_is_capped_not_an_overflow() -> None:
    assert scale_micro(42_000, 1e308, 10**13) == 10**13
    assert scale_micro(0, 1e308, 10**13) == 0
    assert scale_micro(42_000, 3.5, 10**13) == 147_000
    with pytest.raises(ValueError, match="not a non-negative factor"):
        scale_micro(42_000, math.nan, 10**13)


# --- settling a finished job -------------------------------------------------------------------


costs_reported = st.integers(min_value=0, max_value=10**9) | st.floats(min_value=0, max_value=1e9)
no_cost_reported = st.sampled_from([None, -0.5, math.nan, math.inf, "0.5", True])


def finished_jobs(
    reported: st.SearchStrategy[object], serverless: bool | None = None
) -> st.SearchStrategy[FinishedJob]:
    return st.builds(
        FinishedJob,
        serverless=st.booleans() if serverless is None else st.just(serverless),
        outcome=st.sampled_from(Outcome),
        estimate_micro=estimates,
        rate_micro=rates,
        ran_seconds=st.none() | durations,
        reported=reported,
    )


@PROPERTY_SETTINGS
@given(finished_jobs(anything_reported))
def test_a_settlement_is_never_negative_whatever_runcomfy_reports(job: FinishedJob) -> None:
    assert 0 <= settle(job) <= MAX_MICRO


@PROPERTY_SETTINGS
@given(finished_jobs(no_cost_reported, serverless=False))
def test_a_model_api_job_without_a_reported_cost_never_settles_above_its_reservation(
    job: FinishedJob,
) -> None:
    expected = job.estimate_micro if job.outcome is Outcome.SUCCEEDED else 0
    assert settle(job) == expected


@PROPERTY_SETTINGS
@given(finished_jobs(costs_reported))
def test_runcomfys_reported_cost_is_what_a_job_settles_to(job: FinishedJob) -> None:
    assert settle(job) == usd_to_micro(job.reported)  # type: ignore[arg-type]


def test_a_cancelled_job_costs_nothing_unless_runcomfy_says_so() -> None:
    job = FinishedJob(True, Outcome.CANCELLED, 5_000, rate_micro=540, ran_seconds=9.0)
    assert settle(job) == 0
    assert settle(FinishedJob(True, Outcome.CANCELLED, 5_000, reported=0.0021)) == 2_100


def test_a_serverless_job_settles_to_its_run_not_its_estimate() -> None:
    ran = FinishedJob(True, Outcome.SUCCEEDED, 1_000_000, rate_micro=540, ran_seconds=2.0)
    assert settle(ran) == 1_080
    failed = FinishedJob(True, Outcome.FAILED, 1_000_000, rate_micro=540, ran_seconds=2.0)
    assert settle(failed) == 1_080  # a failed GPU run is still billed
    never_seen_running = FinishedJob(True, Outcome.SUCCEEDED, 1_000_000, rate_micro=540)
    assert settle(never_seen_running) == 1_000_000


@pytest.mark.parametrize("reported", [-0.5, math.nan, math.inf, 1e300, True, "0.5"])
def test_a_cost_runcomfy_reports_that_is_not_an_amount_is_ignored(reported: object) -> None:
    """Regression: a negative cost settled as a refund below zero, and NaN or infinity raised in
    the poller; now such a figure is ignored and the job settles by the other rules."""
    job = FinishedJob(False, Outcome.SUCCEEDED, 42_000, reported=reported)
    assert settle(job) == 42_000

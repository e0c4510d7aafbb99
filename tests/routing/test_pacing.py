"""Budget pacing's arithmetic (routing/pacing.py) on plain numbers: smoothed rates, on track or not."""

import math

import numpy as np
import pytest

from routing.pacing import pace, smoothed, smoothed_add, unbiased

HOUR, DAY = 3600.0, 86400.0
MONTH = 31 * DAY
TAU = MONTH / 24


def test_a_steady_rate_reads_back_as_itself_once_corrected_for_the_unobserved_window():
    for rate_per_hour, hours in [(60, 2), (60, 48), (3, 300)]:
        rate, interval = 0.0, HOUR / rate_per_hour
        for _ in range(int(hours * rate_per_hour)):
            rate = smoothed_add(rate, seconds_since=interval, amount=1.0, tau=TAU)
        corrected = unbiased(rate, observed_seconds=hours * HOUR, tau=TAU)
        assert corrected * HOUR == pytest.approx(rate_per_hour, rel=0.05)


def test_a_late_event_from_another_process_is_decayed_instead_of_the_rate():
    rate = smoothed_add(0.0, seconds_since=0.0, amount=1.0, tau=HOUR)
    assert smoothed_add(rate, seconds_since=-HOUR, amount=1.0, tau=HOUR) == pytest.approx((1 + math.exp(-1)) / HOUR)
    assert smoothed(rate, seconds_since=HOUR, tau=HOUR) == pytest.approx(math.exp(-1) / HOUR)
    assert smoothed(rate, seconds_since=1e12, tau=1.0) >= 0.0  # no underflow error, however long ago


def month_pace(*, spent_share, elapsed_share, request_rate=1 / HOUR, spend_rate=0.0, limit=10.0):
    return pace(
        limit_usd=limit,
        spent_usd=spent_share * limit,
        period_seconds=MONTH,
        elapsed_seconds=elapsed_share * MONTH,
        request_rate=request_rate,
        spend_rate=spend_rate,
        margin=0.05,
    )


def test_a_500_request_burst_with_a_fifth_of_a_percent_spent_is_on_track():
    # 500 requests within a minute, early in the month: the smoothed rate projects thousands of
    # requests an hour, yet 0.2 % spent is far inside the elapsed share plus the margin.
    rate = 0.0
    for _ in range(500):
        rate = smoothed_add(rate, seconds_since=0.12, amount=1.0, tau=TAU)
    state = month_pace(spent_share=0.002, elapsed_share=0.01, request_rate=unbiased(rate, observed_seconds=60, tau=TAU))
    assert state.on_track and state.pressure == 0.0
    assert state.target_cost_per_request(0.01) == 0.01  # unpaced


def test_spend_ahead_of_the_period_raises_pressure_continuously_up_to_one_margin_past():
    shares = np.linspace(0.40, 0.60, 201)
    pressures = [month_pace(spent_share=s, elapsed_share=0.4).pressure for s in shares]
    room = 0.05 * 0.6
    assert all(p == 0 for s, p in zip(shares, pressures) if s <= 0.4 + room)
    assert all(p == 1 for s, p in zip(shares, pressures) if s >= 0.4 + 2 * room + 1e-9)
    assert pressures == sorted(pressures)
    assert max(np.diff(pressures)) <= 0.001 / room + 1e-9  # no step larger than the grid's


def test_the_margin_closes_as_the_period_ends():
    # 5 % of the budget ahead is fine at the start, 2.5 % halfway, 0.05 % on the last day
    assert month_pace(spent_share=0.049, elapsed_share=0.0).on_track
    assert month_pace(spent_share=0.524, elapsed_share=0.5).on_track
    assert not month_pace(spent_share=0.526, elapsed_share=0.5).on_track
    assert not month_pace(spent_share=0.991, elapsed_share=0.99).on_track


def test_the_target_moves_from_unpaced_to_an_even_split_of_what_is_left():
    # 6 of 10 USD spent with 40 % of the month gone, 30 requests an hour expected for 18.6 days
    state = month_pace(spent_share=0.6, elapsed_share=0.4, request_rate=30 / HOUR)
    even = 4.0 / (30 * 0.6 * MONTH / HOUR)
    assert state.pressure == 1.0 and state.even_cost_per_request == pytest.approx(even)
    assert state.target_cost_per_request(0.05) == pytest.approx(even)
    assert state.target_cost_per_request(even / 2) == even / 2  # already cheaper than the pace: unchanged
    half = month_pace(spent_share=0.4 + 0.05 * 0.6 * 1.5, elapsed_share=0.4, request_rate=30 / HOUR)
    assert half.pressure == pytest.approx(0.5)
    assert half.target_cost_per_request(0.05) == pytest.approx((0.05 + half.even_cost_per_request) / 2)


def test_projected_spend_is_what_is_spent_plus_the_smoothed_spend_rate_over_what_is_left():
    state = month_pace(spent_share=0.5, elapsed_share=0.5, spend_rate=1.0 / DAY)
    assert state.projected_usd == pytest.approx(5.0 + 15.5)


def test_a_zero_budget_is_never_on_track():
    state = pace(
        limit_usd=0.0,
        spent_usd=0.0,
        period_seconds=DAY,
        elapsed_seconds=HOUR,
        request_rate=0.0,
        spend_rate=0.0,
        margin=0.05,
    )
    assert state.pressure == 1.0 and state.even_cost_per_request == 0.0

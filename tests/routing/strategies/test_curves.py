"""Deferral curves, area, area50, QNC, oracle and random routing on small known cases."""

import numpy as np
import pytest

from routing.selection import select
from routing.strategies.curves import DeferralCurve, area, area50, deferral_curve, oracle_curve, qnc, random_curve


def curve(*points):
    cost, quality = zip(*points)
    return DeferralCurve(np.array(cost, dtype=float), np.array(quality, dtype=float))


def test_area_of_a_two_point_curve_is_flat_left_then_a_trapezoid():
    assert area(curve((0.2, 0.5), (1.0, 0.9))) == pytest.approx(0.2 * 0.5 + 0.8 * (0.5 + 0.9) / 2)


def test_area_stays_flat_right_of_the_most_expensive_point_reached():
    assert area(curve((0.2, 0.5), (0.6, 0.9))) == pytest.approx(0.2 * 0.5 + 0.4 * 0.7 + 0.4 * 0.9)


def test_a_point_that_costs_more_for_less_quality_does_not_lower_the_curve():
    with_dominated = curve((0.2, 0.5), (0.5, 0.4), (1.0, 0.9))
    without = curve((0.2, 0.5), (0.5, 0.5), (1.0, 0.9))
    assert area(with_dominated) == pytest.approx(area(without))


def test_area50_is_the_mean_quality_over_the_cheaper_half():
    assert area50(curve((0.0, 0.4), (1.0, 0.8))) == pytest.approx((0.4 + 0.6) / 2)


def test_qnc_interpolates_where_the_curve_reaches_the_best_single_llm():
    assert qnc(curve((0.2, 0.5), (0.6, 0.9)), 0.7) == pytest.approx(0.4)
    assert qnc(curve((0.2, 0.5), (0.6, 0.9)), 0.5) == pytest.approx(0.2)
    assert qnc(curve((0.2, 0.5), (0.6, 0.9)), 0.95) == float("inf")


@pytest.mark.parametrize("seed", range(5))
def test_the_exact_curve_contains_every_operating_point_of_the_lambda_rule(seed):
    rng = np.random.default_rng(seed)
    losses = rng.random((40, 4)).round(2)
    correctness = (rng.random((40, 4)) < 0.6).astype(float)
    costs = np.array([1.0, 4.0, 2.0, 2.0])
    exact = deferral_curve(losses, costs, correctness)
    points = set(zip(exact.cost.round(9), exact.quality.round(9)))
    for lam in np.concatenate([[0.0], np.geomspace(1e-4, 10, 400)]):
        choice = select(losses, costs, lam=lam)
        point = (round((costs[choice] / costs.max()).mean(), 9), round(correctness[np.arange(40), choice].mean(), 9))
        assert point in points


def test_the_curve_runs_from_the_cheapest_llm_to_the_lowest_predicted_loss():
    losses = np.array([[0.9, 0.1], [0.2, 0.3]])
    correctness = np.array([[0.0, 1.0], [1.0, 1.0]])
    c = deferral_curve(losses, np.array([1.0, 4.0]), correctness)
    np.testing.assert_allclose(c.cost, [0.25, (1.0 + 0.25) / 2])
    np.testing.assert_allclose(c.quality, [0.5, 1.0])


def test_the_oracle_sends_each_prompt_to_its_cheapest_correct_llm():
    correctness = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    top = oracle_curve(correctness, np.array([1.0, 2.0])).monotone()
    assert top.quality[-1] == pytest.approx(2 / 3)
    assert top.cost[-1] == pytest.approx((0.5 + 1.0 + 0.5) / 3)


def test_random_routing_mixes_the_llms_on_the_upper_hull_of_their_points():
    # Accuracies 0.1, 0.3, 0.8, 1.0 at normalised costs 0.25, 0.5, 0.75, 1.0: the 0.3 LLM lies below
    # the line from the 0.1 LLM to the 0.8 LLM, so random mixing skips it.
    correctness = np.zeros((10, 4))
    for j, correct in enumerate([1, 3, 8, 10]):
        correctness[:correct, j] = 1.0
    r = random_curve(correctness, np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(r.cost, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(r.quality, [0.1, 0.8, 1.0])
    assert area(r) == pytest.approx(0.25 * 0.1 + 0.5 * (0.1 + 0.8) / 2 + 0.25 * 0.9)


def test_curves_refuse_missing_correctness():
    with pytest.raises(ValueError, match="NaN"):
        deferral_curve(np.zeros((1, 2)), np.ones(2), np.array([[1.0, np.nan]]))

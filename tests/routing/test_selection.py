"""The cost-aware selector: argmin loss + λ·cost, hard filters, quality targets, budgets."""

import numpy as np
import pytest

from routing.selection import NoCandidateError, lambda_for_budget, mean_cost, select

COSTS = np.array([1.0, 10.0, 3.0])  # cheap, expensive, middle


def test_without_a_price_the_lowest_predicted_loss_wins():
    losses = np.array([[0.5, 0.1, 0.3], [0.2, 0.4, 0.9]])
    np.testing.assert_array_equal(select(losses, COSTS), [1, 0])


def test_a_large_lambda_forces_the_cheapest_llm():
    losses = np.array([[0.9, 0.0, 0.1]])
    assert select(losses, COSTS, lam=1.0)[0] == 0


def test_ties_go_to_the_cheaper_llm_then_the_lower_index():
    assert select(np.array([[0.2, 0.2, 0.2]]), COSTS)[0] == 0
    assert select(np.array([[0.5, 0.2, 0.2]]), COSTS)[0] == 2
    assert select(np.array([[0.3, 0.3, 0.3]]), np.array([2.0, 1.0, 1.0]))[0] == 1


def test_filters_remove_denied_and_too_expensive_llms():
    losses = np.array([[0.5, 0.1, 0.3]])
    assert select(losses, COSTS, allowed_mask=[True, False, True])[0] == 2
    assert select(losses, COSTS, max_cost=2.0)[0] == 0
    per_request_caps = np.array([20.0, 2.0])
    np.testing.assert_array_equal(select(np.repeat(losses, 2, axis=0), COSTS, max_cost=per_request_caps), [1, 0])


def test_filters_that_leave_nothing_raise_a_clear_error():
    with pytest.raises(NoCandidateError, match="no LLM passes the filters"):
        select(np.array([[0.5, 0.1, 0.3]]), COSTS, allowed_mask=[False, True, True], max_cost=2.0)


def test_a_quality_target_picks_the_cheapest_llm_predicted_to_reach_it():
    losses = np.array([[0.5, 0.1, 0.25], [0.5, 0.4, 0.45]])
    # Row 0: LLMs 1 and 2 reach 0.7, LLM 2 is cheaper. Row 1: none reaches 0.7 → the best, LLM 1.
    np.testing.assert_array_equal(select(losses, COSTS, quality_target=0.7), [2, 1])


def test_a_budget_below_the_cheapest_llm_routes_everything_to_it():
    losses = np.random.default_rng(0).random((50, 3))
    lam = lambda_for_budget(losses, COSTS, budget=0.5)
    assert (select(losses, COSTS, lam=lam) == 0).all()


def test_a_budget_above_the_unconstrained_spend_needs_no_price():
    losses = np.random.default_rng(0).random((50, 3))
    assert lambda_for_budget(losses, COSTS, budget=10.0) == 0.0


def test_the_budget_lambda_spends_within_budget_and_a_smaller_lambda_would_not():
    losses = np.random.default_rng(1).random((200, 3))
    budget = 4.0
    lam = lambda_for_budget(losses, COSTS, budget, tol=1e-9)
    assert mean_cost(losses, COSTS, lam) <= budget
    assert mean_cost(losses, COSTS, lam * (1 - 1e-6)) > budget


@pytest.mark.parametrize("seed", range(20))
def test_a_larger_lambda_never_costs_more(seed):
    rng = np.random.default_rng(seed)
    n_llms = int(rng.integers(2, 8))
    losses = rng.random((30, n_llms)).round(1)  # rounding makes ties common
    costs = rng.choice([0.1, 0.5, 1.0, 2.0, 5.0], size=n_llms)
    lambdas = np.sort(rng.exponential(1.0, size=25))
    spends = [costs[select(losses, costs, lam=lam)] for lam in lambdas]
    for cheaper, dearer in zip(spends[1:], spends[:-1]):
        assert (cheaper <= dearer).all()

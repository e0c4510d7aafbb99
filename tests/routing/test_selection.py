"""The cost-aware selector: argmin loss + λ·cost, hard filters, quality targets, budgets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.selection import MAX_LAMBDA, NoCandidateError, lambda_for_budget, mean_cost, select

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


# --- extreme numbers: the choice is always a candidate ---------------------------------------------

EXTREME_FLOATS = st.one_of(
    st.floats(min_value=0, max_value=1e308, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 5e-324, 1e-300, 1e-10, 1.0, 1e10, 1e300, 1.7976931348623157e308]),
)


@st.composite
def routing_problems(draw):
    n_llms = draw(st.integers(min_value=1, max_value=6))
    n_prompts = draw(st.integers(min_value=1, max_value=4))
    losses = draw(
        st.lists(
            st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([np.nan, np.inf, -np.inf])),
            min_size=n_prompts * n_llms,
            max_size=n_prompts * n_llms,
        )
    )
    costs = draw(st.lists(st.one_of(EXTREME_FLOATS, st.just(np.inf)), min_size=n_llms, max_size=n_llms))
    allowed = draw(st.lists(st.booleans(), min_size=n_llms, max_size=n_llms).filter(any))
    return np.array(losses).reshape(n_prompts, n_llms), np.array(costs), np.array(allowed)


@settings(max_examples=400, deadline=None)
@given(problem=routing_problems(), lam=EXTREME_FLOATS, quality_target=st.one_of(st.none(), st.floats(0, 1)))
def test_the_choice_is_always_an_allowed_llm_whatever_the_numbers(problem, lam, quality_target):
    losses, costs, allowed = problem
    choice = select(losses, costs, lam=lam, allowed_mask=allowed, quality_target=quality_target)
    assert choice.shape == (len(losses),)
    assert allowed[choice].all(), (choice, allowed)


@settings(max_examples=200, deadline=None)
@given(problem=routing_problems(), lam=st.floats(min_value=0, max_value=1e300))
def test_with_finite_numbers_the_choice_minimises_loss_plus_lambda_cost_among_candidates(problem, lam):
    losses, costs, allowed = problem
    losses = np.nan_to_num(losses, nan=0.5, posinf=1.0, neginf=0.0)
    costs = np.minimum(costs, 1e6)  # λ·cost stays finite (≤ 1e306)
    choice = select(losses, costs, lam=lam, allowed_mask=allowed)
    objective = losses + lam * costs[None, :]
    chosen = objective[np.arange(len(losses)), choice]
    best = np.where(allowed[None, :], objective, np.inf).min(axis=1)
    np.testing.assert_array_equal(chosen, best)


def test_when_lambda_cost_overflows_for_every_candidate_the_cheapest_candidate_is_chosen():
    # LLM 0 is the cheapest overall but not allowed; λ·cost is +inf for every LLM.
    costs = np.array([1e300, 5e300, 2e300])
    losses = np.array([[0.0, 0.1, 0.9]])
    assert select(losses, costs, lam=1e10, allowed_mask=[False, True, True])[0] == 2
    # and equally cheap candidates are told apart by their loss
    assert (
        select(np.array([[0.0, 0.7, 0.2]]), np.array([1.0, 1e300, 1e300]), lam=1e10, allowed_mask=[False, True, True])[
            0
        ]
        == 2
    )


def test_undefined_losses_never_pick_an_llm_outside_the_candidates():
    losses = np.array([[0.1, np.nan, np.nan]])
    assert select(losses, COSTS, allowed_mask=[False, True, True])[0] == 2  # cheaper of the two candidates
    assert select(losses, COSTS, allowed_mask=[False, True, True], quality_target=0.5)[0] == 2


def test_lambda_must_be_finite_and_non_negative():
    for lam in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="finite non-negative"):
            select(np.array([[0.5, 0.1, 0.3]]), COSTS, lam=lam)


def test_the_budget_lambda_never_exceeds_its_bound():
    # cost gaps of 1e-15 USD would call for λ ≈ 2e15; such differences are below what budgets count
    costs = np.array([1.0, 1.0 + 1e-15, 1.0 + 2e-15])
    losses = np.random.default_rng(2).random((20, 3))
    assert lambda_for_budget(losses, costs, budget=0.5) == MAX_LAMBDA
    assert lambda_for_budget(losses, costs, budget=0.5, max_lambda=7.0) == 7.0

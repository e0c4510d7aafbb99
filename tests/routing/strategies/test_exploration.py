"""Exploration: Thompson sampling among a request's candidates, and the evidence strategies give it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.selection import NoCandidateError, select
from routing.strategies.exploration import (
    explored_losses,
    exploring_rows,
    posterior_draw,
    select_exploring,
)
from tests.routing.strategies.test_contract import ALL, fit, make

COSTS = np.array([1.0, 1.0, 1.0])


def shares_chosen(losses, evidence, costs=COSTS, *, n=4000, seed=0, **filters):
    result = select_exploring(
        np.tile(losses, (n, 1)), evidence, costs, share=1.0, rng=np.random.default_rng(seed), **filters
    )
    return np.bincount(result.choice, minlength=len(costs)) / n, result


def test_an_uncertain_llm_is_explored_more_than_a_well_known_one_of_the_same_estimate():
    # LLMs 1 and 2 are both estimated at 0.4, behind LLM 0's 0.3; only LLM 1's estimate is uncertain.
    shares, result = shares_chosen(np.array([0.3, 0.4, 0.4]), np.array([1000.0, 2.0, 1000.0]))
    assert shares[1] > 0.25
    assert shares[2] < 0.01
    assert shares[0] == pytest.approx(1 - shares[1] - shares[2])
    assert (result.exploiting == 0).all()
    np.testing.assert_array_equal(result.explored, result.choice != 0)


def test_a_well_known_clearly_worse_llm_is_almost_never_chosen():
    shares, _ = shares_chosen(np.array([0.2, 0.6, 0.6]), np.array([200.0, 200.0, 200.0]), n=20000)
    assert shares[1] + shares[2] < 1e-3
    assert shares[0] > 0.999


def test_with_share_zero_nothing_explores_and_the_estimates_are_routed_on():
    rng = np.random.default_rng(3)
    losses = rng.random((500, 4))
    evidence = np.zeros((500, 4))  # as uncertain as can be: still never explored
    routed, explores = explored_losses(losses, evidence, share=0.0, rng=rng)
    assert not explores.any()
    np.testing.assert_array_equal(routed, losses)
    result = select_exploring(losses, evidence, np.arange(1.0, 5.0), share=0.0, rng=rng, lam=0.01)
    assert not result.explored.any()
    np.testing.assert_array_equal(result.choice, select(losses, np.arange(1.0, 5.0), lam=0.01))


def test_a_share_explores_about_that_share_of_the_requests():
    explores = exploring_rows(20000, 0.1, np.random.default_rng(4))
    assert explores.mean() == pytest.approx(0.1, abs=0.01)
    assert exploring_rows(50, 1.0, np.random.default_rng(4)).all()
    with pytest.raises(ValueError, match="share must lie in"):
        exploring_rows(5, 1.5, np.random.default_rng(4))


def test_the_same_seed_draws_the_same_choices():
    losses, evidence = np.tile([0.3, 0.35, 0.5], (300, 1)), np.array([5.0, 3.0, 1.0])
    first = select_exploring(losses, evidence, COSTS, share=0.5, rng=np.random.default_rng(11))
    again = select_exploring(losses, evidence, COSTS, share=0.5, rng=np.random.default_rng(11))
    other = select_exploring(losses, evidence, COSTS, share=0.5, rng=np.random.default_rng(12))
    np.testing.assert_array_equal(first.choice, again.choice)
    assert (first.choice != other.choice).any()


def test_draws_centre_on_the_estimate_and_narrow_with_evidence():
    rng = np.random.default_rng(5)
    few = posterior_draw(np.full(20000, 0.3), np.full(20000, 3.0), rng)
    many = posterior_draw(np.full(20000, 0.3), np.full(20000, 300.0), rng)
    assert few.mean() == pytest.approx(0.3, abs=0.01) and many.mean() == pytest.approx(0.3, abs=0.005)
    assert few.std() > 5 * many.std()
    assert ((few >= 0) & (few <= 1)).all()


def test_an_llm_without_known_evidence_keeps_its_estimate_and_nan_stays_nan():
    drawn = posterior_draw(
        np.array([0.3, 0.4, np.nan, 0.0]), np.array([np.inf, np.nan, 1.0, 0.0]), np.random.default_rng(0)
    )
    assert drawn[0] == 0.3 and drawn[1] == 0.4
    assert np.isnan(drawn[2])
    assert 0.0 < drawn[3] < 1.0  # an estimate of 0 on no evidence is still drawn


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_llms=st.integers(1, 6), quality_target=st.sampled_from([None, 0.6]))
def test_every_choice_is_an_allowed_candidate_within_the_cap(seed, n_llms, quality_target):
    rng = np.random.default_rng(seed)
    n = 200
    losses = rng.random((n, n_llms))
    losses[rng.random((n, n_llms)) < 0.05] = np.nan
    evidence = rng.choice([0.0, 1.0, 10.0, 1000.0, np.inf], size=(n, n_llms))
    costs = rng.choice([0.0, 1e-6, 0.01, 1.0], size=n_llms)
    allowed = rng.random((n, n_llms)) < 0.6
    allowed[np.arange(n), rng.integers(0, n_llms, n)] = True
    cap = np.where(rng.random(n) < 0.5, np.inf, rng.choice(costs, size=n))
    fits = allowed & (costs[None, :] <= cap[:, None])
    if not fits.any(axis=1).all():
        with pytest.raises(NoCandidateError):
            select_exploring(losses, evidence, costs, share=1.0, rng=rng, allowed_mask=allowed, max_cost=cap)
        return
    result = select_exploring(
        losses,
        evidence,
        costs,
        share=1.0,
        rng=rng,
        lam=float(rng.choice([0.0, 1.0, 1e6])),
        allowed_mask=allowed,
        max_cost=cap,
        quality_target=quality_target,
    )
    rows = np.arange(n)
    assert fits[rows, result.choice].all()
    assert fits[rows, result.exploiting].all()
    assert (costs[result.choice] <= cap).all()


# -- the evidence each strategy gives ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    from tests.routing.strategies.conftest import TRAINING_LLMS, outcomes

    train = outcomes(160, 1, TRAINING_LLMS, missing=0.05)
    validation = outcomes(80, 2, TRAINING_LLMS, missing=0.05)
    return {name: fit(make(name), train, validation) for name in ALL}, validation


@pytest.mark.parametrize("name", ALL)
def test_an_llm_with_fewer_answers_has_less_evidence_everywhere(name, fitted):
    strategies, validation = fitted
    strategy = strategies[name]
    correctness = validation.correctness[:, 0].copy()
    full = strategy.evidence(validation.embeddings, np.nan_to_num(correctness, nan=1.0))
    sparse_correctness = correctness.copy()
    sparse_correctness[10:] = np.nan  # ten answers of eighty
    sparse = strategy.evidence(validation.embeddings, sparse_correctness)
    near = strategy.evidence_at(validation.embeddings, np.stack([full, sparse]))
    assert near.shape == (len(validation.embeddings), 2)
    assert (near >= 0).all()
    assert (near[:, 1] <= near[:, 0] + 1e-9).all()
    assert near[:, 1].mean() < 0.5 * near[:, 0].mean()


def test_kmeans_evidence_is_the_answered_count_of_the_prompt_s_cluster(fitted):
    strategies, validation = fitted
    kmeans = strategies["uniroute_kmeans"]
    cluster = kmeans.cluster_of(validation.embeddings)
    correctness = validation.correctness[:, 1]
    evidence = kmeans.evidence(validation.embeddings, correctness)
    expected = [np.sum((cluster == k) & ~np.isnan(correctness)) for k in range(kmeans.n_clusters)]
    np.testing.assert_allclose(evidence, expected)
    near = kmeans.evidence_at(validation.embeddings[:5], evidence[None, :])[:, 0]
    np.testing.assert_allclose(near, np.asarray(expected, dtype=float)[cluster[:5]])
    weighted = kmeans.evidence(validation.embeddings, correctness, sample_weight=np.full(len(correctness), 0.5))
    np.testing.assert_allclose(weighted, 0.5 * np.asarray(expected, dtype=float))


def test_knn_evidence_counts_the_answered_neighbours(fitted):
    strategies, validation = fitted
    knn = strategies["knn"].with_params(k=10)
    correctness = validation.correctness[:, 2].copy()
    correctness[::2] = np.nan
    evidence = knn.evidence(validation.embeddings, correctness)
    near = knn.evidence_at(validation.embeddings[:3], evidence[None, :])[:, 0]
    neighbours = knn.neighbours(validation.embeddings[:3])
    np.testing.assert_allclose(near, (~np.isnan(correctness[neighbours])).sum(axis=1))


def test_a_bad_sample_weight_is_refused(fitted):
    strategies, validation = fitted
    with pytest.raises(ValueError, match="sample_weight"):
        strategies["uniroute_kmeans"].evidence(
            validation.embeddings, validation.correctness[:, 0], sample_weight=-np.ones(len(validation.embeddings))
        )

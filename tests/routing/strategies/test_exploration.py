"""Exploration: Thompson sampling among a request's candidates, and the evidence strategies give it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.selection import NoCandidateError, select
from routing.strategies.exploration import (
    OwnCounts,
    explored_losses,
    exploring_rows,
    own_counts_at,
    own_prior_weight,
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


# -- the LLM's own posterior (error evidence) ----------------------------------------------------------


def own_shares(losses, evidence, own, *, n=20000, seed=0):
    result = select_exploring(
        np.tile(losses, (n, 1)), evidence, COSTS, share=1.0, rng=np.random.default_rng(seed), own=own
    )
    return np.bincount(result.choice, minlength=len(COSTS)) / n


def test_a_specialist_right_on_its_few_answers_near_a_prompt_is_explored_there():
    # LLM 1 answered 4 prompts in x's fine cell, all right, and is wrong on most others: the tuned
    # prior puts its estimate at 0.83, far behind LLM 0's 0.3 on 300 answers. Its own answers vary far
    # more than a generalist's (a small empirical-Bayes strength), so it is tried on a substantial
    # share of the draws; LLM 2, as well known as LLM 0 and clearly worse, essentially never.
    shares = own_shares(
        np.array([0.3, 0.83, 0.5]),
        evidence=np.array([300.0, 4.0, 300.0]),
        own=OwnCounts(
            answers=np.array([30.0, 4.0, 30.0]), errors=np.array([9.0, 0.0, 15.0]), strength=np.array([64, 0.5, 64])
        ),
    )
    assert shares[1] > 0.3
    assert shares[2] < 1e-3


def test_a_well_known_llm_clearly_worse_near_the_prompt_is_essentially_never_explored():
    # LLM 1 has 300 answers behind its estimate of 0.6 and a generalist's strength: its draw hardly moves,
    # even where its own few answers in the fine cell happen to be right.
    shares = own_shares(
        np.array([0.3, 0.6, 0.6]),
        evidence=np.array([300.0, 300.0, 300.0]),
        own=OwnCounts(
            answers=np.array([5.0, 5.0, 5.0]),
            errors=np.array([2.0, 0.0, 2.0]),
            strength=np.array([128.0, 128.0, 128.0]),
        ),
    )
    assert shares[1] + shares[2] < 1e-3


def test_the_prior_weighs_no_more_than_the_evidence_behind_the_estimate():
    # Few answers that look alike give a large empirical-Bayes strength; the draw is still as wide as
    # the 3 answers behind the estimate allow, not pinned to it.
    rng = np.random.default_rng(6)
    n = 20000
    drawn = posterior_draw(
        np.full(n, 0.5), np.full(n, 3.0), rng, own=OwnCounts(answers=0.0, errors=0.0, strength=4096.0)
    )
    assert drawn.mean() == pytest.approx(0.5, abs=0.01)
    assert drawn.std() > 0.15


def test_without_a_finer_cell_the_answers_behind_the_estimate_are_counted_once():
    # The fine cell is the estimate's own cluster (n_f = n = 6): the draw is those 6 answers under a
    # prior of PRIOR_COUNT answers centred on the estimate, however large the strength.
    rng = np.random.default_rng(8)
    n = 40000
    drawn = posterior_draw(np.full(n, 0.5), np.full(n, 6.0), rng, own=OwnCounts(6.0, 3.0, 4096.0))
    assert drawn.mean() == pytest.approx(0.5, abs=0.01)
    assert drawn.var() == pytest.approx(0.25 / 9, rel=0.05)  # Beta(4, 4): concentration 6 + 2


def test_the_own_posterior_follows_the_own_answers_under_a_weak_prior_and_the_estimate_under_a_strong_one():
    rng = np.random.default_rng(6)
    n = 20000
    weak = posterior_draw(np.full(n, 0.8), np.full(n, 400.0), rng, own=OwnCounts(40.0, 4.0, 0.25))
    strong = posterior_draw(np.full(n, 0.8), np.full(n, 400.0), rng, own=OwnCounts(40.0, 4.0, 4096.0))
    assert weak.mean() == pytest.approx((4 + 0.25 * 0.8) / 40.25, abs=0.005)  # its own 0.1, not 0.8
    # The weight is capped at the evidence behind the estimate beyond the cell's own 40 answers: 400 − 40 + 2.
    assert strong.mean() == pytest.approx((4 + 362 * 0.8) / 402, abs=0.005)


def test_own_posterior_keeps_unknown_evidence_and_nan_losses():
    drawn = posterior_draw(
        np.array([0.3, 0.4, np.nan]),
        np.array([np.inf, np.nan, 1.0]),
        np.random.default_rng(0),
        own=OwnCounts(answers=np.ones(3), errors=np.zeros(3), strength=np.ones(3)),
    )
    assert drawn[0] == 0.3 and drawn[1] == 0.4 and np.isnan(drawn[2])


def test_an_llm_without_own_counts_is_drawn_around_its_estimate_beside_one_with_them():
    rng = np.random.default_rng(7)
    n = 20000
    drawn = posterior_draw(
        np.tile([0.8, 0.8], (n, 1)),
        np.array([400.0, 400.0]),
        rng,
        own=OwnCounts(
            answers=np.array([40.0, np.nan]),  # LLM 1's profile was stored without error evidence
            errors=np.array([4.0, np.nan]),
            strength=np.array([0.25, 0.25]),
        ),
    )
    assert drawn[:, 0].mean() == pytest.approx(0.1, abs=0.01)
    assert drawn[:, 1].mean() == pytest.approx(0.8, abs=0.01)


def test_the_empirical_bayes_strength_is_small_for_a_specialist_and_large_for_a_generalist():
    answers = np.full(20, 10.0)
    specialist = np.where(np.arange(20) < 2, 0.0, 10.0)  # right on two cells, wrong on the rest
    generalist = np.full(20, 4.0)
    assert own_prior_weight(answers, specialist) <= 1.0
    assert own_prior_weight(answers, generalist) >= 100.0
    assert np.isnan(own_prior_weight(np.zeros(3), np.zeros(3)))


def test_drawn_marks_the_share_routed_on_a_draw_whether_or_not_the_choice_changed():
    losses = np.tile([0.2, 0.6, 0.6], (20000, 1))
    result = select_exploring(losses, np.array([200.0, 200.0, 200.0]), COSTS, share=0.1, rng=np.random.default_rng(9))
    assert result.drawn.mean() == pytest.approx(0.1, abs=0.01)
    assert not (result.explored & ~result.drawn).any()
    assert result.explored.mean() < 0.001


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_llms=st.integers(1, 6),
    quality_target=st.sampled_from([None, 0.6]),
    own_posterior=st.booleans(),
)
def test_every_choice_is_an_allowed_candidate_within_the_cap(seed, n_llms, quality_target, own_posterior):
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
    own = {}
    if own_posterior:
        answers = rng.choice([0.0, 1.0, 5.0, np.nan], size=(n, n_llms))
        own = {"own": OwnCounts(answers, rng.random((n, n_llms)) * answers, rng.choice([0.25, 4.0, 4096.0], n_llms))}
    if not fits.any(axis=1).all():
        with pytest.raises(NoCandidateError):
            select_exploring(losses, evidence, costs, share=1.0, rng=rng, allowed_mask=allowed, max_cost=cap, **own)
        return
    result = select_exploring(
        losses,
        evidence,
        costs,
        share=1.0,
        rng=rng,
        **own,
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
    np.testing.assert_allclose(evidence[: kmeans.n_clusters], expected)
    near = kmeans.evidence_at(validation.embeddings[:5], evidence[None, :])[:, 0]
    np.testing.assert_allclose(near, np.asarray(expected, dtype=float)[cluster[:5]])
    weighted = kmeans.evidence(validation.embeddings, correctness, sample_weight=np.full(len(correctness), 0.5))
    np.testing.assert_allclose(weighted, 0.5 * evidence)


def test_kmeans_fine_evidence_is_the_answered_count_of_the_prompt_s_finest_cluster(fitted):
    from routing.strategies.smoothing import fine_memberships

    strategies, validation = fitted
    kmeans = strategies["uniroute_kmeans"]
    fine = kmeans._fine_maps()
    assert fine is not None  # 80 validation prompts: finer maps than the strategy's own 10 clusters
    finest = np.argmax(fine_memberships(validation.embeddings, fine.centroids, fine.sizes)[-1], axis=1)
    correctness = validation.correctness[:, 1]
    evidence = kmeans.evidence(validation.embeddings, correctness)
    expected = np.array([np.sum((finest == k) & ~np.isnan(correctness)) for k in range(fine.sizes[-1])], float)
    np.testing.assert_allclose(kmeans.fine_cells(evidence), expected)
    near = kmeans.fine_evidence_at(validation.embeddings[:5], evidence[None, :])[:, 0]
    np.testing.assert_allclose(near, expected[finest[:5]])
    # Each answer counted once among the fine cells; a vector stored without them reads the own clusters.
    assert kmeans.fine_cells(evidence).sum() == pytest.approx((~np.isnan(correctness)).sum())
    own_only = evidence[None, : kmeans.n_clusters]
    np.testing.assert_allclose(
        kmeans.fine_evidence_at(validation.embeddings[:5], own_only),
        kmeans.evidence_at(validation.embeddings[:5], own_only),
    )


def test_knn_evidence_counts_the_answered_neighbours(fitted):
    strategies, validation = fitted
    knn = strategies["knn"].with_params(k=10)
    correctness = validation.correctness[:, 2].copy()
    correctness[::2] = np.nan
    evidence = knn.evidence(validation.embeddings, correctness)
    near = knn.evidence_at(validation.embeddings[:3], evidence[None, :])[:, 0]
    neighbours = knn.neighbours(validation.embeddings[:3])
    np.testing.assert_allclose(near, (~np.isnan(correctness[neighbours])).sum(axis=1))


@pytest.mark.parametrize("name", ALL)
def test_error_evidence_is_read_like_evidence_and_gives_the_own_error_near_a_prompt(name, fitted):
    strategies, validation = fitted
    strategy = strategies[name]
    correctness = validation.correctness[:, 0].copy()
    weight = np.linspace(0.5, 1.5, len(correctness))
    answers = strategy.evidence(validation.embeddings, correctness, sample_weight=weight)
    errors = strategy.error_evidence(validation.embeddings, correctness, sample_weight=weight)
    assert errors.shape == answers.shape
    assert (errors >= -1e-12).all() and (errors <= answers + 1e-9).all()
    # All wrong: the error evidence is the answered weight itself; all right: none.
    all_wrong = np.where(np.isnan(correctness), np.nan, 0.0)
    np.testing.assert_allclose(strategy.error_evidence(validation.embeddings, all_wrong, sample_weight=weight), answers)
    all_right = np.where(np.isnan(correctness), np.nan, 1.0)
    assert not strategy.error_evidence(validation.embeddings, all_right, sample_weight=weight).any()


def test_kmeans_error_evidence_is_the_error_count_of_the_prompt_s_cluster(fitted):
    strategies, validation = fitted
    kmeans = strategies["uniroute_kmeans"]
    cluster = kmeans.cluster_of(validation.embeddings)
    correctness = validation.correctness[:, 1]
    errors = kmeans.error_evidence(validation.embeddings, correctness)
    wrong = np.nan_to_num(1.0 - correctness, nan=0.0)
    expected = np.array([wrong[cluster == k].sum() for k in range(kmeans.n_clusters)])
    np.testing.assert_allclose(errors[: kmeans.n_clusters], expected)
    near = kmeans.evidence_at(validation.embeddings[:5], errors[None, :])[:, 0]
    np.testing.assert_allclose(near, expected[cluster[:5]])


def test_a_bad_sample_weight_is_refused(fitted):
    strategies, validation = fitted
    with pytest.raises(ValueError, match="sample_weight"):
        strategies["uniroute_kmeans"].evidence(
            validation.embeddings, validation.correctness[:, 0], sample_weight=-np.ones(len(validation.embeddings))
        )


def test_an_llm_with_few_answers_is_read_on_the_coarse_map_its_answers_fill_and_one_with_many_on_the_finest():
    from routing.strategies.smoothing import fine_memberships
    from tests.routing.strategies.test_smoothing import eight_topics, fitted

    data = eight_topics()
    kmeans = fitted("uniroute_kmeans", data)
    fine = kmeans._fine_maps()
    assert fine.sizes == [10, 20, 40, 80]
    embeddings, topic, _ = data["validation"]
    members = fine_memberships(embeddings, fine.centroids, fine.sizes)
    few = np.arange(30)
    specialist = (topic == 0).astype(float)
    many = kmeans.evidence(embeddings, specialist)
    some = kmeans.evidence(embeddings[few], specialist[few])
    some_errors = kmeans.error_evidence(embeddings[few], specialist[few])
    assert kmeans.evidence_level(many) == 3 and kmeans.evidence_level(some) == 0
    coarse = np.argmax(members[0], axis=1)
    expected = np.array([np.sum(coarse[few] == k) for k in range(10)], float)
    np.testing.assert_allclose(kmeans.fine_cells(some), expected)
    # The error vector is read on the map the answers chose, whatever its own sum.
    np.testing.assert_allclose(
        kmeans.fine_cells(some_errors, kmeans.evidence_level(some)),
        [np.sum((coarse[few] == k) & (topic[few] != 0)) for k in range(10)],
    )
    stacked = np.stack([many, some])
    near = kmeans.fine_evidence_at(embeddings[:5], stacked)
    finest = np.argmax(members[3], axis=1)
    np.testing.assert_allclose(near[:, 0], kmeans.fine_cells(many)[finest[:5]])
    np.testing.assert_allclose(near[:, 1], expected[coarse[:5]])
    own = own_counts_at(kmeans, embeddings[:5], stacked, np.stack([many * 0, some_errors]), np.ones(2))
    np.testing.assert_allclose(own.answers[:, 1], expected[coarse[:5]])
    assert (own.errors[:, 1] <= own.answers[:, 1]).all()

"""Strategies on data where the right routing is known."""

import numpy as np
import pytest

from routing.strategies import get_strategy
from routing.strategies.knn import KNearestNeighbours
from routing.strategies.learned_map import loss_and_gradient
from routing.strategies.profiles import one_hot, shrunk_cluster_errors
from tests.routing.strategies.conftest import LLM_KEYS, two_topic_embeddings

UNIVERSAL = ["uniroute_kmeans", "uniroute_learnedmap", "knn", "relative_maps", "routellm_mf"]


def specialist_and_generalist(validation_topic):
    """An unseen LLM right on every topic-0 prompt and wrong on every topic-1 prompt, and a coin flip."""
    specialist = (validation_topic == 0).astype(float)
    generalist = (np.arange(len(validation_topic)) % 2).astype(float)
    return specialist, generalist


@pytest.mark.parametrize("name", UNIVERSAL)
def test_prompts_of_the_topic_an_unseen_llm_masters_go_to_that_llm(name, train, validation):
    params = {
        "uniroute_kmeans": {"n_clusters": 2},
        "uniroute_learnedmap": {"n_clusters": 2},
        "knn": {"k": 5},
        "relative_maps": {"cluster_grid": (2, 3)},
        "routellm_mf": {"dim": 4},
    }[name]
    strategy = get_strategy(name, **params).fit(
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
    )
    specialist, generalist = specialist_and_generalist(validation.topic)
    profiles = np.stack([strategy.profile(validation.embeddings, c) for c in (specialist, generalist)])
    test_embeddings, test_topic = two_topic_embeddings(40, np.random.default_rng(9))
    best = np.argmin(strategy.predict_loss(test_embeddings, profiles), axis=1)
    np.testing.assert_array_equal(best, np.where(test_topic == 0, 0, 1))


def test_zero_router_predicts_each_llms_average_validation_error(train, validation):
    strategy = get_strategy("zero").fit(
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
    )
    correctness = np.array([1.0, 0.0, np.nan, 1.0])
    profile = strategy.profile(validation.embeddings[:4], correctness)
    np.testing.assert_allclose(profile, [1 / 3])
    np.testing.assert_allclose(
        strategy.predict_loss(validation.embeddings[:3], profile[None, :]), np.full((3, 1), 1 / 3)
    )


def test_cluster_errors_are_shrunk_towards_the_overall_error_by_the_prior():
    # Cluster 0: errors 1, 1 (n=2); cluster 1: errors 0, 0, 0, 1 and one missing answer (n=4). Overall 3/6.
    errors = np.array([1, 1, 0, 0, 0, 1, np.nan])
    memberships = one_hot(np.array([0, 0, 1, 1, 1, 1, 1]), 3)
    psi = shrunk_cluster_errors(memberships, errors, prior_strength=2.0)
    np.testing.assert_allclose(psi, [(2 + 2 * 0.5) / (2 + 2), (1 + 2 * 0.5) / (4 + 2), 0.5])  # empty cluster → 0.5


def test_knn_loss_is_the_mean_error_over_the_given_neighbours():
    profiles = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    losses = KNearestNeighbours.loss_from_neighbours(np.array([[0, 1], [2, 3]]), profiles)
    np.testing.assert_allclose(losses, [[0.5, 1.0], [0.5, 0.0]])


def test_knn_fills_a_missing_validation_answer_with_the_llms_mean_error(validation):
    strategy = get_strategy("knn", k=3).fit(
        validation.embeddings,
        validation.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
    )
    correctness = np.ones(len(validation.embeddings))
    correctness[:4] = [0, 0, np.nan, 0]
    profile = strategy.profile(validation.embeddings, correctness)
    assert profile[2] == pytest.approx(3 / (len(correctness) - 1))


def test_routoo_scores_known_llms_with_their_head_and_unseen_llms_with_the_fallback(train, validation):
    strategy = get_strategy("routoo_predictor").fit(
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
        llm_keys=LLM_KEYS,
    )
    known = strategy.profile(validation.embeddings, validation.correctness[:, 1], llm_key="topic1-expert")
    unseen = strategy.profile(validation.embeddings, validation.correctness[:, 1], llm_key="brand-new")
    assert not strategy.scores_with_fallback(known) and strategy.scores_with_fallback(unseen)
    assert known[0] == 1 and len(known) == len(unseen)
    test_embeddings, test_topic = two_topic_embeddings(40, np.random.default_rng(9))
    losses = strategy.predict_loss(test_embeddings, np.stack([known, unseen]))
    np.testing.assert_allclose(losses[:, 1], strategy.fallback_.predict_loss(test_embeddings, unseen[None, 1:])[:, 0])
    assert losses[test_topic == 1, 0].mean() < losses[test_topic == 0, 0].mean()  # the head learned its topic


def test_routoo_needs_the_training_llms_keys(train, validation):
    with pytest.raises(ValueError, match="llm_keys"):
        get_strategy("routoo_predictor").fit(
            train.embeddings,
            train.correctness,
            validation_embeddings=validation.embeddings,
            validation_correctness=validation.correctness,
        )


def test_the_relative_loss_ignores_how_hard_a_prompt_is_for_every_llm():
    answered = np.ones((2, 3), dtype=bool)
    targets = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    predicted = np.array([[0.2, 0.7, 0.9], [0.6, 0.3, 0.5]])
    everyone_worse = predicted + np.array([[0.05], [-0.1]])  # the same shift for all LLMs of a prompt
    relative = loss_and_gradient(predicted, targets, answered, "relative")[0]
    assert loss_and_gradient(everyone_worse, targets, answered, "relative")[0] == pytest.approx(relative)
    assert loss_and_gradient(everyone_worse, targets, answered, "log_loss")[0] != pytest.approx(
        loss_and_gradient(predicted, targets, answered, "log_loss")[0]
    )


def four_subject_maps(profile_prior: str):
    """A fitted relative_maps by hand: subjects at four orthogonal directions; a coarse member (K = 2)
    whose clusters each mix two subjects, and a fine one (K = 4) with one cluster per subject."""
    from routing.strategies.relative_maps import RelativeMapEnsemble

    strategy = RelativeMapEnsemble(cluster_grid=(2, 4), prior_strength=5.0, profile_prior=profile_prior)
    fine = 30.0 * np.eye(4)
    coarse = 30.0 * np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float)
    strategy.theta_ = np.vstack([coarse, fine]).astype(np.float32)
    strategy.bias_ = np.zeros(6, dtype=np.float32)
    strategy.cluster_sizes_, strategy.n_iter_ = [2, 4], [0, 0]
    subject = np.repeat(np.arange(4), 10)  # ten validation prompts per subject
    return strategy, np.eye(4, dtype=np.float32)[subject], subject


def test_nested_profiles_keep_a_specialists_subject_that_coarse_clusters_mix():
    losses = {}
    for prior in ("overall", "nested"):
        strategy, embeddings, subject = four_subject_maps(prior)
        specialist = (subject == 0).astype(float)  # right on subject 0 only; subject 1 shares its coarse cluster
        generalist = np.full(len(subject), 0.75)  # 75 % right everywhere
        profiles = np.stack([strategy.profile(embeddings, c) for c in (specialist, generalist)])
        losses[prior] = strategy.predict_loss(np.eye(4, dtype=np.float32)[:1], profiles)[0]
    # Shrunk towards its poor overall error, the specialist's own subject looks worse than the generalist…
    assert losses["overall"][0] > losses["overall"][1]
    # …shrunk towards the coarse cluster's estimate, it gets the subject it masters.
    assert losses["nested"][0] < losses["nested"][1]


def test_nested_profiles_equal_the_usual_ones_for_an_llm_equally_good_everywhere():
    profiles = {}
    for prior in ("overall", "nested"):
        strategy, embeddings, subject = four_subject_maps(prior)
        profiles[prior] = strategy.profile(embeddings, np.tile([1.0, 0.0, 1.0, 1.0], 10))  # 25 % errors everywhere
    np.testing.assert_allclose(profiles["nested"], profiles["overall"], atol=1e-6)


def test_kmeans_on_the_same_prompts_is_run_once_and_answers_the_same(monkeypatch):
    from routing.strategies import centroids

    runs = []
    real = centroids.KMeans

    class Counting(real):
        def fit(self, *args, **kwargs):
            runs.append(self.n_clusters)
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(centroids, "KMeans", Counting)
    points = np.random.default_rng(7).normal(size=(300, 8)).astype(np.float32)
    first = centroids.spherical_centroids(points, 5, n_init=2, random_state=11)
    first[:] = 0  # a caller's copy: changing it changes nothing remembered
    again = centroids.spherical_centroids(points.copy(), 5, n_init=2, random_state=11)
    assert runs == [5]
    expected = real(n_clusters=5, n_init=2, random_state=11).fit(points).cluster_centers_
    np.testing.assert_allclose(again, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    centroids.spherical_centroids(points, 5, n_init=2, random_state=12)  # another seed, another answer
    centroids.spherical_centroids(points[:200], 5, n_init=2, random_state=11)  # other prompts
    assert runs == [5, 5, 5]

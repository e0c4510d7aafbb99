"""Per-LLM profiles (``smoothing.py``): a specialist keeps what its answers show, a generalist is smoothed
as before, and LLMs at the edges (every answer right, or every answer wrong) are profiled."""

import numpy as np
import pytest

from routing.strategies import get_strategy
from routing.strategies.smoothing import (
    PRIOR_STRENGTH_GRID,
    cluster_counts,
    fine_sizes,
    own_prior_strength,
    thinned_counts,
)

N_TOPICS = 8
# Two clusters of their own: each mixes four topics, as a tuned coarse map mixes subjects.
PARAMS = {
    "uniroute_kmeans": {"n_clusters": 2, "prior_strength": 50.0},
    "uniroute_learnedmap": {"n_clusters": 2, "prior_strength": 50.0, "max_iter": 20},
    "relative_maps": {"cluster_grid": (2, 3), "prior_strength": 50.0, "max_iter": 20},
}


def topics(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    topic = np.arange(n) % N_TOPICS
    rng.shuffle(topic)
    embeddings = np.eye(16)[topic] + 0.15 * rng.normal(size=(n, 16))
    return (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32), topic


def generalists(topic: np.ndarray, rng, n_llms: int) -> np.ndarray:
    """LLMs right 45–75 % of the time on every topic (a little better on some)."""
    accuracy = rng.uniform(0.45, 0.75, size=(N_TOPICS, n_llms))
    return (rng.random((len(topic), n_llms)) < accuracy[topic]).astype(np.float64)


@pytest.fixture(scope="module")
def data():
    return eight_topics()


def eight_topics() -> dict:
    """Six generalist training LLMs, an unseen generalist, and test prompts over ``N_TOPICS`` topics."""
    rng = np.random.default_rng(0)
    train_embeddings, train_topic = topics(400, rng)
    validation_embeddings, validation_topic = topics(400, rng)
    test_embeddings, test_topic = topics(200, rng)
    return {
        "train": (train_embeddings, generalists(train_topic, rng, 6)),
        "validation": (validation_embeddings, validation_topic, generalists(validation_topic, rng, 6)),
        "unseen_generalist": generalists(validation_topic, rng, 1)[:, 0],
        "test": (test_embeddings, test_topic),
    }


def fitted(name, data, **params):
    train_embeddings, train_correctness = data["train"]
    validation_embeddings, _, validation_correctness = data["validation"]
    return get_strategy(name, **PARAMS[name], **params).fit(
        train_embeddings,
        train_correctness,
        validation_embeddings=validation_embeddings,
        validation_correctness=validation_correctness,
    )


@pytest.mark.parametrize("name", PARAMS)
def test_a_specialists_estimate_on_its_subject_stays_near_its_observed_error(name, data):
    strategy = fitted(name, data)
    validation_embeddings, validation_topic, _ = data["validation"]
    specialist = (validation_topic == 0).astype(np.float64)  # observed error 0 on topic 0, 1 elsewhere
    test_embeddings, test_topic = data["test"]

    predicted = strategy.predict_loss(test_embeddings, strategy.profile(validation_embeddings, specialist)[None, :])
    as_before = strategy.with_params(smoothing="tuned")
    predicted_as_before = as_before.predict_loss(
        test_embeddings, as_before.profile(validation_embeddings, specialist)[None, :]
    )

    assert predicted[test_topic == 0].mean() < 0.1
    assert predicted[test_topic != 0].mean() > 0.9
    assert predicted_as_before[test_topic == 0].mean() > 0.5  # the tuned prior pulls it to its average
    choice = strategy.profile_choice(validation_embeddings, specialist)
    assert choice["departs"] is True
    assert choice["departure"] > choice["threshold"]
    assert choice["prior_strength"] < 50.0
    assert choice["clusters"] > 3


@pytest.mark.parametrize("name", PARAMS)
def test_a_generalist_is_smoothed_exactly_as_with_the_tuned_prior(name, data):
    strategy = fitted(name, data)
    validation_embeddings, _, _ = data["validation"]
    generalist = data["unseen_generalist"]
    test_embeddings, _ = data["test"]
    as_before = strategy.with_params(smoothing="tuned")

    profile = strategy.profile(validation_embeddings, generalist)
    profile_as_before = as_before.profile(validation_embeddings, generalist)

    np.testing.assert_array_equal(
        strategy.predict_loss(test_embeddings, profile[None, :]),
        as_before.predict_loss(test_embeddings, profile_as_before[None, :]),
    )
    width = strategy._own_width()
    np.testing.assert_array_equal(profile[:width], profile_as_before[:width])  # the same Ψ
    choice = strategy.profile_choice(validation_embeddings, generalist)
    assert choice["departs"] is False
    assert choice["prior_strength"] == 50.0


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("answer", [0.0, 1.0])
def test_an_llm_with_every_answer_wrong_or_every_answer_right_is_profiled(name, answer, data):
    strategy = fitted(name, data)
    validation_embeddings, _, _ = data["validation"]
    test_embeddings, _ = data["test"]
    correctness = np.full(len(validation_embeddings), answer)
    correctness[::9] = np.nan  # some prompts unanswered

    predicted = strategy.predict_loss(test_embeddings, strategy.profile(validation_embeddings, correctness)[None, :])
    choice = strategy.profile_choice(validation_embeddings, correctness)

    np.testing.assert_allclose(predicted, 1.0 - answer, atol=1e-6)
    assert choice["departs"] is False
    assert all(value is None or np.isfinite(value) for value in choice.values() if not isinstance(value, bool))


@pytest.mark.parametrize("name", PARAMS)
def test_a_state_stored_without_fine_maps_profiles_every_llm_with_the_tuned_prior(name, data):
    strategy = fitted(name, data)
    validation_embeddings, validation_topic, _ = data["validation"]
    test_embeddings, _ = data["test"]
    state = strategy.get_state()
    for attribute in strategy.fine_attributes:
        state.pop(attribute)
    restored = type(strategy).from_state(state)
    as_before = strategy.with_params(smoothing="tuned")
    specialist = (validation_topic == 0).astype(np.float64)

    profile = restored.profile(validation_embeddings, specialist)

    assert len(profile) == strategy._own_width()
    np.testing.assert_allclose(
        restored.predict_loss(test_embeddings, profile[None, :]),
        as_before.predict_loss(test_embeddings, as_before.profile(validation_embeddings, specialist)[None, :]),
    )
    assert restored.profile_choice(validation_embeddings, specialist)["departs"] is False


def test_the_empirical_bayes_strength_is_weak_for_spread_clusters_and_strong_for_alike_ones():
    memberships = np.repeat(np.eye(10), 30, axis=0)  # 10 clusters of 30 answers
    alike = np.tile([0.0, 1.0], 150)  # every cluster at 50 % error
    spread = np.repeat([0.0, 1.0], 150)  # five clusters all right, five all wrong

    strength_alike, departure_alike = own_prior_strength(cluster_counts(memberships, alike), 0.5, 20.0)
    strength_spread, departure_spread = own_prior_strength(cluster_counts(memberships, spread), 0.5, 20.0)

    assert strength_alike == PRIOR_STRENGTH_GRID.max()
    assert strength_spread == PRIOR_STRENGTH_GRID.min()
    assert departure_spread > 50 > departure_alike >= 0


def test_the_finer_resolutions_are_the_finest_the_validation_set_can_profile_and_its_halvings():
    assert fine_sizes(1199, base_clusters=10) == [29, 59, 119, 239]  # 5 answers per cluster at the finest
    assert fine_sizes(1199, base_clusters=80) == [119, 239]  # only maps finer than the strategy's own
    assert fine_sizes(406, base_clusters=10) == [20, 40, 81]
    assert fine_sizes(50, base_clusters=10) == []  # too few answers for anything finer: no fine maps


def test_an_llm_with_few_answers_is_tested_against_the_training_llms_thinned_to_its_size(data):
    # 80 validation answers of 400: a specialist's departure is far smaller than with all of them, and
    # the training LLMs' departures, read on as few answers, are smaller too; a generalist with as few
    # answers stays below its threshold on every sample.
    strategy = fitted("uniroute_kmeans", data)
    validation_embeddings, validation_topic, _ = data["validation"]
    rng = np.random.default_rng(1)
    departed = []
    for _ in range(10):
        few = np.sort(rng.permutation(len(validation_embeddings))[:80])
        specialist = strategy.profile_choice(validation_embeddings[few], (validation_topic[few] == 0).astype(float))
        generalist = strategy.profile_choice(validation_embeddings[few], data["unseen_generalist"][few])
        all_answers = strategy.profile_choice(validation_embeddings, (validation_topic == 0).astype(float))
        assert specialist["departs"] is True
        assert specialist["threshold"] <= all_answers["threshold"]
        departed.append(generalist["departs"])
    assert not any(departed)


def test_thinned_counts_keep_a_share_of_each_cluster_s_answers_and_errors():
    counts = np.array([[400.0, 40.0, 0.0], [100.0, 40.0, 0.0]])
    thinned = np.mean([thinned_counts(counts, 0.25, np.random.default_rng(seed)) for seed in range(400)], axis=0)
    np.testing.assert_allclose(thinned, 0.25 * counts, rtol=0.05, atol=0.05)
    one = thinned_counts(counts, 0.25, np.random.default_rng(0))
    assert (one[1] <= one[0]).all() and (one >= 0).all()
    np.testing.assert_array_equal(thinned_counts(counts, 1.0, np.random.default_rng(0)), counts)


def test_an_llm_is_tested_on_the_finest_map_its_answers_fill():
    from routing.strategies.smoothing import FineMaps

    every_map = FineMaps(np.zeros((0, 4)), [20, 40, 81], np.zeros((2, 141, 3)), np.zeros(3))
    assert every_map.test_level(406) == 2  # 5 answers per cluster of the finest map
    assert every_map.test_level(400) == 1  # a few short of it: the next coarser
    assert every_map.test_level(100) == 0
    assert every_map.test_level(50) == 0  # fewer than any map is filled by: the coarsest
    np.testing.assert_array_equal(every_map.training_counts_at(1), np.zeros((2, 40, 3)))
    # A state stored with the training counts of the finest map alone tests every LLM there.
    finest_alone = FineMaps(np.zeros((0, 4)), [20, 40, 81], np.zeros((2, 81, 3)), np.zeros(3))
    assert finest_alone.test_level(50) == 2
    assert finest_alone.training_counts_at(2).shape == (2, 81, 3)


def test_a_specialist_with_few_answers_departs_on_a_map_coarse_enough_to_hear_it(data):
    # 24 answers spread over 80 fine clusters leave most clusters with one answer or none, which is as
    # likely under any prior strength: tested there, a specialist hardly ever departs. On the map its
    # answers fill (10 clusters) it departs nearly always, and a generalist still hardly ever does.
    strategy = fitted("uniroute_kmeans", data)
    assert strategy.fine_sizes_ == [10, 20, 40, 80]
    finest_alone = fitted("uniroute_kmeans", data)
    finest_alone.smoothing_counts_ = strategy.smoothing_counts_[:, -80:]  # a state holding the finest map's alone
    validation_embeddings, validation_topic, _ = data["validation"]
    rng = np.random.default_rng(1)
    departs = {"specialist": 0, "specialist, finest map": 0, "generalist": 0, "generalist, finest map": 0}
    for _ in range(20):
        few = np.sort(rng.permutation(len(validation_embeddings))[:24])
        for who, correctness in (
            ("specialist", (validation_topic[few] == 0).astype(float)),
            ("generalist", data["unseen_generalist"][few]),
        ):
            choice = strategy.profile_choice(validation_embeddings[few], correctness)
            departs[who] += choice["departs"]
            departs[f"{who}, finest map"] += finest_alone.profile_choice(validation_embeddings[few], correctness)[
                "departs"
            ]
    assert departs["specialist"] >= 15 and departs["specialist, finest map"] <= 3
    assert departs["generalist"] <= 1 and departs["generalist, finest map"] <= 1

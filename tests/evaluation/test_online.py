"""The online replay on small array data sets: what feedback changes, and what it must not."""

import json

import numpy as np
import pytest

from evaluation.online import OnlineSettings, run_online

# Exploration on: an LLM that four validation answers make look worse than it is gets traffic only by exploring.
SETTINGS = OnlineSettings(
    events=300, checkpoint_every=100, reprofile_every=25, new_llm_prompts=4, specialists=0, exploration=0.5
)
KMEANS = {"n_clusters": 2, "prior_strength": 5.0}


def topics(accuracy: np.ndarray, costs, *, n=1500, dim=6, seed=0):
    """Prompts of two topics (well-separated embeddings); LLM j is right on topic t with accuracy[j, t]."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    embeddings = np.eye(dim)[topic] + 0.2 * rng.normal(size=(n, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    correctness = (rng.random((n, len(accuracy))) < accuracy[:, topic].T).astype(float)
    return (
        embeddings.astype(np.float32),
        correctness,
        np.asarray(costs, dtype=float),
        [f"llm-{j}" for j in range(len(costs))],
    )


def replayed(data, settings=SETTINGS, trials=2):
    embeddings, correctness, costs, names = data
    return run_online(
        embeddings,
        correctness,
        costs,
        names,
        trials=trials,
        seed=1,
        tuning=False,
        strategy_params=KMEANS,
        settings=settings,
    )


# Each LLM is right on one topic and wrong on the other, or middling on both: which one to ask depends on the topic.
INFORMATIVE = np.array([[0.95, 0.1], [0.1, 0.95], [0.6, 0.6]] * 3)
COSTS = [1.0, 0.9, 0.5, 0.8, 0.7, 0.3, 0.6, 0.65, 0.4]


@pytest.fixture(scope="module")
def informative():
    return replayed(topics(INFORMATIVE, COSTS))


def test_a_new_llm_registered_with_few_prompts_closes_its_gap_from_feedback(informative):
    start, end = informative["new_llm"][0], informative["new_llm"][-1]
    assert start["events"] == 0 and end["events"] == 300
    assert start["gap"] > 0.02  # four validation prompts misplace an LLM whose topics matter
    assert end["gap"] < 0.25 * start["gap"]
    assert end["gap_closed"] > 0.75 and end["closed_vs_static"] > 0.75


def test_figures_are_per_checkpoint_and_json(informative):
    assert [row["events"] for row in informative["checkpoints"]] == [0, 100, 200, 300]
    first, last = informative["checkpoints"][0], informative["checkpoints"][-1]
    assert first["static_area"] == first["learning_area"]  # the same profiles before any feedback
    assert "static_window_accuracy" not in first and 0 <= last["learning_window_cost"] <= 1
    assert 0 < last["learning_window_explored"] <= 0.5 and last["static_window_explored"] == 0.0
    assert informative["events"] == [300, 300] and informative["settings"]["reprofile_every"] == 25
    json.dumps(informative, allow_nan=False)


def test_feedback_without_information_does_not_improve_the_router():
    # Every LLM right half of the time on every prompt: feedback says nothing about where to route.
    result = replayed(topics(np.full((6, 2), 0.5), [1.0, 0.7, 0.4, 0.2, 0.8, 0.6]))
    for row in result["checkpoints"][1:]:
        assert abs(row["learning_window_accuracy"] - 0.5) < 0.08
        assert row["learning_area"] < row["static_area"] + 0.02
    assert result["new_llm"][-1]["full_area"] < result["new_llm"][0]["full_area"] + 0.02


def test_constant_feedback_changes_nothing():
    # Each LLM always right or always wrong: its validation answers already say all its feedback will.
    always = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    result = replayed(topics(always, [1.0, 0.2, 0.5]), trials=1)
    for row in result["checkpoints"][1:]:
        assert row["learning_area"] == row["static_area"]
        assert row["learning_window_accuracy"] == row["static_window_accuracy"] == 1.0


def test_without_exploration_nothing_explores_and_a_specialist_is_scored():
    embeddings, correctness, costs, names = topics(INFORMATIVE, COSTS, n=900)
    categories = np.where(embeddings[:, 0] > embeddings[:, 1], "first", "second")
    settings = OnlineSettings(
        events=100, checkpoint_every=50, reprofile_every=25, new_llm_prompts=20, new_llms=0, specialists=1
    )
    result = run_online(
        embeddings,
        correctness,
        costs,
        names,
        trials=1,
        seed=1,
        tuning=False,
        strategy_params=KMEANS,
        settings=settings,
        categories=categories,
    )
    assert result["checkpoints"][-1]["learning_window_explored"] == 0.0
    assert result["new_llm"] == []
    specialists = result["specialists"]
    assert [row["events"] for row in specialists] == [0, 50, 100] and specialists[0]["specialists"] == 1
    assert all(0.0 <= row["recall"] <= 1.0 for row in specialists)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "knn"}, "knn cannot learn from feedback"),
        ({"strategy": "routoo_predictor"}, "routoo_predictor is not universal"),
        (
            {"settings": OnlineSettings(checkpoint_every=100, reprofile_every=30)},
            "must be a multiple of reprofile_every",
        ),
        ({"settings": OnlineSettings(exploration=1.5)}, "exploration must lie in [0, 1]"),
        (
            {"settings": OnlineSettings(events=5000, checkpoint_every=1000, reprofile_every=50)},
            "no window of 1000 events",
        ),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    embeddings, correctness, costs, names = topics(INFORMATIVE, COSTS, n=300)
    with pytest.raises(ValueError) as error:
        run_online(embeddings, correctness, costs, names, trials=1, tuning=False, strategy_params=KMEANS, **kwargs)
    assert message in str(error.value)

"""The unseen-LLM protocol end to end on a small synthetic set where prompt topics matter."""

import json

import numpy as np
import pytest

from evaluation.engine import run_protocol
from evaluation.plots import plot_deferral_curves
from evaluation.protocol import make_splits


def topic_dataset(seed=0, n=400, dim=8):
    """Two topics; half the LLMs are good on topic 0, half on topic 1; expensive ones are better overall."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    embeddings = np.eye(dim)[topic] + 0.3 * rng.normal(size=(n, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    strength = np.array(
        [[0.9, 0.3], [0.3, 0.9], [0.8, 0.4], [0.4, 0.8], [0.95, 0.6], [0.6, 0.95], [0.7, 0.7], [0.5, 0.5], [0.85, 0.35]]
    )
    correctness = (rng.random((n, len(strength))) < strength[:, topic].T).astype(float)
    correctness[rng.random(correctness.shape) < 0.02] = np.nan
    costs = np.array([1.0, 1.0, 0.5, 0.5, 4.0, 4.0, 2.0, 0.3, 1.5])
    return embeddings.astype(np.float32), correctness, costs, [f"llm-{j}" for j in range(len(costs))]


@pytest.fixture(scope="module")
def result():
    embeddings, correctness, costs, names = topic_dataset()
    return run_protocol(
        embeddings,
        correctness,
        costs,
        names,
        strategies=["knn", "uniroute_kmeans"],
        trials=4,
        seed=3,
        strategy_params={"uniroute_kmeans": {"n_clusters": 2}, "knn": {"k": 10}},
    )


def test_the_result_has_every_method_and_only_json_values(result):
    assert list(result["methods"]) == ["zero", "knn", "uniroute_kmeans", "oracle", "random"]
    for figures in result["methods"].values():
        assert set(figures) == {"area", "area_se", "area50", "qnc_median", "gain_vs_zero", "gain_vs_zero_se"}
    assert set(result["timings"]) == {"fit_s", "profile_ms", "predict_one_ms"}
    json.dumps(result, allow_nan=False)


def test_topic_aware_routing_beats_zero_router_and_no_router_beats_the_oracle(result):
    methods = result["methods"]
    assert methods["zero"]["gain_vs_zero"] == 0
    assert methods["uniroute_kmeans"]["gain_vs_zero"] > 2 * methods["uniroute_kmeans"]["gain_vs_zero_se"]
    for name in ("zero", "knn", "uniroute_kmeans", "random"):
        assert methods[name]["area"] < methods["oracle"]["area"]


def test_the_same_seed_gives_the_same_figures():
    embeddings, correctness, costs, names = topic_dataset()
    runs = [
        run_protocol(embeddings, correctness, costs, names, strategies=["uniroute_kmeans"], trials=2, seed=5)
        for _ in range(2)
    ]
    assert runs[0]["methods"] == runs[1]["methods"]


def test_splits_are_60_10_30_with_a_third_of_the_llms_unseen():
    split = make_splits(1000, 9, trials=1, seed=0)[0]
    assert (len(split.train_prompts), len(split.validation_prompts), len(split.test_prompts)) == (600, 100, 300)
    assert (len(split.train_llms), len(split.test_llms)) == (6, 3)
    everything = np.concatenate([split.train_prompts, split.validation_prompts, split.test_prompts])
    assert sorted(everything) == list(range(1000))
    assert not set(split.train_llms) & set(split.test_llms)


def test_the_plot_is_written_as_a_png(result, tmp_path):
    path = plot_deferral_curves(result, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

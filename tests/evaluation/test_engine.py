"""The unseen-LLM protocol end to end on a small synthetic set where prompt topics matter."""

import json

import numpy as np
import pytest

from evaluation.engine import run_protocol
from evaluation.plots import plot_deferral_curves
from evaluation.protocol import make_domain_shift_splits, make_splits


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


def topic_categories(seed=0, n=400):
    """The topic of each prompt of ``topic_dataset`` (same draws), as category names."""
    return np.where(np.random.default_rng(seed).integers(0, 2, n) == 0, "alpha", "beta")


@pytest.fixture(scope="module")
def result():
    embeddings, correctness, costs, names = topic_dataset()
    return run_protocol(
        embeddings,
        correctness,
        costs,
        names,
        strategies=["knn", "uniroute_kmeans", "clairvoyant"],
        trials=4,
        seed=3,
        strategy_params={"uniroute_kmeans": {"n_clusters": 2}},
        categories=topic_categories(),
    )


def test_the_result_has_every_method_and_only_json_values(result):
    assert list(result["methods"]) == ["zero", "knn", "uniroute_kmeans", "clairvoyant", "oracle", "random"]
    for figures in result["methods"].values():
        assert set(figures) == {"area", "area_se", "area50", "qnc_median", "gain_vs_zero", "gain_vs_zero_se"}
    assert set(result["timings"]) == {"tune_s", "fit_s", "profile_ms", "predict_one_ms"}
    json.dumps(result, allow_nan=False)


def test_tuning_runs_inside_every_split_and_holds_given_parameters_fixed(result):
    kmeans, knn = result["tuning"]["uniroute_kmeans"], result["tuning"]["knn"]
    assert len(kmeans["per_trial"]) == len(knn["per_trial"]) == 4
    assert "n_clusters" not in kmeans["chosen_counts"] and "prior_strength" in kmeans["chosen_counts"]
    assert sum(knn["chosen_counts"]["k"].values()) == 4
    assert result["timings"]["tune_s"]["knn"] > 0
    assert "clairvoyant" not in result["tuning"]


def test_a_specialist_of_one_topic_gets_that_topic(result):
    for name in ("knn", "uniroute_kmeans", "clairvoyant"):
        figures = result["specialists"][name]
        assert figures["recall"] > 0.6, name
        assert figures["false_share"] < 0.05, name
        assert figures["gain_on_category"] > 0.05 and figures["change_elsewhere"] <= 0
    assert result["specialists"]["clairvoyant"]["recall"] > 0.9  # it was trained on the specialist's own outcomes
    # ZeroRouter sees only the specialist's average (right on half the prompts, below the best LLMs): never chosen.
    assert result["specialists"]["zero"]["recall"] == 0.0


def test_gains_are_reported_by_category(result):
    assert set(result["per_category"]) == {"alpha", "beta"}
    for by_method in result["per_category"].values():
        assert by_method["zero"]["gain_vs_zero"] == 0 and by_method["zero"]["trials"] == 4
        assert by_method["uniroute_kmeans"]["gain_vs_zero"] >= 0
        assert by_method["oracle"]["gain_vs_zero"] > by_method["uniroute_kmeans"]["gain_vs_zero"]
    # On one topic the LLMs best overall are also best, so routing by topic gains only on the other.
    assert max(c["uniroute_kmeans"]["gain_vs_zero"] for c in result["per_category"].values()) > 0.1


def test_the_clairvoyant_reference_lies_between_zero_router_and_the_oracle(result):
    methods = result["methods"]
    assert methods["zero"]["area"] < methods["clairvoyant"]["area"] < methods["oracle"]["area"]


def test_domain_shift_splits_keep_train_and_test_categories_apart():
    categories = np.repeat(np.array(["a", "b", "c", "d", "e"]), [100, 200, 50, 150, 100])
    for split in make_domain_shift_splits(categories, 9, trials=5, seed=1):
        train, held_out = set(categories[split.train_prompts]), set(categories[split.test_prompts])
        assert train and held_out and not train & held_out
        assert set(categories[split.validation_prompts]) <= held_out
        assert 0.4 <= len(split.train_prompts) / len(categories) <= 0.8
        assert len(split.validation_prompts) == pytest.approx(len(split.test_prompts) / 3, abs=1)
        assert (len(split.train_llms), len(split.test_llms)) == (6, 3)


def test_the_domain_shift_protocol_runs_end_to_end():
    embeddings, correctness, costs, names = topic_dataset(n=400)
    categories = np.array(["a", "b", "c", "d"])[np.arange(400) % 4]
    shifted = run_protocol(
        embeddings,
        correctness,
        costs,
        names,
        strategies=["uniroute_kmeans"],
        trials=2,
        seed=0,
        protocol="domain-shift",
        categories=categories,
        tuning=False,
    )
    assert shifted["protocol"]["name"] == "domain-shift" and "categories" in shifted["protocol"]["prompts"]
    assert shifted["methods"]["oracle"]["area"] > shifted["methods"]["zero"]["area"]


def test_topic_aware_routing_beats_zero_router_and_no_router_beats_the_oracle(result):
    methods = result["methods"]
    assert methods["zero"]["gain_vs_zero"] == 0
    assert methods["uniroute_kmeans"]["gain_vs_zero"] > 2 * methods["uniroute_kmeans"]["gain_vs_zero_se"]
    for name in ("zero", "knn", "uniroute_kmeans", "random"):
        assert methods[name]["area"] < methods["oracle"]["area"]


def test_the_same_seed_gives_the_same_figures():
    embeddings, correctness, costs, names = topic_dataset()
    runs = [
        run_protocol(
            embeddings, correctness, costs, names, strategies=["uniroute_kmeans"], trials=2, seed=5, tuning=False
        )
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


def test_a_post_fit_variant_is_scored_on_the_same_fit_and_a_no_op_variant_equals_its_strategy():
    embeddings, correctness, costs, names = topic_dataset()
    result = run_protocol(
        embeddings,
        correctness,
        costs,
        names,
        strategies=["uniroute_kmeans"],
        trials=2,
        seed=3,
        strategy_params={"uniroute_kmeans": {"n_clusters": 2, "prior_strength": 5.0}},
        tuning=False,
        variants=[("uniroute_kmeans", {"prior_strength": 5.0}), ("uniroute_kmeans", {"prior_strength": 500.0})],
        categories=topic_categories(),
    )
    same, blurred = "uniroute_kmeans[prior_strength=5.0]", "uniroute_kmeans[prior_strength=500.0]"
    assert result["per_trial_area"][same] == result["per_trial_area"]["uniroute_kmeans"]
    assert result["specialists"][same]["recall"] == result["specialists"]["uniroute_kmeans"]["recall"]
    # a prior worth 500 prompts pulls every cluster to the LLM's average: less routing by topic
    assert result["methods"][blurred]["area"] < result["methods"]["uniroute_kmeans"]["area"]
    assert blurred in result["per_category"]["alpha"]
    with pytest.raises(ValueError, match="variants need their strategy"):
        run_protocol(
            embeddings, correctness, costs, names, strategies=["knn"], trials=1, variants=[("uniroute_kmeans", {})]
        )


def test_auto_scores_in_each_split_the_strategy_the_tuning_picks():
    embeddings, correctness, costs, names = topic_dataset()
    result = run_protocol(
        embeddings,
        correctness,
        costs,
        names,
        strategies=["knn", "uniroute_kmeans", "auto"],
        trials=3,
        seed=3,
        strategy_params={"uniroute_kmeans": {"n_clusters": 2}},
        categories=topic_categories(),
    )

    chosen = result["auto_choices"]["per_trial"]
    assert len(chosen) == 3 and set(chosen) <= {"zero", "knn", "uniroute_kmeans"}
    for trial, name in enumerate(chosen):
        scores = {s: result["tuning"][s]["per_trial"][trial]["score"] for s in ("zero", "knn", "uniroute_kmeans")}
        assert scores[name] == max(scores.values())  # the best cross-validated score of the split
        assert result["per_trial_area"]["auto"][trial] == result["per_trial_area"][name][trial]
    assert "auto" in result["specialists"] and "auto" not in result["tuning"]
    with pytest.raises(ValueError, match="needs tuning on"):
        run_protocol(embeddings, correctness, costs, names, strategies=["knn", "auto"], trials=1, tuning=False)

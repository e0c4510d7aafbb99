"""Self-tuning on arrays: it picks what the data calls for, holds fixed what it is told, and a
candidate tried without a refit is exactly the strategy a refit would give."""

import numpy as np
import pytest

from routing.strategies import get_strategy
from routing.strategies.tuning import Budget, SearchSpace, auto_choice, search_space, tune, tuned_fit
from tests.routing.strategies.conftest import outcomes

# Six training LLMs, each strong on one of two topics (or neither): which LLM to route to depends on the topic.
TOPIC_LLMS = [(0.9, 0.2), (0.2, 0.9), (0.85, 0.3), (0.3, 0.85), (0.6, 0.6), (0.95, 0.1)]
COSTS = np.array([1.0, 1.0, 0.5, 0.5, 0.2, 2.0])


@pytest.fixture(scope="module")
def data():
    return outcomes(600, 11, TOPIC_LLMS), outcomes(200, 12, TOPIC_LLMS)


def run(name, data, **kwargs):
    train, validation = data
    return tune(
        name,
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
        **kwargs,
    )


def test_tuning_prefers_clusters_that_separate_the_topics_over_one_cluster(data):
    space = SearchSpace(fit=[{"n_clusters": 1}, {"n_clusters": 2}], post_fit=[{"prior_strength": 5.0}])
    tuning = run("uniroute_kmeans", data, costs=COSTS, space=space)
    assert tuning.params == {"n_clusters": 2, "prior_strength": 5.0}
    by_k = {c.params["n_clusters"]: c.score for c in tuning.candidates}
    assert by_k[2] > by_k[1] + 0.05  # routing by topic is worth far more than noise between candidates
    assert tuning.folds == 3 and all(len(c.fold_scores) == 3 for c in tuning.candidates)
    assert tuning.criterion == "area under the deferral curve"


def test_held_fixed_hyper_parameters_are_not_searched(data):
    tuning = run("uniroute_kmeans", data, costs=COSTS, fixed={"n_clusters": 5})
    assert tuning.params["n_clusters"] == 5 and tuning.fixed == {"n_clusters": 5}
    assert {c.params.get("n_clusters") for c in tuning.candidates} == {None}
    assert set(tuning.chosen) == {"prior_strength"}
    assert tuning.as_json()["chosen"] == tuning.chosen


def test_a_mistyped_fixed_hyper_parameter_fails_before_any_work(data):
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        run("knn", data, fixed={"neighbours": 5})


def test_too_few_training_llms_leave_the_defaults_and_say_why(data):
    train, validation = data
    tuning = tune(
        "knn",
        train.embeddings,
        train.correctness[:, :3],
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness[:, :3],
    )
    assert tuning.params == {} and tuning.score is None and tuning.candidates == []
    assert "at least 4 training LLMs" in tuning.note


def test_the_same_seed_gives_the_same_choice_and_scores(data):
    first, second = run("knn", data, costs=COSTS, seed=4), run("knn", data, costs=COSTS, seed=4)
    assert first.params == second.params
    assert [c.score for c in first.candidates] == [c.score for c in second.candidates]


def test_the_work_is_bounded_by_the_prompt_caps(data):
    tuning = run("knn", data, costs=COSTS, max_fit_prompts=100, max_score_prompts=50)
    assert (tuning.fit_prompts, tuning.score_prompts) == (100, 50)


def test_without_costs_the_criterion_is_the_accuracy_of_the_routed_choice(data):
    tuning = run("knn", data)
    assert tuning.criterion.startswith("accuracy")
    assert 0.5 < tuning.score <= 1.0


def test_tuned_fit_fits_the_chosen_hyper_parameters_on_all_the_data(data):
    train, validation = data
    strategy, tuning = tuned_fit(
        "knn",
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
        costs=COSTS,
    )
    assert strategy.k == tuning.params["k"]
    assert len(strategy.validation_embeddings_) == len(validation.embeddings)


def test_grids_shrink_with_a_small_validation_set():
    assert [e["n_clusters"] for e in search_space("uniroute_kmeans", n_validation=200).fit] == [5, 10, 20]
    assert [e["k"] for e in search_space("knn", n_validation=60).post_fit] == [10, 20]


def test_the_quick_budget_holds_l2_at_its_default_and_uses_fewer_prompts(data):
    full = search_space("relative_maps", n_validation=1200)
    quick = search_space("relative_maps", n_validation=1200, budget="quick")
    assert {e["l2"] for e in full.fit} == {1e-7, 1e-5} and [e["l2"] for e in quick.fit] == [1e-7]
    assert quick.post_fit == full.post_fit  # post-fit candidates cost no fit: all kept
    assert len(search_space("uniroute_learnedmap", n_validation=1200, budget="quick").fit) == 3
    tuning = run("uniroute_kmeans", data, costs=COSTS, budget="quick")
    assert tuning.budget == "quick" and tuning.fit_prompts + tuning.score_prompts <= 1500 + 1000
    with pytest.raises(ValueError, match="tuning budget"):
        run("uniroute_kmeans", data, budget="tiny")


def test_a_budget_with_a_final_fit_cap_fits_on_a_seeded_sample_of_the_train_prompts(data):
    train, validation = data
    kwargs = dict(validation_embeddings=validation.embeddings, validation_correctness=validation.correctness)
    budget = Budget("small", 300, 100, max_final_prompts=200)
    fitted, tuning = tuned_fit("uniroute_kmeans", train.embeddings, train.correctness, **kwargs, budget=budget)
    again, _ = tuned_fit("uniroute_kmeans", train.embeddings, train.correctness, **kwargs, budget=budget)
    assert tuning.final_fit_prompts == 200 < len(train.embeddings)
    np.testing.assert_array_equal(fitted.centroids_, again.centroids_)
    _, uncapped = tuned_fit("uniroute_kmeans", train.embeddings, train.correctness, **kwargs, budget="quick")
    assert uncapped.final_fit_prompts == len(train.embeddings)


def test_nested_profiles_are_tried_only_with_a_coarser_member():
    post_fit = search_space("relative_maps", n_validation=1200).post_fit
    nested = [e["cluster_grid"] for e in post_fit if e["profile_prior"] == "nested"]
    assert nested and all(len(grid) > 1 for grid in nested)


@pytest.mark.parametrize(
    "name, fit_params, post_params",
    [
        ("uniroute_kmeans", {"n_clusters": 3}, {"prior_strength": 20.0}),
        ("uniroute_learnedmap", {"n_clusters": 3, "max_iter": 20}, {"prior_strength": 1.0}),
        ("relative_maps", {"cluster_grid": (2, 3, 4), "max_iter": 20}, {"cluster_grid": (3, 4), "prior_strength": 2.0}),
        (
            "relative_maps",
            {"cluster_grid": (2, 3, 4), "max_iter": 20},
            {"cluster_grid": (2, 4), "profile_prior": "nested"},
        ),
        ("routellm_mf", {"dim": 4, "max_iter": 30}, {"profile_l2": 3.0}),
        ("knn", {}, {"k": 7}),
    ],
)
def test_a_post_fit_candidate_equals_a_fresh_fit_with_those_values(name, fit_params, post_params, data):
    train, validation = data
    args = (train.embeddings, train.correctness)
    kwargs = dict(validation_embeddings=validation.embeddings, validation_correctness=validation.correctness)
    view = get_strategy(name, **fit_params).fit(*args, **kwargs).with_params(**post_params)
    fresh = get_strategy(name, **{**fit_params, **post_params}).fit(*args, **kwargs)
    unseen = validation.correctness[:, 0]
    np.testing.assert_allclose(
        view.profile(validation.embeddings, unseen), fresh.profile(validation.embeddings, unseen)
    )
    profiles = np.stack([fresh.profile(validation.embeddings, validation.correctness[:, j]) for j in range(2)])
    np.testing.assert_allclose(
        view.predict_loss(train.embeddings[:50], profiles),
        fresh.predict_loss(train.embeddings[:50], profiles),
        atol=1e-6,
    )


def test_changing_a_fit_time_hyper_parameter_without_a_refit_is_refused(data):
    train, validation = data
    strategy = get_strategy("uniroute_kmeans", n_clusters=2).fit(
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
    )
    with pytest.raises(ValueError, match="needs a refit to change n_clusters"):
        strategy.with_params(n_clusters=3)


def test_auto_picks_the_best_score_the_first_of_ties_and_never_an_unscored_strategy():
    assert auto_choice({"zero": 0.61, "knn": 0.64, "uniroute_kmeans": 0.63}) == "knn"
    assert auto_choice({"knn": 0.64, "relative_maps": 0.64}) == "knn"
    assert auto_choice({"relative_maps": 0.64, "knn": 0.64}) == "relative_maps"
    assert auto_choice({"routoo_predictor": None, "zero": 0.1}) == "zero"
    assert auto_choice({"routoo_predictor": None}) is None and auto_choice({}) is None


def test_a_score_to_compare_strategies_comes_from_fresh_folds_not_the_ones_the_choice_was_made_on(data):
    space = SearchSpace(fit=[{}], post_fit=[{"k": k} for k in (5, 10, 20, 40, 80)])
    alone = run("knn", data, costs=COSTS, space=space, seed=3)
    compared = run("knn", data, costs=COSTS, space=space, seed=3, score_single=True)
    again = run("knn", data, costs=COSTS, space=space, seed=3, score_single=True)

    best = max(c.score for c in compared.candidates)
    assert compared.params == alone.params and compared.candidates == alone.candidates  # the same choice
    assert alone.score == alone.selection_score == best and alone.comparison_folds == 0
    assert compared.selection_score == best and compared.comparison_folds == 9  # three fresh deals of 3 folds
    assert compared.score != best and abs(compared.score - best) < 0.05
    # each fresh fold's score is kept, for paired comparisons between strategies
    assert len(compared.comparison_scores) == 9 and compared.score == pytest.approx(np.mean(compared.comparison_scores))
    assert alone.comparison_scores == []
    # the same folds for every strategy (and every run) with the same seed: scores compare
    assert (again.score, again.comparison_folds) == (compared.score, compared.comparison_folds)
    fresh_only = tune(
        "knn",
        data[0].embeddings,
        data[0].correctness,
        validation_embeddings=data[1].embeddings,
        validation_correctness=data[1].correctness,
        costs=COSTS,
        space=SearchSpace(fit=[{}], post_fit=[{"k": compared.params["k"]}]),
        seed=3,
        score_single=True,
    )
    assert fresh_only.score == compared.score  # the fresh folds do not depend on the grid searched
    assert fresh_only.comparison_scores == compared.comparison_scores

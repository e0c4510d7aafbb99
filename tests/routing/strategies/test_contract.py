"""Every registered strategy passes the same checks (as scikit-learn's parametrize_with_checks)."""

import json

import numpy as np
import pytest

from routing.strategies import STRATEGIES, StrategyNotFitted, get_strategy
from tests.routing.strategies.conftest import LLM_KEYS

FAST_PARAMS = {
    "uniroute_learnedmap": {"n_clusters": 4, "max_iter": 30},
    "relative_maps": {"cluster_grid": (2, 4), "max_iter": 30},
    "routellm_mf": {"dim": 4, "max_iter": 50},
}
ALL = sorted(STRATEGIES)


def make(name):
    return get_strategy(name, **FAST_PARAMS.get(name, {}))


def fit(strategy, train, validation):
    return strategy.fit(
        train.embeddings,
        train.correctness,
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
        llm_keys=LLM_KEYS,
    )


def profiles_of(strategy, validation, unseen_validation):
    """Profiles of the training LLMs (by key) and of the unseen LLMs, stacked."""
    known = [
        strategy.profile(validation.embeddings, validation.correctness[:, j], llm_key=key)
        for j, key in enumerate(LLM_KEYS)
    ]
    new = [
        strategy.profile(unseen_validation.embeddings, unseen_validation.correctness[:, j], llm_key=f"new-{j}")
        for j in range(2)
    ]
    return np.stack(known + new)


def json_round_trip(state: dict) -> dict:
    """What storing a state in Postgres does: arrays kept as arrays, everything else through JSON."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    small = json.loads(json.dumps({k: v for k, v in state.items() if not isinstance(v, np.ndarray)}))
    return {**small, **arrays}


@pytest.mark.parametrize("name", ALL)
def test_fit_returns_the_strategy_itself(name, train, validation):
    strategy = make(name)
    assert fit(strategy, train, validation) is strategy


@pytest.mark.parametrize("name", ALL)
def test_using_a_strategy_before_fit_raises_not_fitted(name, validation, unseen):
    strategy = make(name)
    with pytest.raises(StrategyNotFitted):
        strategy.profile(validation.embeddings, validation.correctness[:, 0])
    with pytest.raises(StrategyNotFitted):
        strategy.predict_loss(unseen[1].embeddings, np.zeros((2, 3)))
    with pytest.raises(StrategyNotFitted):
        strategy.get_state()


@pytest.mark.parametrize("name", ALL)
def test_predicted_losses_have_one_column_per_llm_and_lie_in_the_unit_interval(name, train, validation, unseen):
    unseen_validation, test = unseen
    strategy = fit(make(name), train, validation)
    profiles = profiles_of(strategy, validation, unseen_validation)
    losses = strategy.predict_loss(test.embeddings, profiles)
    assert profiles.ndim == 2 and np.isfinite(profiles).all()
    assert losses.shape == (len(test.embeddings), len(profiles))
    assert np.isfinite(losses).all() and losses.min() >= 0 and losses.max() <= 1
    single = strategy.predict_loss(test.embeddings[:1], profiles)
    np.testing.assert_allclose(single, losses[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_the_same_seed_gives_the_same_predictions(name, train, validation, unseen):
    unseen_validation, test = unseen
    first, second = fit(make(name), train, validation), fit(make(name), train, validation)
    p1, p2 = profiles_of(first, validation, unseen_validation), profiles_of(second, validation, unseen_validation)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(first.predict_loss(test.embeddings, p1), second.predict_loss(test.embeddings, p2))


@pytest.mark.parametrize("name", ALL)
def test_refitting_equals_a_fresh_fit(name, train, validation, unseen):
    unseen_validation, test = unseen
    refitted = fit(make(name), validation, train)  # first fit on other data (roles swapped) ...
    fit(refitted, train, validation)  # ... then on the real data
    fresh = fit(make(name), train, validation)
    profiles = profiles_of(fresh, validation, unseen_validation)
    np.testing.assert_array_equal(profiles_of(refitted, validation, unseen_validation), profiles)
    np.testing.assert_array_equal(
        refitted.predict_loss(test.embeddings, profiles), fresh.predict_loss(test.embeddings, profiles)
    )


@pytest.mark.parametrize("name", ALL)
def test_a_stored_state_restores_identical_predictions(name, train, validation, unseen):
    unseen_validation, test = unseen
    strategy = fit(make(name), train, validation)
    restored = type(strategy).from_state(json_round_trip(strategy.get_state()))
    profiles = profiles_of(strategy, validation, unseen_validation)
    np.testing.assert_array_equal(profiles_of(restored, validation, unseen_validation), profiles)
    np.testing.assert_array_equal(
        restored.predict_loss(test.embeddings, profiles), strategy.predict_loss(test.embeddings, profiles)
    )
    assert restored.get_params() == json_round_trip(strategy.get_params())


@pytest.mark.parametrize("name", ALL)
def test_profiling_a_new_llm_changes_nothing_learned(name, train, validation, unseen):
    unseen_validation, test = unseen
    strategy = fit(make(name), train, validation)
    before = strategy.get_state()
    profiles_of(strategy, validation, unseen_validation)
    after = strategy.get_state()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(np.asarray(before[key], dtype=object), np.asarray(after[key], dtype=object))


@pytest.mark.parametrize("name", ALL)
def test_all_profiles_of_one_strategy_have_the_same_length(name, train, validation, unseen):
    strategy = fit(make(name), train, validation)
    lengths = {len(p) for p in profiles_of(strategy, validation, unseen[0])}
    assert len(lengths) == 1


@pytest.mark.parametrize("name", ALL)
def test_an_llm_without_any_validation_outcome_cannot_be_profiled(name, train, validation):
    strategy = fit(make(name), train, validation)
    with pytest.raises(ValueError, match="no outcome"):
        strategy.profile(validation.embeddings, np.full(len(validation.embeddings), np.nan))


@pytest.mark.parametrize("name", ALL)
def test_clusters_are_none_or_ids_within_range(name, train, validation, unseen):
    strategy = fit(make(name), train, validation)
    clusters = strategy.cluster_of(unseen[1].embeddings)
    if clusters is not None:
        assert clusters.shape == (len(unseen[1].embeddings),)
        assert clusters.min() >= 0 and np.issubdtype(clusters.dtype, np.integer)


@pytest.mark.parametrize("name", ALL)
def test_constructor_only_stores_hyper_parameters(name):
    strategy = make(name)
    assert set(vars(strategy)) == set(strategy.param_names())
    assert type(strategy)(**strategy.get_params()).get_params() == strategy.get_params()


def test_unknown_strategy_names_and_hyper_parameters_fail_loudly():
    with pytest.raises(ValueError, match="unknown routing strategy"):
        get_strategy("no-such-router")
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        get_strategy("knn", n_neighbours=3)

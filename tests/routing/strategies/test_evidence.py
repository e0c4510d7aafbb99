"""Feedback evidence on arrays (``evidence.py`` and ``profile(sample_weight=...)``): weighted rows count as
that many answers; the rule is bounded per source, decays with age and counts a prompt once."""

import numpy as np
import pytest

from routing.strategies import get_strategy
from routing.strategies.evidence import (
    capped_weight,
    decayed_weight,
    evidence_rows,
    latest_per_prompt,
    with_evidence,
)
from tests.routing.strategies.test_smoothing import eight_topics, fitted

DAY = 86_400.0
WEIGHTED = ["uniroute_kmeans", "uniroute_learnedmap", "relative_maps"]


@pytest.fixture(scope="module")
def data():
    return eight_topics()


@pytest.fixture(scope="module")
def strategies(data):
    """One fit per strategy for the whole module (profiling never changes a fitted strategy)."""
    fits = {}

    def get(name):
        if name not in fits:
            fits[name] = fitted(name, data) if name in WEIGHTED else _fit_plain(name, data)
        return fits[name]

    return get


# -- the rule -------------------------------------------------------------------------------------------
def test_an_event_loses_half_its_weight_per_half_life_and_one_from_the_future_counts_as_new():
    weights = decayed_weight([0.0, 14 * DAY, 28 * DAY, -DAY], 14 * DAY)
    assert weights.tolist() == [1.0, 0.5, 0.25, 1.0]
    with pytest.raises(ValueError, match="half-life must be positive"):
        decayed_weight([0.0], 0.0)


def test_one_prompt_counts_once_per_source_and_llm_and_the_latest_judgement_wins():
    # tenant a judges LLM 1 on prompt 5 three times; tenant b once; tenant a also judges LLM 2 on it.
    source = ["a", "a", "b", "a", "a"]
    llm = [1, 1, 1, 1, 2]
    prompt = [5, 5, 5, 5, 5]
    time = [10.0, 30.0, 20.0, 20.0, 5.0]
    assert latest_per_prompt(source, llm, prompt, time).tolist() == [1, 2, 4]

    rows = evidence_rows(
        llm=llm,
        source=source,
        prompt=prompt,
        embedding_index=[0, 1, 2, 3, 4],
        correctness=[0.0, 1.0, 0.0, 0.0, 0.5],
        time=time,
        now=30.0,
        half_life_seconds=DAY,
        cap=50.0,
    )
    assert rows.correctness.tolist() == [1.0, 0.0, 0.5]  # tenant a's latest on LLM 1 says right
    assert rows.embedding_index.tolist() == [1, 2, 4]


def test_giving_the_same_events_again_changes_no_row():
    events = dict(
        llm=[1, 1, 1],
        source=[7, 7, 8],
        prompt=[100, 101, 100],
        embedding_index=[0, 1, 0],
        correctness=[1.0, 0.0, 1.0],
        time=[0.0, DAY, 2 * DAY],
    )
    rule = dict(now=3 * DAY, half_life_seconds=14 * DAY, cap=1.5)
    once = evidence_rows(**events, **rule)
    twice = evidence_rows(**{key: list(value) * 2 for key, value in events.items()}, **rule)
    assert np.array_equal(once.embedding_index, twice.embedding_index)
    assert np.array_equal(once.correctness, twice.correctness)
    assert np.allclose(once.weight, twice.weight)


def test_a_sources_total_weight_per_llm_is_scaled_down_to_the_cap():
    weights = capped_weight(np.ones(200), source=["flood"] * 100 + ["other"] * 100, llm=[1] * 200, cap=50.0)
    assert weights[:100].sum() == pytest.approx(50.0)
    assert np.allclose(weights[:100], 0.5)
    assert weights[100:].sum() == pytest.approx(50.0)
    # under the cap nothing changes; each LLM has its own cap
    assert capped_weight([1.0, 1.0], source=[3, 3], llm=[1, 2], cap=1.5).tolist() == [1.0, 1.0]


def test_evidence_correctness_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        evidence_rows(
            llm=[1],
            source=[1],
            prompt=[1],
            embedding_index=[0],
            correctness=[2.0],
            time=[0.0],
            now=0.0,
            half_life_seconds=DAY,
            cap=1.0,
        )


# -- weighted profiles ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*WEIGHTED, "zero", "routellm_mf"])
def test_a_row_of_weight_two_profiles_like_the_same_row_given_twice(name, data, strategies):
    strategy = strategies(name)
    embeddings, _, _ = data["validation"]
    correctness = data["unseen_generalist"]
    weights = np.ones(len(correctness))
    weights[:30] = 2.0
    doubled = np.concatenate([np.arange(len(correctness)), np.arange(30)])

    weighted = strategy.profile(embeddings, correctness, sample_weight=weights)
    repeated = strategy.profile(embeddings[doubled], correctness[doubled])
    assert np.allclose(weighted, repeated, atol=1e-5)
    assert not np.allclose(weighted, strategy.profile(embeddings, correctness), atol=1e-5)


@pytest.mark.parametrize("name", WEIGHTED)
def test_weights_of_one_or_none_give_the_same_profile_and_weight_zero_drops_a_row(name, data, strategies):
    strategy = strategies(name)
    embeddings, _, _ = data["validation"]
    correctness = data["unseen_generalist"]
    plain = strategy.profile(embeddings, correctness)
    assert np.array_equal(strategy.profile(embeddings, correctness, sample_weight=np.ones(len(correctness))), plain)
    weights = np.ones(len(correctness))
    weights[:40] = 0.0
    without = correctness.copy()
    without[:40] = np.nan
    assert np.allclose(
        strategy.profile(embeddings, correctness, sample_weight=weights), strategy.profile(embeddings, without)
    )
    assert strategy.profile_choice(embeddings, correctness, sample_weight=weights) == strategy.profile_choice(
        embeddings, without
    )


def test_knn_refuses_weighted_rows_and_bad_weights_are_refused_by_name(data, strategies):
    knn = strategies("knn")
    embeddings, _, _ = data["validation"]
    correctness = data["unseen_generalist"]
    assert np.array_equal(
        knn.profile(embeddings, correctness, sample_weight=np.ones(len(correctness))),
        knn.profile(embeddings, correctness),
    )
    with pytest.raises(ValueError, match="knn profiles cannot weigh rows"):
        knn.profile(embeddings, correctness, sample_weight=np.full(len(correctness), 2.0))
    kmeans = strategies("uniroute_kmeans")
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        kmeans.profile(embeddings, correctness, sample_weight=np.full(len(correctness), -1.0))
    with pytest.raises(ValueError, match="sample_weight needs one weight per row"):
        kmeans.profile(embeddings, correctness, sample_weight=np.ones(3))


# -- evidence moves a specialist's estimate, and a flood no further than its cap ---------------------------
def _topic_estimate(strategy, profile, data, topic_id):
    test_embeddings, test_topic = data["test"]
    return float(strategy.predict_loss(test_embeddings, profile[None, :])[test_topic == topic_id, 0].mean())


def _evidence_on_topic(data, topic_id, n_events, correctness, source="tenant"):
    """Events on the test prompts of one topic (repeating prompts when more events than prompts)."""
    test_embeddings, test_topic = data["test"]
    prompts = np.flatnonzero(test_topic == topic_id)
    chosen = np.resize(prompts, n_events) + np.repeat(np.arange(-(-n_events // len(prompts))), len(prompts))[
        :n_events
    ] * len(test_topic)  # a distinct prompt id per event: each counts
    return dict(
        llm=np.zeros(n_events, dtype=int),
        source=[source] * n_events,
        prompt=chosen,
        embedding_index=chosen % len(test_topic),
        correctness=np.full(n_events, correctness),
        time=np.zeros(n_events),
    )


def _profile_with(strategy, data, correctness, rows):
    embeddings, _, _ = data["validation"]
    test_embeddings, _ = data["test"]
    index, evidence_correctness, weight = rows.for_llm(0)
    rows_embeddings, rows_correctness, rows_weight = with_evidence(
        embeddings, correctness, test_embeddings[index], evidence_correctness, weight
    )
    return strategy.profile(rows_embeddings, rows_correctness, sample_weight=rows_weight)


@pytest.mark.parametrize("name", WEIGHTED)
def test_a_specialists_estimate_moves_towards_the_evidence_and_a_flood_no_further_than_its_cap(name, data, strategies):
    strategy = strategies(name)
    _, validation_topic, _ = data["validation"]
    # A specialist whose validation answers show it right on topic 0 only half the time.
    correctness = np.where(validation_topic == 0, np.arange(len(validation_topic)) % 2, 0.0).astype(np.float64)
    before = _topic_estimate(strategy, strategy.profile(data["validation"][0], correctness), data, 0)
    rule = dict(now=0.0, half_life_seconds=14 * DAY, cap=20.0)

    some = evidence_rows(**_evidence_on_topic(data, 0, 10, 1.0), **rule)
    after_some = _topic_estimate(strategy, _profile_with(strategy, data, correctness, some), data, 0)
    assert after_some < before - 0.02  # its error there falls towards the evidence's 0

    cap_worth = evidence_rows(**_evidence_on_topic(data, 0, 20, 1.0), **rule)
    flood = evidence_rows(**_evidence_on_topic(data, 0, 2000, 1.0), **rule)
    assert flood.weight.sum() == pytest.approx(20.0)
    after_cap = _topic_estimate(strategy, _profile_with(strategy, data, correctness, cap_worth), data, 0)
    after_flood = _topic_estimate(strategy, _profile_with(strategy, data, correctness, flood), data, 0)
    assert after_flood == pytest.approx(after_cap, abs=0.02)
    # cap / (n + a + cap) of the way at most: topic 0 holds 50 validation answers, a = 50
    n_topic = int((validation_topic == 0).sum())
    assert before - after_flood <= before * 20.0 / (n_topic + 20.0) + 0.02
    assert after_flood > 0.05  # the flood claims error 0; the cap keeps it from getting there


@pytest.mark.parametrize("name", WEIGHTED)
def test_old_evidence_moves_the_estimate_less(name, data, strategies):
    strategy = strategies(name)
    _, validation_topic, _ = data["validation"]
    correctness = np.where(validation_topic == 0, np.arange(len(validation_topic)) % 2, 0.0).astype(np.float64)
    before = _topic_estimate(strategy, strategy.profile(data["validation"][0], correctness), data, 0)
    events = _evidence_on_topic(data, 0, 10, 1.0)
    fresh = evidence_rows(**events, now=0.0, half_life_seconds=14 * DAY, cap=50.0)
    old = evidence_rows(**events, now=28 * DAY, half_life_seconds=14 * DAY, cap=50.0)
    assert np.allclose(old.weight, 0.25)
    moved_fresh = before - _topic_estimate(strategy, _profile_with(strategy, data, correctness, fresh), data, 0)
    moved_old = before - _topic_estimate(strategy, _profile_with(strategy, data, correctness, old), data, 0)
    assert 0 < moved_old < moved_fresh


def _fit_plain(name, data):
    train_embeddings, train_correctness = data["train"]
    validation_embeddings, _, validation_correctness = data["validation"]
    params = {"routellm_mf": {"dim": 4, "max_iter": 50}, "knn": {"k": 10}}.get(name, {})
    return get_strategy(name, **params).fit(
        train_embeddings,
        train_correctness,
        validation_embeddings=validation_embeddings,
        validation_correctness=validation_correctness,
    )

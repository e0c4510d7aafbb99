"""The unseen-LLM benchmark on plain arrays (METHODS.md, "Reported setting" and "Metrics").

For each random split: fit every strategy on the train prompts × training LLMs, profile each unseen
test LLM from its validation outcomes alone (no refit), predict losses on the test prompts, and
score the exact deferral curve of routing among the test LLMs only. ZeroRouter, oracle, random
routing and every single test LLM are always scored on the same split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation.metrics import area, area50, deferral_curve, oracle_curve, qnc, random_curve, single_llm_points
from evaluation.protocol import Split, make_splits
from routing.strategies import get_strategy

ORACLE, RANDOM, ZERO = "oracle", "random", "zero"
TIMED_POOL_SIZE = 30  # predict_one_ms is measured for one prompt against this many LLMs
TIMING_REPEATS = 200
# Profiles and single-prompt predictions are timed on one BLAS thread, as a web worker runs them:
# on a busy machine a multi-threaded BLAS call on a tiny matrix can stall for milliseconds.
ONE_THREAD = {"limits": 1, "user_api": "blas"}

PROTOCOL = {
    "prompts": "random 60/10/30 train/validation/test split per trial",
    "llms": "random 2/3 training LLMs, 1/3 unseen test LLMs per trial; routing only among the test LLMs",
    "fit": "each strategy is fitted on the train prompts with the training LLMs' correctness (and their validation outcomes)",
    "profiles": "each test LLM is profiled from its validation outcomes only, without refitting",
    "test_prompts": "test prompts answered by every test LLM of the split",
    "cost": "per-query cost normalised by the most expensive test LLM of the split",
    "curve": "exact λ-sweep of argmin predicted loss + λ·cost, made monotone (running max), linear between points",
    "area": "area under the curve over normalised cost [0, 1], flat left of the cheapest point and right of the last",
    "area50": "area over normalised cost [0, 0.5] divided by 0.5",
    "qnc": "smallest normalised cost reaching the best single test LLM's accuracy (median over trials; null if not reached)",
    "oracle": "cheapest correct test LLM per prompt (routing with the true losses)",
    "random": "best prompt-independent random mixture of the test LLMs: upper concave hull of the single-LLM points",
    "gain_vs_zero": "mean over trials of (area − ZeroRouter's area on the same split); se = std/sqrt(trials)",
    "routoo_predictor": "non-universal: every test LLM is unseen, so it routes with its universal fallback",
}

Progress = Callable[[int, int], None]


def run_protocol(
    embeddings: np.ndarray,
    correctness: np.ndarray,
    costs: np.ndarray,
    llm_names: list[str],
    *,
    strategies: list[str],
    trials: int = 20,
    seed: int = 0,
    strategy_params: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run ``trials`` random splits and return the figures as a JSON-ready dict (see ``PROTOCOL``).

    Keys: ``protocol``, ``trials``, ``seed``, ``methods`` (per method: area, area_se, area50,
    qnc_median, gain_vs_zero, gain_vs_zero_se; ZeroRouter is always run, oracle and random always
    added), ``single_llms``, ``timings`` (medians: fit_s, profile_ms per LLM, predict_one_ms for one
    prompt × 30 LLMs), ``per_trial_area`` (for paired comparisons between methods) and ``curves``
    (the first split's curves, for ``plots.plot_deferral_curves``). Non-finite figures are None.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    correctness = np.asarray(correctness, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if correctness.shape != (len(embeddings), len(costs)) or len(llm_names) != len(costs):
        raise ValueError("need embeddings [N, D], correctness [N, M], costs [M] and M llm_names")
    names = list(dict.fromkeys([ZERO, *strategies]))  # every gain is measured against ZeroRouter
    params = strategy_params or {}
    scores = {name: [] for name in [*names, ORACLE, RANDOM]}
    timings = {name: {"fit_s": [], "profile_ms": [], "predict_one_ms": []} for name in names}
    single = {name: [] for name in llm_names}
    curves = None
    for trial, split in enumerate(make_splits(len(embeddings), len(costs), trials, seed)):
        test_rows = _answered_by_all(correctness, split)
        truth = correctness[np.ix_(test_rows, split.test_llms)]
        split_costs = costs[split.test_llms]
        split_curves = {}
        for name in names:
            strategy = _fitted(name, params.get(name, {}), embeddings, correctness, split, llm_names, timings[name])
            profiles = _profiles(strategy, embeddings, correctness, split, llm_names, timings[name])
            if trial == 0:
                timings[name]["predict_one_ms"].append(_predict_one_ms(strategy, embeddings[test_rows[:1]], profiles))
            split_curves[name] = deferral_curve(
                strategy.predict_loss(embeddings[test_rows], profiles), split_costs, truth
            )
        split_curves[ORACLE] = oracle_curve(truth, split_costs)
        split_curves[RANDOM] = random_curve(truth, split_costs)
        best_single = float(truth.mean(axis=0).max())
        for name, curve in split_curves.items():
            scores[name].append((area(curve), area50(curve), qnc(curve, best_single)))
        points = single_llm_points(truth, split_costs)
        for j, llm in enumerate(split.test_llms):
            single[llm_names[llm]].append((points.quality[j], points.cost[j], costs[llm]))
        if curves is None:
            curves = _curves_of_split(trial, split_curves, points, [llm_names[j] for j in split.test_llms])
        if progress:
            progress(trial + 1, trials)
    return {
        "protocol": PROTOCOL,
        "trials": trials,
        "seed": seed,
        "methods": _summarise(scores),
        "single_llms": _summarise_single(single),
        "timings": {
            key: {name: _finite(np.median(t[key])) for name, t in timings.items()}
            for key in ("fit_s", "profile_ms", "predict_one_ms")
        },
        "per_trial_area": {name: [_finite(s[0]) for s in values] for name, values in scores.items()},
        "curves": curves,
    }


def _answered_by_all(correctness: np.ndarray, split: Split) -> np.ndarray:
    rows = split.test_prompts
    complete = ~np.isnan(correctness[np.ix_(rows, split.test_llms)]).any(axis=1)
    if not complete.any():
        raise ValueError("no test prompt was answered by every test LLM of a split")
    return rows[complete]


def _fitted(name, params, embeddings, correctness, split: Split, llm_names, timing):
    train_llms = split.train_llms
    started = time.perf_counter()
    strategy = get_strategy(name, **params).fit(
        embeddings[split.train_prompts],
        correctness[np.ix_(split.train_prompts, train_llms)],
        validation_embeddings=embeddings[split.validation_prompts],
        validation_correctness=correctness[np.ix_(split.validation_prompts, train_llms)],
        llm_keys=[llm_names[j] for j in train_llms],
    )
    timing["fit_s"].append(time.perf_counter() - started)
    return strategy


def _profiles(strategy, embeddings, correctness, split: Split, llm_names, timing) -> np.ndarray:
    validation_embeddings = embeddings[split.validation_prompts]
    profiles = []
    with threadpool_limits(**ONE_THREAD):
        for llm in split.test_llms:
            started = time.perf_counter()
            profiles.append(
                strategy.profile(
                    validation_embeddings, correctness[split.validation_prompts, llm], llm_key=llm_names[llm]
                )
            )
            timing["profile_ms"].append(1000 * (time.perf_counter() - started))
    return np.stack(profiles)


def _predict_one_ms(strategy, one_prompt: np.ndarray, profiles: np.ndarray) -> float:
    pool = np.resize(profiles, (TIMED_POOL_SIZE, profiles.shape[1]))  # tile the profiles to 30 LLMs
    durations = []
    with threadpool_limits(**ONE_THREAD):
        for _ in range(TIMING_REPEATS):
            started = time.perf_counter()
            strategy.predict_loss(one_prompt, pool)
            durations.append(time.perf_counter() - started)
    return 1000 * float(np.median(durations))


def _summarise(scores: dict) -> dict:
    zero_area = np.array([s[0] for s in scores[ZERO]])
    methods = {}
    for name, values in scores.items():
        areas, areas50, qncs = (np.array(column, dtype=np.float64) for column in zip(*values))
        gains = areas - zero_area
        methods[name] = {
            "area": _finite(areas.mean()),
            "area_se": _se(areas),
            "area50": _finite(areas50.mean()),
            "qnc_median": _finite(np.median(qncs)),
            "gain_vs_zero": _finite(gains.mean()),
            "gain_vs_zero_se": _se(gains),
        }
    return methods


def _summarise_single(single: dict) -> dict:
    out = {}
    for name, rows in single.items():
        if rows:
            accuracy, cost_norm, cost = (np.array(column) for column in zip(*rows))
            out[name] = {
                "accuracy": _finite(accuracy.mean()),
                "normalised_cost": _finite(cost_norm.mean()),
                "cost": _finite(cost[0]),
                "trials_as_test_llm": len(rows),
            }
    return out


def _curves_of_split(trial: int, split_curves: dict, points, test_llm_names: list[str]) -> dict:
    return {
        "trial": trial,
        "methods": {
            name: {"cost": curve.thinned().cost.tolist(), "quality": curve.thinned().quality.tolist()}
            for name, curve in split_curves.items()
        },
        "single_llms": {
            name: {"cost": float(points.cost[j]), "quality": float(points.quality[j])}
            for j, name in enumerate(test_llm_names)
        },
    }


def _se(values: np.ndarray) -> float | None:
    """Standard error of the mean; None with a single trial (undefined, and JSON has no NaN)."""
    if len(values) < 2:
        return None
    return _finite(values.std(ddof=1) / math.sqrt(len(values)))


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None

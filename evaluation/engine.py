"""The unseen-LLM benchmark on plain arrays (METHODS.md, "Reported setting" and "Metrics").

For each random split: tune and fit every strategy on the train prompts × training LLMs (the
tuning of ``routing.strategies.tuning`` runs inside the split, on the training LLMs only, so the
reported gains include it), profile each unseen test LLM from its validation outcomes alone (no
refit), predict losses on the test prompts, and score the exact deferral curve of routing among
the test LLMs only. ZeroRouter, oracle, random routing and every single test LLM are always scored
on the same split; the clairvoyant reference (``clairvoyant.py``) when asked for. Where prompts
have categories, the same splits also give per-category gains and specialist recall
(``specialists.py``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation.clairvoyant import CLAIRVOYANT, clairvoyant_losses
from evaluation.protocol import Split, make_domain_shift_splits, make_splits
from evaluation.specialists import specialist_figures, specialists_of
from routing.strategies import STRATEGIES, get_strategy
from routing.strategies.curves import area, area50, deferral_curve, oracle_curve, qnc, random_curve, single_llm_points
from routing.strategies.tuning import auto_choice, tuned_fit

ORACLE, RANDOM, ZERO = "oracle", "random", "zero"
# What a user gets: in each split, the universal strategy of the run whose cross-validated score over
# the split's training LLMs is highest (as setup_demo activates), scored on the split's test LLMs.
AUTO = "auto"
TIMED_POOL_SIZE = 30  # predict_one_ms is measured for one prompt against this many LLMs
TIMING_REPEATS = 200
MIN_CATEGORY_PROMPTS = 20  # per-category areas need this many test prompts of the category in a split
# Profiles and single-prompt predictions are timed on one BLAS thread, as a web worker runs them:
# on a busy machine a multi-threaded BLAS call on a tiny matrix can stall for milliseconds.
ONE_THREAD = {"limits": 1, "user_api": "blas"}

PROTOCOL = {
    "prompts": "random 60/10/30 train/validation/test split per trial",
    "llms": "random 2/3 training LLMs, 1/3 unseen test LLMs per trial; routing only among the test LLMs",
    "tuning": "each strategy's hyper-parameters chosen inside the split by cross-validation over its training LLMs "
    "only (routing/strategies/tuning.py); none when off",
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
    "clairvoyant": "not universal, an upper reference: per-LLM logistic heads trained on the test LLMs' own train (and validation) outcomes",
    "gain_vs_zero": "mean over trials of (area − ZeroRouter's area on the same split); se = std/sqrt(trials)",
    "routoo_predictor": "non-universal: every test LLM is unseen, so it routes with its universal fallback",
    "per_category": "area on one category's test prompts of a split (at least 20) minus ZeroRouter's there, "
    "mean ± se over the splits where the category was tested",
    "specialists": "per category, a simulated unseen LLM right on that category and wrong elsewhere, priced at the "
    "median test LLM, added alone to the pool; routed at λ = 0 (evaluation/specialists.py)",
    "auto": "per split, the universal strategy of the run with the best cross-validated score on the split's "
    "training LLMs (the same folds and prompts for every strategy), as setup_demo activates; its choices are "
    "counted in auto_choices",
}
DOMAIN_SHIFT = {
    "prompts": "per trial, categories dealt at random: train prompts from categories holding ~60 % of the prompts, validation and test (1:3) from the others",
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
    tuning: bool = True,
    protocol: str = "unseen-llm",
    categories: np.ndarray | None = None,
    progress: Progress | None = None,
    tuning_budget: str = "full",
    variants: list[tuple[str, dict]] | None = None,
) -> dict:
    """Run ``trials`` splits and return the figures as a JSON-ready dict (see ``PROTOCOL``).

    Keys: ``protocol``, ``trials``, ``seed``, ``methods`` (per method: area, area_se, area50,
    qnc_median, gain_vs_zero, gain_vs_zero_se; ZeroRouter is always run, oracle and random always
    added), ``single_llms``, ``timings`` (medians: tune_s and fit_s per split, profile_ms per LLM,
    predict_one_ms for one prompt × 30 LLMs), ``tuning`` (per strategy: what was chosen on each
    split), ``per_trial_area`` (for paired comparisons), ``per_category`` and ``specialists`` (when
    ``categories`` are given), and ``curves`` (the first split's, for ``plots.plot_deferral_curves``).
    ``strategy_params`` are held fixed (and left out of the tuning). ``variants`` — (strategy,
    post-fit values) pairs — are scored as methods of their own, named ``variant_name``: the split's
    tuned fit of the strategy with those values set afterwards, no refit (a paired look at one choice
    the tuner makes). Non-finite figures are None.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    correctness = np.asarray(correctness, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if correctness.shape != (len(embeddings), len(costs)) or len(llm_names) != len(costs):
        raise ValueError("need embeddings [N, D], correctness [N, M], costs [M] and M llm_names")
    if categories is not None and len(categories) != len(embeddings):
        raise ValueError("need one category per prompt ('' for none)")
    categories = None if categories is None else np.asarray(categories).astype(str)
    names = list(dict.fromkeys([ZERO, *strategies]))  # every gain is measured against ZeroRouter
    auto = AUTO in names
    if auto and not tuning:
        raise ValueError("auto is the strategy the tuning picks in each split: it needs tuning on")
    names = [name for name in names if name != AUTO]
    auto_pool = [name for name in names if name in STRATEGIES and STRATEGIES[name].universal]
    if auto and not auto_pool:
        raise ValueError("auto needs at least one universal strategy in the run to choose from")
    params = strategy_params or {}
    variants = list(variants or [])
    missing = sorted({base for base, _ in variants} - (set(names) - {CLAIRVOYANT}))
    if missing:
        raise ValueError(f"variants need their strategy in the run: {', '.join(missing)}")
    variant_names = [variant_name(base, values) for base, values in variants]
    scores = {name: [] for name in [*names, *([AUTO] if auto else []), *variant_names, ORACLE, RANDOM]}
    timings = {name: {"tune_s": [], "fit_s": [], "profile_ms": [], "predict_one_ms": []} for name in names}
    tunings = {name: [] for name in names if name != CLAIRVOYANT}
    single = {name: [] for name in llm_names}
    category_areas: dict[str, dict[str, list]] = {}
    specialist_rows = {name: [] for name in [*names, *([AUTO] if auto else []), *variant_names]}
    auto_choices: list[str] = []
    curves = None
    for trial, split in enumerate(_splits(protocol, categories, len(embeddings), len(costs), trials, seed)):
        test_rows = _answered_by_all(correctness, split)
        truth = correctness[np.ix_(test_rows, split.test_llms)]
        split_costs = costs[split.test_llms]
        specialists = specialists_of(categories, split.validation_prompts, test_rows) if categories is not None else []
        split_losses, split_specialists = {}, {}
        for name in names:
            if name == CLAIRVOYANT:
                started = time.perf_counter()
                losses, specialist_losses = clairvoyant_losses(
                    embeddings, correctness, split, test_rows, llm_names, specialists
                )
                timings[name]["fit_s"].append(time.perf_counter() - started)
            else:
                strategy = _fitted(
                    name,
                    params.get(name, {}),
                    embeddings,
                    correctness,
                    costs,
                    split,
                    llm_names,
                    tuning,
                    seed * 1000 + trial,
                    timings[name],
                    tunings[name],
                    tuning_budget,
                    score_single=auto and name in auto_pool,
                )
                profiles = _profiles(strategy, embeddings, correctness, split, llm_names, timings[name])
                if trial == 0:
                    timings[name]["predict_one_ms"].append(
                        _predict_one_ms(strategy, embeddings[test_rows[:1]], profiles)
                    )
                losses = strategy.predict_loss(embeddings[test_rows], profiles)
                specialist_losses = _specialist_losses(strategy, embeddings, split, test_rows, specialists)
                for (base, values), label in zip(variants, variant_names):
                    if base == name:
                        view = strategy.with_params(**values)
                        view_profiles = _profiles(view, embeddings, correctness, split, llm_names, None)
                        split_losses[label] = view.predict_loss(embeddings[test_rows], view_profiles)
                        view_specialists = _specialist_losses(view, embeddings, split, test_rows, specialists)
                        _add_specialists(
                            specialist_rows[label],
                            trial,
                            specialists,
                            view_specialists,
                            split_losses[label],
                            truth,
                            split_costs,
                        )
            split_losses[name] = losses
            split_specialists[name] = specialist_losses
            _add_specialists(specialist_rows[name], trial, specialists, specialist_losses, losses, truth, split_costs)
        if auto:
            chosen = _auto_choice(auto_pool, tunings)
            auto_choices.append(chosen)
            split_losses[AUTO] = split_losses[chosen]
            _add_specialists(
                specialist_rows[AUTO],
                trial,
                specialists,
                split_specialists[chosen],
                split_losses[AUTO],
                truth,
                split_costs,
            )
        split_curves = {name: deferral_curve(losses, split_costs, truth) for name, losses in split_losses.items()}
        split_curves[ORACLE] = oracle_curve(truth, split_costs)
        split_curves[RANDOM] = random_curve(truth, split_costs)
        best_single = float(truth.mean(axis=0).max())
        for name, curve in split_curves.items():
            scores[name].append((area(curve), area50(curve), qnc(curve, best_single)))
        if categories is not None:
            _add_category_areas(category_areas, categories[test_rows], split_losses, truth, split_costs)
        points = single_llm_points(truth, split_costs)
        for j, llm in enumerate(split.test_llms):
            single[llm_names[llm]].append((points.quality[j], points.cost[j], costs[llm]))
        if curves is None:
            curves = _curves_of_split(trial, split_curves, points, [llm_names[j] for j in split.test_llms])
        if progress:
            progress(trial + 1, trials)
    result = {
        "protocol": {
            **PROTOCOL,
            **(DOMAIN_SHIFT if protocol == "domain-shift" else {}),
            "name": protocol,
            "tuning_on": tuning,
            "tuning_budget": tuning_budget if tuning else None,
        },
        "trials": trials,
        "seed": seed,
        "methods": _summarise(scores),
        "single_llms": _summarise_single(single),
        "timings": {
            key: {name: _finite(np.median(t[key])) if t[key] else None for name, t in timings.items()}
            for key in ("tune_s", "fit_s", "profile_ms", "predict_one_ms")
        },
        "tuning": {name: _summarise_tuning(rows) for name, rows in tunings.items() if rows},
        "per_trial_area": {name: [_finite(s[0]) for s in values] for name, values in scores.items()},
        "curves": curves,
    }
    if auto:
        result["auto_choices"] = {"counts": dict(Counter(auto_choices).most_common()), "per_trial": auto_choices}
    if categories is not None:
        result["per_category"] = _summarise_categories(category_areas)
        result["specialists"] = _summarise_specialists(specialist_rows, trials)
    return result


def _auto_choice(pool: list[str], tunings: dict) -> str:
    """The strategy of ``pool`` that ``auto`` picks from the split just fitted (as ``fit_router --strategy auto``)."""
    return auto_choice({name: tunings[name][-1].get("score") for name in pool}) or pool[0]


def variant_name(strategy: str, values: dict) -> str:
    return f"{strategy}[{','.join(f'{k}={v}' for k, v in sorted(values.items()))}]"


def _add_specialists(rows: list, trial: int, specialists, specialist_losses, losses, truth, costs) -> None:
    for specialist, column in zip(specialists, specialist_losses):
        rows.append((trial, specialist.category, specialist_figures(losses, column, truth, costs, specialist)))


def _splits(protocol: str, categories, n_prompts: int, n_llms: int, trials: int, seed: int) -> list[Split]:
    if protocol == "unseen-llm":
        return make_splits(n_prompts, n_llms, trials, seed)
    if protocol == "domain-shift":
        if categories is None:
            raise ValueError("the domain-shift protocol needs the prompts' categories")
        return make_domain_shift_splits(categories, n_llms, trials, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose unseen-llm or domain-shift")


def _answered_by_all(correctness: np.ndarray, split: Split) -> np.ndarray:
    rows = split.test_prompts
    complete = ~np.isnan(correctness[np.ix_(rows, split.test_llms)]).any(axis=1)
    if not complete.any():
        raise ValueError("no test prompt was answered by every test LLM of a split")
    return rows[complete]


def _fitted(
    name,
    fixed,
    embeddings,
    correctness,
    costs,
    split: Split,
    llm_names,
    tuning: bool,
    seed: int,
    timing,
    tunings,
    budget: str = "full",
    score_single: bool = False,
):
    train_llms = split.train_llms
    data = dict(
        validation_embeddings=embeddings[split.validation_prompts],
        validation_correctness=correctness[np.ix_(split.validation_prompts, train_llms)],
        llm_keys=[llm_names[j] for j in train_llms],
    )
    train = (embeddings[split.train_prompts], correctness[np.ix_(split.train_prompts, train_llms)])
    started = time.perf_counter()
    if not tuning:
        strategy = get_strategy(name, **fixed).fit(*train, **data)
        timing["tune_s"].append(0.0)
    else:
        strategy, report = tuned_fit(
            name,
            *train,
            **data,
            costs=costs[train_llms],
            fixed=fixed,
            seed=seed,
            budget=budget,
            score_single=score_single,
        )
        timing["tune_s"].append(report.seconds)
        tunings.append(report.as_json())
    timing["fit_s"].append(time.perf_counter() - started - timing["tune_s"][-1])
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
            if timing is not None:
                timing["profile_ms"].append(1000 * (time.perf_counter() - started))
    return np.stack(profiles)


def _specialist_losses(strategy, embeddings, split: Split, test_rows, specialists) -> list[np.ndarray]:
    if not specialists:
        return []
    validation_embeddings = embeddings[split.validation_prompts]
    profiles = np.stack(
        [
            strategy.profile(validation_embeddings, s.validation_correctness, llm_key=f"specialist:{s.category}")
            for s in specialists
        ]
    )
    return list(strategy.predict_loss(embeddings[test_rows], profiles).T)


def _predict_one_ms(strategy, one_prompt: np.ndarray, profiles: np.ndarray) -> float:
    pool = np.resize(profiles, (TIMED_POOL_SIZE, profiles.shape[1]))  # tile the profiles to 30 LLMs
    durations = []
    with threadpool_limits(**ONE_THREAD):
        for _ in range(TIMING_REPEATS):
            started = time.perf_counter()
            strategy.predict_loss(one_prompt, pool)
            durations.append(time.perf_counter() - started)
    return 1000 * float(np.median(durations))


def _add_category_areas(store: dict, test_categories, split_losses: dict, truth, costs) -> None:
    for category in sorted(set(test_categories) - {""}):
        rows = test_categories == category
        if rows.sum() < MIN_CATEGORY_PROMPTS:
            continue
        areas = {name: area(deferral_curve(losses[rows], costs, truth[rows])) for name, losses in split_losses.items()}
        areas[ORACLE] = area(oracle_curve(truth[rows], costs))
        for name, value in areas.items():
            store.setdefault(category, {}).setdefault(name, []).append(value - areas[ZERO])


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


def _summarise_tuning(rows: list[dict]) -> dict:
    """How often each value of each tuned hyper-parameter was chosen, and each split's choice."""
    counts: dict[str, Counter] = {}
    for row in rows:
        for key, value in row["chosen"].items():
            counts.setdefault(key, Counter())[repr(value) if isinstance(value, list) else str(value)] += 1
    return {
        "chosen_counts": {key: dict(counter.most_common()) for key, counter in counts.items()},
        "per_trial": [
            {
                "chosen": r["chosen"],
                "score": r["score"],
                "selection_score": r.get("selection_score"),
                "comparison_scores": r.get("comparison_scores", []),
                "seconds": r["seconds"],
                "note": r["note"],
            }
            for r in rows
        ],
        "candidates": len(rows[0]["candidates"]),
        "folds": rows[0]["folds"],
        "criterion": rows[0]["criterion"],
    }


def _summarise_categories(store: dict) -> dict:
    return {
        category: {
            name: {
                "gain_vs_zero": _finite(np.mean(gains)),
                "gain_vs_zero_se": _se(np.array(gains)),
                "trials": len(gains),
            }
            for name, gains in by_method.items()
        }
        for category, by_method in sorted(store.items())
    }


def _summarise_specialists(rows: dict, trials: int) -> dict:
    """Per strategy: figures averaged over categories within a split, then mean ± se over splits."""
    out = {}
    for name, entries in rows.items():
        if not entries:
            continue
        per_trial: dict[int, list[dict]] = {}
        per_category: dict[str, list[dict]] = {}
        for trial, category, figures in entries:
            per_trial.setdefault(trial, []).append(figures)
            per_category.setdefault(category, []).append(figures)
        summary = {}
        for key in ("recall", "false_share", "gain_on_category", "change_elsewhere"):
            values = np.array([np.mean([f[key] for f in figures]) for figures in per_trial.values()])
            summary[key] = _finite(values.mean())
            summary[f"{key}_se"] = _se(values)
        summary["per_category_recall"] = {
            category: _finite(np.mean([f["recall"] for f in figures]))
            for category, figures in sorted(per_category.items())
        }
        out[name] = summary
    return out


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

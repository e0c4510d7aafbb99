"""Rules for `auto` compared offline, on the splits `evaluate_splits.py run` wrote (no refit).

    .venv/bin/python benchmarks/auto_rules.py OUT [--default uniroute_kmeans]

In a split, `auto`'s fit of a strategy is that strategy's own tuned fit (`evaluation.engine`: the
losses of the strategy chosen are reused), so under any rule that picks among the run's universal
strategies `auto`'s test area is the area of the strategy picked. Each rule reads only what the
split's tuning computed on its training LLMs: every strategy's grid's best (``selection_score``) and
its chosen candidate's scores on the fresh fold deals (``comparison_scores``: ``COMPARISON_REPEATS``
deals × the folds of each, the same folds for every strategy).

Two figures per rule:

- **held-out deal** (training LLMs only): for each deal in turn, the rule picks from the other deals'
  folds and the pick is scored on that deal's folds; mean over deals, then mean ± se over splits,
  paired against the best-mean rule. This judges a rule without the test LLMs.
- **test area** of the pick: mean over splits, paired against the run's best universal strategy
  (highest mean test area), as `evaluate_splits.py report` and `evaluate` compare methods.
"""

from __future__ import annotations

import argparse
import glob
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing.strategies import STRATEGIES  # noqa: E402
from routing.strategies.tuning import COMPARISON_REPEATS  # noqa: E402


def load(out: Path) -> list[dict]:
    splits = []
    for path in sorted(glob.glob(str(out / "split_*.pkl"))):
        with open(path, "rb") as handle:
            saved = pickle.load(handle)
        result = saved["result"]
        pool = [n for n, t in saved.get("tunings", {}).items() if t.get("comparison_scores")]
        if not pool:
            continue
        splits.append(
            {
                "split": saved["split"],
                "pool": pool,
                "selection": {n: saved["tunings"][n]["selection_score"] for n in pool},
                "folds": {n: np.array(saved["tunings"][n]["comparison_scores"]) for n in pool},
                "area": {n: result["per_trial_area"][n][0] for n in result["per_trial_area"]},
                "auto": result.get("auto_choices", {}).get("per_trial", [None])[0],
            }
        )
        n_folds = {len(f) for f in splits[-1]["folds"].values()}
        assert len(n_folds) == 1 and n_folds.pop() % COMPARISON_REPEATS == 0, "every deal must have scored every fold"
        splits[-1]["per_deal"] = len(splits[-1]["folds"][pool[0]]) // COMPARISON_REPEATS
    return splits


def one_se_choice(fold_scores: dict[str, np.ndarray], *, reference: str) -> str | None:
    """The one-standard-error rule: ``reference`` unless another strategy beats it on the same folds by
    more than one standard error of the paired difference; then, of those that do, the best mean.

    ``fold_scores`` are per strategy its scores on the same folds, in the same order (``comparison_scores``);
    a strategy without scores is never chosen. Without scores for ``reference`` the best mean wins.
    """
    scored = {name: np.asarray(s, dtype=np.float64) for name, s in fold_scores.items() if s is not None and len(s)}
    if not scored:
        return None
    if reference not in scored:
        return max(scored, key=lambda name: scored[name].mean())
    base = scored[reference]
    beating = {}
    for name, scores in scored.items():
        if name == reference or len(scores) != len(base):
            continue
        difference = scores - base
        se = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else np.inf
        if difference.mean() > se:
            beating[name] = scores.mean()
    return max(beating, key=beating.get) if beating else reference


def best_mean(folds: dict[str, np.ndarray], split: dict, default: str) -> str:
    return max(folds, key=lambda n: folds[n].mean())  # the first of ties, as auto_choice


def best_mean_of_one_deal(folds, split, default):
    """`best_mean` on one deal's folds (the first of those given): how the pick moves with fewer deals."""
    return best_mean({n: f[: split["per_deal"]] for n, f in folds.items()}, split, default)


def grid_best(folds, split, default):
    return max(split["selection"], key=split["selection"].get)


def one_se_from_default(folds, split, default):
    return one_se_choice(folds, reference=default)


def simplest_within_one_se(folds, split, default):
    """The textbook form (Hastie, Tibshirani & Friedman, ESL §7.10): of the strategies within one se of the
    paired difference from the best mean, the first in the registry's order (zero, knn, K-means, …)."""
    best = best_mean(folds, split, default)
    for name in STRATEGIES:
        if name in folds:
            difference = folds[best] - folds[name]
            if difference.mean() <= difference.std(ddof=1) / np.sqrt(len(difference)):
                return name
    return best


RULES = {
    "best mean over the fresh folds (main)": best_mean,
    "best mean over one fresh deal": best_mean_of_one_deal,
    "grid's best score (before)": grid_best,
    "one-se from the default": one_se_from_default,
    "one-se, the simplest within one se of the best": simplest_within_one_se,
}


def held_out(split: dict, rule, default: str) -> float:
    """Mean over deals of the score, on that deal's folds, of the pick made from the other deals' folds."""
    deal = np.repeat(np.arange(COMPARISON_REPEATS), split["per_deal"])
    scores = []
    for d in range(COMPARISON_REPEATS):
        rest = {name: f[deal != d] for name, f in split["folds"].items()}
        pick = rule(rest, split, default)
        scores.append(split["folds"][pick][deal == d].mean())
    return float(np.mean(scores))


def paired(values: np.ndarray) -> str:
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():+.5f} ± {se:.5f}" + (f" ({values.mean() / se:+.1f} se)" if se else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--default", default="uniroute_kmeans")
    parser.add_argument("--against", help="compare with this strategy instead of the best on the splits found")
    options = parser.parse_args()
    splits = load(options.out)
    print(f"{len(splits)} splits: {[s['split'] for s in splits]}")
    pool = splits[0]["pool"]
    best = options.against or max(pool, key=lambda n: np.mean([s["area"][n] for s in splits]))
    print(f"compared with: {best}" + ("" if options.against else " (the best universal strategy by test area)"))
    for split in splits:
        assert split["auto"] is None or split["auto"] == best_mean(split["folds"], split, options.default)
    base = np.array([held_out(s, best_mean, options.default) for s in splits])
    print("| rule | held-out deal − best mean (paired) | test area | − best (paired) | choices |")
    print("| --- | --- | --- | --- | --- |")
    for label, rule in RULES.items():
        cv = np.array([held_out(s, rule, options.default) for s in splits]) - base
        picks = [rule(s["folds"], s, options.default) for s in splits]
        test = np.array([s["area"][p] for s, p in zip(splits, picks)])
        gap = test - np.array([s["area"][best] for s in splits])
        counts = ", ".join(f"{n} {c}" for n, c in Counter(picks).most_common())
        print(f"| {label} | {paired(cv)} | {test.mean():.4f} | {paired(gap)} | {counts} |")
    print()
    print(f"each strategy − {best}, per split: fresh folds' mean paired difference (cv) and test area difference")
    print(
        "| strategy | cv mean | within-split se of cv | sd of cv over splits | test mean | sd of test over splits | corr(cv, test) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in pool:
        if name == best:
            continue
        diffs = [s["folds"][name] - s["folds"][best] for s in splits]
        within = np.mean([d.std(ddof=1) / np.sqrt(len(d)) for d in diffs])
        cv = np.array([d.mean() for d in diffs])
        test = np.array([s["area"][name] - s["area"][best] for s in splits])
        corr = np.corrcoef(cv, test)[0, 1] if len(splits) > 2 else float("nan")
        print(
            f"| {name} | {cv.mean():+.5f} | {within:.5f} | {cv.std(ddof=1):.5f} | {test.mean():+.5f} | "
            f"{test.std(ddof=1):.5f} | {corr:+.2f} |"
        )


if __name__ == "__main__":
    main()

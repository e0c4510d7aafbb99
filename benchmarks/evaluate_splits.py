"""`evaluate`'s splits one at a time, so that several processes share a long run and a partial run keeps
what it finished.

    .venv/bin/python benchmarks/evaluate_splits.py run mmlu-pro OUT 0,4,8,12,16 uniroute_kmeans \
        'uniroute_kmeans:smoothing=tuned' [--categories category]
    .venv/bin/python benchmarks/evaluate_splits.py report OUT

``run`` computes the listed splits of ``evaluate --dataset NAME --trials 20 --seed 0`` with
``evaluation.engine.run_protocol`` — the split and the tuning seed (seed·1000 + split) the 20-split run
gives each — and writes one pickle per split (``OUT/split_NN.pkl``: the split's result, its specialist
rows and each strategy's whole tuning report, every candidate's fold scores and the chosen one's
comparison scores, so that rules choosing among strategies can be compared offline); a split already
written is skipped. ``report`` combines the splits found as ``evaluate`` combines them (areas, paired
differences, specialist recall via ``_summarise_specialists``, ``auto``'s choices).
"""

from __future__ import annotations

import argparse
import glob
import os
import pickle
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")

TRIALS, SEED = 20, 0


def run(dataset: str, out: Path, splits: list[int], strategies: list[str], variants: str, categories: str) -> None:
    import django

    django.setup()
    import evaluation.engine as engine
    from evaluation.selectors import dataset_arrays
    from registry.selectors import prompt_set_get

    arrays = dataset_arrays(prompt_set=prompt_set_get(name=dataset), cost="price", category_field=categories)
    parsed = [(v.split(":")[0], dict([v.split(":")[1].split("=")])) for v in variants.split(";") if v]
    every = engine._splits("unseen-llm", arrays.categories, len(arrays.embeddings), len(arrays.costs), TRIALS, SEED)
    fitted, summarise = engine._fitted, engine._summarise_specialists
    out.mkdir(parents=True, exist_ok=True)
    for index in splits:
        target = out / f"split_{index:02d}.pkl"
        if target.exists():
            continue
        raw: dict = {}
        tunings: dict = {}

        def one_split(*args, index=index):
            return [every[index]]

        def with_the_runs_seed(*args, index=index, tunings=tunings, **kwargs):
            args = list(args)
            args[8] = SEED * 1000 + index  # the tuning seed of split `index` in the 20-split run
            strategy = fitted(*args, **kwargs)
            if args[10]:  # the tuner's whole report (every candidate's fold scores), for offline rules
                tunings[args[0]] = args[10][-1]
            return strategy

        def keeping_rows(rows, trials, index=index, raw=raw):
            raw.update({name: [(index, c, f) for _, c, f in entries] for name, entries in rows.items()})
            return summarise(rows, trials)

        engine._splits, engine._fitted, engine._summarise_specialists = one_split, with_the_runs_seed, keeping_rows
        started = time.time()
        result = engine.run_protocol(
            arrays.embeddings,
            arrays.correctness,
            arrays.costs,
            arrays.llm_names,
            strategies=strategies,
            trials=1,
            seed=SEED,
            categories=arrays.categories,
            variants=parsed,
        )
        result.pop("curves", None)
        with open(target, "wb") as handle:
            pickle.dump({"split": index, "result": result, "specialist_rows": raw, "tunings": tunings}, handle)
        print(f"split {index} done in {time.time() - started:.0f} s", flush=True)


def report(out: Path) -> None:
    import django

    django.setup()
    from evaluation.engine import _summarise_specialists

    area, rows, auto = {}, {}, {}
    for path in sorted(glob.glob(str(out / "split_*.pkl"))):
        with open(path, "rb") as handle:
            saved = pickle.load(handle)
        index, result = saved["split"], saved["result"]
        for name, values in result["per_trial_area"].items():
            area.setdefault(name, {})[index] = values[0]
        for name, entries in saved["specialist_rows"].items():
            rows.setdefault(name, []).extend(entries)
        if "auto_choices" in result:
            auto[index] = result["auto_choices"]["per_trial"][0]
    splits = sorted(next(iter(area.values())))
    print(f"{len(splits)} splits: {splits}")
    specialists = _summarise_specialists(rows, len(splits))
    for name in area:
        line = f"{name}: area {np.mean([area[name][i] for i in splits]):.4f}"
        if name in specialists:
            s = specialists[name]
            line += f"; recall {s['recall']:.3f} ± {s['recall_se']:.3f}, false share {s['false_share']:.4f}"
            line += f"; by category {', '.join(f'{k} {v:.2f}' for k, v in s['per_category_recall'].items())}"
        print(line)
    for name in area:
        before = f"{name}[smoothing=tuned]"
        if before in area:
            print(f"{name} − {before}: {paired(area[name], area[before], splits)}")
    if auto:
        pool = [n for n in area if n + "[smoothing=tuned]" in area or n in ("knn", "routellm_mf")]
        best = max(pool, key=lambda n: np.mean([area[n][i] for i in splits]))
        print(f"auto chose {dict(Counter(auto[i] for i in splits).most_common())}")
        for name in [*pool, "auto"]:
            print(f"{name} − {best}: {paired(area[name], area[best], splits)}")


def paired(a: dict, b: dict, splits: list[int]) -> str:
    d = np.array([a[i] - b[i] for i in splits])
    se = d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.5f} ± {se:.5f}" + (f" ({d.mean() / se:+.1f} se)" if se else " (identical on every split)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("run", "report"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--categories", default="category")
    options = parser.parse_args()
    if options.mode == "report":
        report(Path(options.args[0]))
        return
    dataset, out, splits, strategies, *variants = options.args
    run(
        dataset,
        Path(out),
        [int(s) for s in splits.split(",")],
        strategies.split(","),
        variants[0] if variants else "",
        options.categories,
    )


if __name__ == "__main__":
    main()

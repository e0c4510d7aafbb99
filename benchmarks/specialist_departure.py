"""Does a specialist registered with few validation prompts leave the tuned prior once it has shown
some right answers on its subject, and does a real LLM registered with as few stay on it? The
departure test read on the map the LLM's answers fill (``smoothing.FineMaps.test_level``) against the
same test read on the finest map alone, and how often exploration's draw would try it on its subject.

    .venv/bin/python benchmarks/specialist_departure.py --dataset mmlu-pro --seeds 0,1,2 [--out FILE]

Per split of the unseen-LLM protocol (``evaluation.protocol.make_splits``, seed s, tuned
``uniroute_kmeans`` as `evaluate` fits it) and per category, a specialist (right on the category,
wrong elsewhere; ``evaluation/specialists.py``) is profiled from ``--prompts`` sampled validation
prompts plus k right answers on prompts of its category taken from the first half of the split's
test prompts, in a seeded random order (as feedback would add them), for each k of ``--extra``. Reported per k, pooled over
splits and categories: how many specialists depart under each reading, and their recall at λ = 0 on
the category's prompts of the other half against the split's test LLMs profiled
on every validation prompt (``specialist_figures``). "finest map" is the same fitted strategy with the
training counts of its finest map alone, which is how a routing state stored with only those reads.
"drawn" is, on the same prompts, the share of Thompson draws (``exploration.posterior_draw`` with every
LLM's own counts, as an exploring request draws; ``--draws`` per prompt) whose choice at λ = 0 is the
specialist: the chance that an exploring request of its subject tries it, over every specialist and
over those that keep the tuned prior (do not depart).

Second table: each of the split's test LLMs (real LLMs) registered with ``--prompts`` sampled
validation prompts (``--samples`` samples each) beside the others profiled on every validation
prompt: how many depart under each reading, and the area under the deferral curve on the split's
test prompts of the pool with that profile, paired answers' map − finest map.

Needs the dev database with the data set imported (``import_routing_data``).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mmlu-pro")
    parser.add_argument("--categories", default="category", help="'category' or a metadata key, as evaluate takes")
    parser.add_argument("--seeds", default="0,1,2", help="one split per seed (the first split of evaluate --seed s)")
    parser.add_argument("--prompts", type=int, default=50, help="validation prompts the specialist is registered with")
    parser.add_argument("--extra", default="0,5,10,20,40", help="right answers on its subject added, comma-separated")
    parser.add_argument("--samples", type=int, default=3, help="samples of --prompts per real test LLM")
    parser.add_argument("--draws", type=int, default=20, help="Thompson draws per subject prompt")
    parser.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()

    import django

    django.setup()
    from evaluation.online import _fit
    from evaluation.protocol import make_splits
    from evaluation.selectors import dataset_arrays
    from evaluation.specialists import Specialist, specialist_figures, specialists_of, with_specialist_cost
    from registry.selectors import prompt_set_get
    from routing.selection import select
    from routing.strategies.curves import area, deferral_curve, normalised_costs
    from routing.strategies.exploration import own_counts_at, own_strength, posterior_draw

    arrays = dataset_arrays(prompt_set=prompt_set_get(name=args.dataset), cost="price", category_field=args.categories)
    if arrays.categories is None:
        sys.exit(f"no prompt of {args.dataset!r} has a {args.categories!r}")
    embeddings, correctness, costs = arrays.embeddings.astype(np.float32), arrays.correctness, arrays.costs
    extras = [int(k) for k in args.extra.split(",")]
    readings = ("answers' map", "finest map")
    rows = {(k, r): {"departs": 0, "recall": [], "drawn": [], "drawn_kept": []} for k in extras for r in readings}
    specialists = 0
    real = {"departs": {r: 0 for r in readings}, "area_difference": [], "registered": 0}
    started = time.monotonic()
    for seed in (int(s) for s in args.seeds.split(",")):
        split = make_splits(len(embeddings), len(costs), 1, seed)[0]
        strategy, _ = _fit("uniroute_kmeans", {}, embeddings, correctness, costs, split, True, "full", seed * 1000)
        finest = copy.deepcopy(strategy)
        finest.smoothing_counts_ = strategy.smoothing_counts_[:, -strategy.fine_sizes_[-1] :]
        validation, pool = split.validation_prompts, split.test_llms
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(split.test_prompts)  # the data set's rows may be ordered by category
        half = len(shuffled) // 2
        feedback_rows, scoring = shuffled[:half], np.sort(shuffled[half:])
        pool_profiles = np.stack([strategy.profile(embeddings[validation], correctness[validation, j]) for j in pool])
        pool_losses = strategy.predict_loss(embeddings[scoring], pool_profiles)
        pool_costs = normalised_costs(costs[pool])
        pool_counts = [
            (strategy.evidence(embeddings[validation], c), strategy.error_evidence(embeddings[validation], c))
            for c in (correctness[validation, j] for j in pool)
        ]
        pool_strengths = [own_strength(strategy, n, e) for n, e in pool_counts]
        with_specialist_costs = with_specialist_cost(pool_costs)
        for candidate in specialists_of(arrays.categories, validation, scoring):
            specialists += 1
            sample = np.sort(rng.permutation(len(validation))[: args.prompts])
            on_subject = feedback_rows[arrays.categories[feedback_rows] == candidate.category]
            scored = Specialist(
                candidate.category,
                candidate.categories,
                candidate.validation_correctness,
                arrays.categories[scoring] == candidate.category,
            )
            for k in extras:
                rows_embeddings = np.concatenate([embeddings[validation[sample]], embeddings[on_subject[:k]]])
                rows_correctness = np.concatenate(
                    [candidate.validation_correctness[sample], np.ones(min(k, len(on_subject)))]
                )
                for reading, fitted in zip(readings, (strategy, finest)):
                    choice = fitted.profile_choice(rows_embeddings, rows_correctness)
                    profile = fitted.profile(rows_embeddings, rows_correctness)
                    own = fitted.predict_loss(embeddings[scoring], profile[None, :])[:, 0]
                    figures = specialist_figures(
                        pool_losses, own, correctness[np.ix_(scoring, pool)], pool_costs, scored
                    )
                    rows[k, reading]["departs"] += bool(choice["departs"])
                    rows[k, reading]["recall"].append(figures["recall"])
                    if reading == readings[0]:
                        subject = scored.test_in_category
                        specialist_counts = (
                            fitted.evidence(rows_embeddings, rows_correctness),
                            fitted.error_evidence(rows_embeddings, rows_correctness),
                        )
                        answers, errors = (np.stack(c) for c in zip(*pool_counts, specialist_counts))
                        strengths = np.array([*pool_strengths, own_strength(fitted, *specialist_counts)])
                        losses = np.column_stack([pool_losses[subject], own[subject]])
                        near = fitted.evidence_at(embeddings[scoring[subject]], answers)
                        own_counts = own_counts_at(fitted, embeddings[scoring[subject]], answers, errors, strengths)
                        draw_rng = np.random.default_rng([seed, specialists, k])
                        chosen = [
                            select(posterior_draw(losses, near, draw_rng, own=own_counts), with_specialist_costs)
                            for _ in range(args.draws)
                        ]
                        drawn = float(np.mean(np.stack(chosen) == len(pool)))
                        rows[k, reading]["drawn"].append(drawn)
                        if not choice["departs"]:
                            rows[k, reading]["drawn_kept"].append(drawn)
        test_rows = split.test_prompts[~np.isnan(correctness[np.ix_(split.test_prompts, pool)]).any(axis=1)]
        truth = correctness[np.ix_(test_rows, pool)]
        for position, llm in enumerate(pool):
            for _ in range(args.samples):
                sample = np.sort(rng.permutation(len(validation))[: args.prompts])
                few = correctness[validation[sample], llm]
                if np.isnan(few).all():
                    continue
                real["registered"] += 1
                areas = []
                for reading, fitted in zip(readings, (strategy, finest)):
                    real["departs"][reading] += bool(
                        fitted.profile_choice(embeddings[validation[sample]], few)["departs"]
                    )
                    profiles = pool_profiles.copy()
                    profiles[position] = fitted.profile(embeddings[validation[sample]], few)
                    losses = fitted.predict_loss(embeddings[test_rows], profiles)
                    areas.append(area(deferral_curve(losses, pool_costs, truth)))
                real["area_difference"].append(areas[0] - areas[1])
        print(f"  split {seed} done, {time.monotonic() - started:.0f} s", flush=True)

    lines = [
        f"{args.dataset}, seeds {args.seeds}: {specialists} specialists registered with {args.prompts} validation "
        f"prompts, plus k right answers on their subject",
        "",
        "| k | departs (answers' map) | departs (finest map) | recall (answers' map) | recall (finest map) | "
        "drawn (answers' map) | drawn, kept the prior |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in extras:
        a, f = rows[k, readings[0]], rows[k, readings[1]]
        lines.append(
            f"| {k} | {a['departs']} of {specialists} | {f['departs']} of {specialists} | "
            f"{_mean_se(a['recall'])} | {_mean_se(f['recall'])} | {_mean_se(a['drawn'])} | "
            f"{_mean_se(a['drawn_kept']) if len(a['drawn_kept']) > 1 else '—'} ({len(a['drawn_kept'])}) |"
        )
    differences = np.asarray(real["area_difference"])
    lines += [
        "",
        f"{real['registered']} real test LLMs registered with {args.prompts} validation prompts ({args.samples} samples "
        "each, the others profiled on every validation prompt)",
        "",
        "| departs (answers' map) | departs (finest map) | area, answers' map − finest map | lowest |",
        "| ---: | ---: | ---: | ---: |",
        f"| {real['departs'][readings[0]]} | {real['departs'][readings[1]]} | {_mean_se(differences, '+.5f')} | "
        f"{differences.min():+.4f} |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


def _mean_se(values, spec: str = ".3f") -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():{spec}} ± {values.std(ddof=1) / np.sqrt(len(values)):{spec.lstrip('+')}}"


if __name__ == "__main__":
    main()

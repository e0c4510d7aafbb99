"""How long a self-tuned fit takes at the size the fit-time bound is stated for: 10,000 train prompts, ~30 LLMs.

    .venv/bin/python benchmarks/tuning_time.py --dataset mmlu-pro --out benchmarks/results/tuning_time.md

Takes 10,000 prompts of an imported data set (a seeded random choice) as train prompts and 1,200
others as validation prompts, every LLM of the set as a training LLM, and runs
``routing.strategies.tuning.tuned_fit`` — tuning plus the final fit, what ``fit_router`` does — for
each strategy. Reports wall time and the process's CPU time (the machine is shared: the CPU time
says what the work costs, the wall time what it took then), the chosen hyper-parameters and the
load average at the start.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from evaluation.selectors import dataset_arrays  # noqa: E402
from registry.selectors import prompt_set_get  # noqa: E402
from routing.strategies.tuning import tuned_fit  # noqa: E402

DEFAULT = "zero,knn,uniroute_kmeans,uniroute_learnedmap,routellm_mf,relative_maps,routoo_predictor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mmlu-pro")
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--validation", type=int, default=1_200)
    parser.add_argument("--strategies", default=DEFAULT)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    arrays = dataset_arrays(prompt_set=prompt_set_get(name=args.dataset), cost="price")
    order = np.random.default_rng(0).permutation(len(arrays.embeddings))
    train, validation = order[: args.train], order[args.train : args.train + args.validation]
    load = os.getloadavg()[0]
    lines = [
        f"# Self-tuned fit time: {len(train):,} train prompts, {len(validation):,} validation prompts, "
        f"{len(arrays.llm_names)} training LLMs ({args.dataset})",
        "",
        f"`{' '.join(sys.argv)}`; {os.cpu_count()} CPUs, load average {load:.1f} at the start.",
        "",
        "| strategy | wall s | CPU s | tuning wall s | candidates | chosen |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    print("\n".join(lines), flush=True)
    for name in args.strategies.split(","):
        wall, cpu = time.perf_counter(), time.process_time()
        _, tuning = tuned_fit(
            name,
            arrays.embeddings[train],
            arrays.correctness[train],
            validation_embeddings=arrays.embeddings[validation],
            validation_correctness=arrays.correctness[validation],
            costs=arrays.costs,
            llm_keys=arrays.llm_names,
        )
        line = (
            f"| `{name}` | {time.perf_counter() - wall:.1f} | {time.process_time() - cpu:.1f} | {tuning.seconds:.1f} | "
            f"{len(tuning.candidates)} | {tuning.chosen or tuning.note} |"
        )
        lines.append(line)
        print(line, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()

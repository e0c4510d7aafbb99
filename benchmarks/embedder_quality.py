"""Routing quality of each embedder, paired against MiniLM on the same splits (the `evaluate` protocol).

    nice .venv/bin/python benchmarks/embedder_quality.py --dataset mmlu-pro --dataset llmrouter-9 \\
        [--embedders minilm,minilm-torch-int8,minilm-onnx-int8,minilm-static] [--trials 20] [--seed 0] \\
        [--strategies knn,uniroute_kmeans,uniroute_learnedmap,relative_maps] [--out benchmarks/results/embedder_quality.md]

Needs the data sets imported (`import_routing_data`, with any embedder: the stored embeddings are not
used). Every prompt of a set is embedded once per embedder and kept in
`benchmarks/cache/<dataset>/embeddings-<embedder>.npz` (the embeddings-file format of
data/FORMAT.md; git-ignored), so a second run embeds nothing. Then `evaluate`'s protocol
(`evaluation.engine.run_protocol`: 60/10/30 prompt splits, 2/3 train and 1/3 unseen LLMs, `--cost
price`) runs with each embedder's vectors on the same splits, and the report gives every strategy's
area per embedder and the paired difference to MiniLM (mean ± standard error over the splits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
CACHE = ROOT / "benchmarks" / "cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", required=True)
    parser.add_argument("--embedders", default="minilm,minilm-torch-int8,minilm-onnx-int8,minilm-static")
    parser.add_argument("--strategies", default="knn,uniroute_kmeans,uniroute_learnedmap,relative_maps")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embed-only", action="store_true", help="fill the cache and stop")
    parser.add_argument(
        "--subset",
        type=int,
        default=0,
        help="use a fixed random sample of this many prompts of each set (seed 0), when embedding the whole set is too slow",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import django

    django.setup()
    from evaluation.engine import run_protocol
    from evaluation.selectors import dataset_arrays
    from registry.embedders import EMBEDDERS
    from registry.models import Prompt
    from registry.selectors import prompt_set_get

    embedder_keys = args.embedders.split(",")
    strategies = ["zero", *[s for s in args.strategies.split(",") if s and s != "zero"]]
    sections = []
    for dataset in args.dataset:
        prompt_set = prompt_set_get(name=dataset)
        arrays = dataset_arrays(prompt_set=prompt_set, cost="price")
        # dataset_arrays orders prompts by id; so do we, so rows line up with its matrices.
        rows = list(Prompt.objects.filter(prompt_set=prompt_set).order_by("id").values_list("external_id", "text"))
        if args.subset and args.subset < len(rows):
            keep = np.sort(np.random.default_rng(0).choice(len(rows), size=args.subset, replace=False))
            rows = [rows[i] for i in keep]
            arrays.correctness = arrays.correctness[keep]
        ids, texts = [r[0] for r in rows], [r[1] for r in rows]
        vectors = {key: _cached_embeddings(dataset, EMBEDDERS[key](), ids, texts) for key in embedder_keys}
        if args.embed_only:
            continue
        areas = {}
        for key in embedder_keys:
            started = time.monotonic()
            print(f"{dataset}: {args.trials} splits with {key} ...", file=sys.stderr, flush=True)
            result = run_protocol(
                vectors[key],
                arrays.correctness,
                arrays.costs,
                arrays.llm_names,
                strategies=strategies,
                trials=args.trials,
                seed=args.seed,
            )
            areas[key] = {name: np.asarray(values) for name, values in result["per_trial_area"].items()}
            print(f"  done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        sections.append(_section(dataset, arrays, areas, strategies, embedder_keys, args))
        (CACHE / dataset / "areas.json").write_text(
            json.dumps({k: {s: v.tolist() for s, v in a.items()} for k, a in areas.items()})
        )
    if sections:
        report = "\n\n".join(sections)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report + "\n")


def _cached_embeddings(dataset: str, embedder, ids: list[str], texts: list[str]) -> np.ndarray:
    from registry.embedding_files import file_name, read_embedding_file, text_hash, write_embedding_file
    from registry.importing import Progress

    # A whole-set file serves any subset; a subset's own file is named after its size.
    path = CACHE / dataset / file_name(embedder)
    if not path.exists() and len(ids) < _full_size(dataset):
        path = path.with_name(path.stem + f"-subset{len(ids)}.npz")
    for candidate in (CACHE / dataset / file_name(embedder), path):
        if not candidate.exists():
            continue
        file = read_embedding_file(candidate)
        lookup = file.lookup()
        if all(lookup.get(i, (None,))[0] == text_hash(t) for i, t in zip(ids, texts)):
            stored = np.stack([file.vectors[lookup[i][1]] for i in ids]).astype(np.float32)
            return stored / np.linalg.norm(stored, axis=1, keepdims=True)
    print(f"{dataset}: embedding {len(texts):,} prompts with {embedder.name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    vectors = embedder.embed(
        texts, batch_size=64, progress=Progress(lambda m: print(m, file=sys.stderr, flush=True), "embedded", 30)
    )
    print(f"  {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    write_embedding_file(path, ids=ids, texts=texts, vectors=vectors, embedder=embedder)
    return vectors


def _full_size(dataset: str) -> int:
    from registry.models import Prompt

    return Prompt.objects.filter(prompt_set__name=dataset).count()


def _section(dataset, arrays, areas, strategies, embedder_keys, args) -> str:
    base = embedder_keys[0]
    lines = [
        f"**{dataset}** ({arrays.correctness.shape[0]:,} prompts{' (a fixed random sample, --subset)' if args.subset else ''} × "
        f"{len(arrays.llm_names)} LLMs, {args.trials} splits, seed {args.seed}, cost = price): "
        f"area per embedder, and the paired difference to `{base}` on the same splits (mean ± se, and in se)",
        "",
        "| strategy | " + " | ".join(f"`{k}`" for k in embedder_keys) + " |",
        "| --- | " + " | ".join("---" for _ in embedder_keys) + " |",
    ]
    for strategy in strategies:
        cells = []
        for key in embedder_keys:
            value = areas[key][strategy]
            if key == base:
                cells.append(f"{value.mean():.4f}")
            else:
                diff = value - areas[base][strategy]
                se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
                ratio = diff.mean() / se if se > 0 else float("nan")
                cells.append(f"{value.mean():.4f} ({diff.mean():+.4f} ± {se:.4f}, {ratio:+.1f} se)")
        lines.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

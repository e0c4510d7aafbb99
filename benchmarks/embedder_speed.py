"""Speed, memory, footprint and agreement of every real embedder, each in its own process (no database).

    nice .venv/bin/python benchmarks/embedder_speed.py [--prompts 1000] [--threads 1] [--embedders minilm,minilm-onnx-int8,...]
        [--out benchmarks/results/embedder_speed.md]

For each embedder a child process loads it and measures: load time; one short prompt and one
2,000-character prompt embedded alone (p50/p99 over repeats: the route API's path); ``--prompts``
MMLU-Pro questions in length-sorted batches of 64 (the importer's path) and in batches of 8;
resident memory after load and at peak; the on-disk size of the Python packages and model files the
process actually loaded (what a serving process needs installed). The parent then compares every
embedder's batch vectors with MiniLM's (cosine of the same prompt). ``--threads`` caps the compute
threads of each embedder (1 = what a web worker uses; the importer uses every core).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EMBEDDERS = "minilm,minilm-torch-int8,minilm-onnx,minilm-onnx-int8,minilm-static"
SHORT = "What is the derivative of x**3 + 2x with respect to x?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=100, help="single-prompt repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--embedders", default=DEFAULT_EMBEDDERS)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.child, args)))
        return

    results, vectors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.embedders.split(","):
            path = Path(tmp) / f"{key}.npy"
            command = [
                sys.executable,
                __file__,
                "--child",
                key,
                "--vectors",
                str(path),
                "--prompts",
                str(args.prompts),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
            ]
            print(f"measuring {key} ...", file=sys.stderr)
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "ROUTERHUB_EMBED_THREADS": str(args.threads)},
            )
            if done.returncode:
                sys.exit(f"{key} failed:\n{done.stderr[-3000:]}")
            results[key] = json.loads(done.stdout.strip().splitlines()[-1])
            vectors[key] = np.load(path)
    if "minilm" in vectors:
        for key, rows in vectors.items():
            cosine = np.sum(rows * vectors["minilm"], axis=1)
            results[key]["cosine_vs_minilm"] = {
                "mean": float(cosine.mean()),
                "min": float(cosine.min()),
                "p01": float(np.quantile(cosine, 0.01)),
            }
    report = _report(results, args)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


def _measure(key: str, args) -> dict:
    sys.path.insert(0, str(ROOT))
    import resource

    before = set(sys.modules)
    started = time.perf_counter()
    if key.startswith("minilm") and "onnx" not in key and "static" not in key:
        import torch

        torch.set_num_threads(args.threads)
    from registry.embedders import EMBEDDERS

    embedder = EMBEDDERS[key]()
    embedder.embed_one("load")
    load_seconds = time.perf_counter() - started
    rss_loaded = _rss_mb()

    from registry.data_format import prompt_text

    with gzip.open(ROOT / "data" / "mmlu-pro" / "prompts.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.prompts), handle)]
    texts = [prompt_text(r["question"], r.get("options")) for r in rows]
    long_text = (" ".join(texts) * 2)[:2000]

    def single(text: str, repeats: int) -> dict:
        times = []
        for i in range(repeats):
            # A different text each time, so no cache anywhere can answer.
            t0 = time.perf_counter()
            embedder.embed_one(f"{i} {text}")
            times.append(1000 * (time.perf_counter() - t0))
        times.sort()
        return {"p50_ms": times[len(times) // 2], "p99_ms": times[max(0, int(len(times) * 0.99) - 1)]}

    single("warm-up", 5)
    short = single(SHORT, args.repeats)
    long = single(long_text, max(10, args.repeats // 3))
    t0 = time.perf_counter()
    vectors = embedder.embed(texts, batch_size=64)
    batch64 = 1000 * (time.perf_counter() - t0) / len(texts)
    t0 = time.perf_counter()
    embedder.embed(texts[: min(len(texts), 200)], batch_size=8)
    batch8 = 1000 * (time.perf_counter() - t0) / min(len(texts), 200)
    np.save(args.vectors, vectors)
    loaded = set(sys.modules) - before
    return {
        "name": embedder.name,
        "load_s": load_seconds,
        "short": short,
        "long_2000_chars": long,
        "batch64_ms_per_prompt": batch64,
        "batch8_ms_per_prompt": batch8,
        "rss_loaded_mb": rss_loaded,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "footprint_mb": _footprint_mb(loaded, key),
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _footprint_mb(modules: set[str], key: str) -> float:
    """Disk size of the site-packages distributions whose modules the embedder loaded, plus its model files."""
    import site
    from importlib import metadata

    site_dirs = [Path(p) for p in site.getsitepackages()]
    top_level = {name.split(".")[0] for name in modules}
    distributions = metadata.packages_distributions()
    seen, total = set(), 0
    for module in top_level:
        for dist_name in distributions.get(module, []):
            if dist_name in seen:
                continue
            seen.add(dist_name)
            for file in metadata.distribution(dist_name).files or []:
                path = Path(file.locate())
                if path.is_file() and any(str(path).startswith(str(d)) for d in site_dirs):
                    total += path.stat().st_size
    from registry import model_builds

    if key in model_builds.BUILDS:
        where = model_builds.BUILDS[key][0]()
        total += sum(f.stat().st_size for f in ([where] if where.is_file() else where.rglob("*")) if f.is_file())
    return total / 2**20


def _report(results: dict, args) -> str:
    lines = [
        f"Embedders on {args.prompts} MMLU-Pro questions, {args.threads} compute thread(s) each "
        f"(`benchmarks/embedder_speed.py --prompts {args.prompts} --threads {args.threads}`); load average at the end "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "| embedder | load | short prompt p50 / p99 | 2,000 chars p50 / p99 | batches of 8 | batches of 64 "
        "| RSS loaded / peak | packages + model on disk | cosine vs MiniLM mean / min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        cos = r.get("cosine_vs_minilm", {})
        lines.append(
            f"| `{key}` | {r['load_s']:.1f} s | {r['short']['p50_ms']:.2f} / {r['short']['p99_ms']:.2f} ms "
            f"| {r['long_2000_chars']['p50_ms']:.1f} / {r['long_2000_chars']['p99_ms']:.1f} ms "
            f"| {r['batch8_ms_per_prompt']:.2f} ms/prompt | {r['batch64_ms_per_prompt']:.2f} ms/prompt "
            f"| {r['rss_loaded_mb']:.0f} / {r['rss_peak_mb']:.0f} MB | {r['footprint_mb']:.0f} MB "
            f"| {cos.get('mean', float('nan')):.4f} / {cos.get('min', float('nan')):.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

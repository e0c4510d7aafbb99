"""Embedding speed of the configured embedder on real MMLU-Pro questions (CPU, no database).

    .venv/bin/python benchmarks/embedding_speed.py [--prompts 1000] [--embedder minilm]

Prints model load time and ms per prompt for the importer's path (length-sorted batches of 64)
and for one prompt at a time (the API's path).
"""

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100, help="prompts embedded one at a time")
    parser.add_argument("--embedder", default="minilm")
    args = parser.parse_args()

    from registry.data_format import prompt_text
    from registry.embedders import EMBEDDERS

    with gzip.open(ROOT / "data" / "mmlu-pro" / "prompts.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.prompts), handle)]
    texts = [prompt_text(r["question"], r.get("options")) for r in rows]

    started = time.perf_counter()
    embedder = EMBEDDERS[args.embedder]()
    embedder.embed_one("load")
    print(f"{embedder.name}: loaded in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    embedder.embed(texts, batch_size=64)
    batch_seconds = time.perf_counter() - started
    print(
        f"batched: {len(texts)} MMLU-Pro prompts in {batch_seconds:.1f} s = {1000 * batch_seconds / len(texts):.1f} ms/prompt "
        f"(12,032 prompts ≈ {batch_seconds / len(texts) * 12032 / 60:.1f} min)"
    )

    short = "What is the derivative of x**3 + 2x with respect to x?"
    timings = []
    for text in [short] * args.single:
        started = time.perf_counter()
        embedder.embed_one(text)
        timings.append(time.perf_counter() - started)
    timings.sort()
    print(
        f"one short prompt at a time: p50 {1000 * timings[len(timings) // 2]:.1f} ms, p99 {1000 * timings[int(len(timings) * 0.99) - 1]:.1f} ms"
    )


if __name__ == "__main__":
    main()

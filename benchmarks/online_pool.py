"""Pool `evaluate --protocol online` runs of one split each (different --seed) into one table, or
print one run of several splits (--trials N) as the same table.

    python benchmarks/online_pool.py benchmarks/results/online_mmlu-pro_s*_x0.json
    python benchmarks/online_pool.py benchmarks/results/online_llmrouter-9.json

Per checkpoint: the mean over the runs' splits of each router's window accuracy, window cost and
area, the paired learning − static area difference (mean ± se over splits); the new LLM's gap
closed, 1 − Σ gap(t) / Σ gap(0) over every run's LLMs (each run's mean gap × its LLM count); and the
specialists' recall, mean ± se over the runs' specialists. Runs must share their settings.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def pooled(runs: list[dict]) -> str:
    settings = runs[0]["settings"]
    if any(run["settings"] != settings for run in runs):
        raise SystemExit("the runs' settings differ: pool runs of one command with different --seed only")
    # One run of several splits already holds its means and se over them; runs of one split each are pooled.
    whole = len(runs) == 1 and runs[0]["trials"] > 1
    if not whole and any(run["trials"] != 1 for run in runs):
        raise SystemExit("pool runs of one split each (--trials 1), or give one run of several splits")
    splits = (
        f"{runs[0]['trials']} splits (seed {runs[0]['seed']})"
        if whole
        else (f"{len(runs)} splits (seeds {', '.join(str(run['seed']) for run in runs)})")
    )
    lines = [
        f"{splits}, {runs[0]['dataset']}, "
        f"{runs[0]['strategy']}, exploration {settings['exploration']}, feedback every {settings['reprofile_every']} events",
        "",
        "| events | static accuracy | learning accuracy | static cost | learning cost | drawn | explored "
        "| static area | learning area | learning − static area |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, row in enumerate(runs[0]["checkpoints"]):
        rows = [run["checkpoints"][c] for run in runs]
        cells = [str(row["events"])]
        for key in ("static_window_accuracy", "learning_window_accuracy", "static_window_cost", "learning_window_cost"):
            cells.append(f"{np.mean([r[key] for r in rows]):.4f}" if key in row else "—")
        # drawn: the share of events routed on a draw; explored: of events whose choice the draw changed.
        for key in ("learning_window_drawn", "learning_window_explored"):
            cells.append(f"{np.mean([r[key] for r in rows]):.3f}" if c and all(key in r for r in rows) else "—")
        cells.append(f"{np.mean([r['static_area'] for r in rows]):.4f}")
        cells.append(f"{np.mean([r['learning_area'] for r in rows]):.4f}")
        if whole:
            mean, se = row["gain_area"], row["gain_area_se"]
        else:
            mean, se = _mean_se([r["learning_area"] - r["static_area"] for r in rows])
        cells.append(f"{mean:+.4f} ± {se:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    if all(run["new_llm"] for run in runs):
        llms = sum(run["new_llm"][0]["llms"] for run in runs)
        lines += [
            "",
            f"New LLM registered with {settings['new_llm_prompts']} validation prompts ({llms} LLM-splits):",
            "",
            "| events | mean gap | gap closed | closed vs static |",
            "| ---: | ---: | ---: | ---: |",
        ]
        start = sum(run["new_llm"][0]["gap"] * run["new_llm"][0]["llms"] for run in runs)
        for c, row in enumerate(runs[0]["new_llm"]):
            total = sum(run["new_llm"][c]["gap"] * run["new_llm"][c]["llms"] for run in runs)
            moved = sum(
                (run["new_llm"][c]["area"] - run["new_llm"][0]["area"]) * run["new_llm"][c]["llms"] for run in runs
            )
            # Before any event the learning router is the static one, so its area is the fixed reference.
            static_gap = sum(
                (run["new_llm"][0]["full_area"] - run["new_llm"][0]["area"]) * run["new_llm"][0]["llms"] for run in runs
            )
            closed = 1 - total / start if start > 0 else float("nan")
            vs_static = moved / static_gap if static_gap > 0 else float("nan")
            lines.append(f"| {row['events']} | {total / llms:.4f} | {closed:.2f} | {vs_static:.2f} |")
    if all(run["specialists"] for run in runs):
        categories = sorted({c for run in runs for c in run["specialists"][-1]["categories"]})
        lines += [
            "",
            f"Specialists registered with {settings['new_llm_prompts']} validation prompts ({', '.join(categories)}), "
            "λ = 0 on the held-out prompts:",
            "",
            "| events | recall | ± se | false share |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for c, row in enumerate(runs[0]["specialists"]):
            # One specialist per run when --online-specialists 1; otherwise each run's mean counts once.
            if whole:
                mean, se = row["recall"], row["recall_se"]
            else:
                mean, se = _mean_se([run["specialists"][c]["recall"] for run in runs])
            false_share = np.mean([run["specialists"][c]["false_share"] for run in runs])
            lines.append(f"| {row['events']} | {mean:.3f} | {se:.3f} | {false_share:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(pooled([json.loads(path.read_text()) for path in args.runs]))


if __name__ == "__main__":
    main()

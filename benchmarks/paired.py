"""Paired differences between methods from an `evaluate --json` file.

    .venv/bin/python benchmarks/paired.py benchmarks/results/evaluate_mmlu-pro.json relative_maps:uniroute_learnedmap uniroute_kmeans:knn

Prints, for each A:B, the mean over splits of area(A) − area(B) on the same split, its standard
error and the ratio of the two (how many standard errors A is ahead).
"""

import json
import sys

import numpy as np


def main() -> None:
    result = json.load(open(sys.argv[1]))
    per_trial = result["per_trial_area"]
    for pair in sys.argv[2:]:
        a, b = pair.split(":")
        diff = np.asarray(per_trial[a]) - np.asarray(per_trial[b])
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        print(
            f"{result['dataset']}: {a} − {b} = {diff.mean():+.4f} ± {se:.4f} (paired, {len(diff)} splits; {diff.mean() / se:+.1f} se)"
        )


if __name__ == "__main__":
    main()

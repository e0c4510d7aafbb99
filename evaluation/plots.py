"""A PNG of the deferral curves of one split, as returned in ``run_protocol(...)["curves"]``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers
import matplotlib.pyplot as plt  # noqa: E402

# LLM names may be up to 200 characters (``org/model@host:tag``); labels longer than this are cut.
LABEL_CHARACTERS = 40
REFERENCE_STYLE = {"oracle": {"linestyle": ":", "color": "black"}, "random": {"linestyle": "--", "color": "grey"}}


def plot_deferral_curves(result: dict, path: str | Path) -> Path:
    """Every method's curve on one split, the single test LLMs as labelled points; returns the path."""
    curves = result["curves"]
    figure, axes = plt.subplots(figsize=(9, 6), dpi=120)
    for name, curve in curves["methods"].items():
        area = result.get("methods", {}).get(name, {}).get("area")
        label = f"{name} (mean area {area:.3f})" if area is not None else name
        axes.plot(
            curve["cost"] + [1.0],
            curve["quality"] + [curve["quality"][-1]],
            label=label,
            linewidth=1.6,
            **REFERENCE_STYLE.get(name, {}),
        )
    for name, point in curves["single_llms"].items():
        axes.scatter(point["cost"], point["quality"], marker="o", color="tab:red", zorder=3, s=18)
        axes.annotate(
            _label(name),
            (point["cost"], point["quality"]),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=7,
            parse_math=False,  # a name is text: "$" in it must not start matplotlib's math mode
        )
    axes.set_xlabel("average cost, normalised by the most expensive test LLM")
    axes.set_ylabel("average quality (correctness) on test prompts")
    dataset = result.get("dataset")
    axes.set_title(
        f"Deferral curves{' on ' + dataset if dataset else ''}: split {curves['trial'] + 1} of {result.get('trials', '?')}, unseen test LLMs"
    )
    axes.set_xlim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARACTERS else name[: LABEL_CHARACTERS - 1] + "…"

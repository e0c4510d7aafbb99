"""The text report of an ``evaluate`` run: the tables a reader compares methods with."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

Write = Callable[[str], None]
REFERENCES = ("oracle", "random", "clairvoyant")


def _num(value, fmt: str) -> str:
    return format(value, fmt) if value is not None else format(float("nan"), fmt)


def paired(per_trial: dict, a: str, b: str) -> tuple[float, float | None]:
    """Mean over splits of area(a) − area(b) on the same split, and its standard error."""
    diff = np.asarray(per_trial[a], dtype=float) - np.asarray(per_trial[b], dtype=float)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
    return float(diff.mean()), se


def print_report(result: dict, write: Write) -> None:
    _methods(result, write)
    _paired(result, write)
    _timings(result, write)
    _tuning(result, write)
    _specialists(result, write)
    _categories(result, write)


def _methods(result: dict, write: Write) -> None:
    write(f"\n{'method':<36}{'area':>8}{'± se':>8}{'area50':>8}{'QNC':>8}{'gain vs zero':>14}{'± se':>8}")
    for name, m in result["methods"].items():
        write(
            f"{name:<36}{_num(m.get('area'), '8.4f')}{_num(m.get('area_se'), '8.4f')}{_num(m.get('area50'), '8.4f')}"
            f"{_num(m.get('qnc_median'), '8.3f')}{_num(m.get('gain_vs_zero'), '+14.4f')}{_num(m.get('gain_vs_zero_se'), '8.4f')}"
        )


def _paired(result: dict, write: Write) -> None:
    """Every universal strategy against the best other one, paired on the same splits."""
    per_trial = result["per_trial_area"]
    universal = [n for n in result["methods"] if n not in REFERENCES]
    if len(universal) < 2 or result["trials"] < 2:
        return
    write("\npaired differences (A − B, mean ± se over splits):")
    for a in universal:
        for b in universal:
            if a < b:
                mean, se = paired(per_trial, a, b)
                ratio = f"{mean / se:+.1f} se" if se else "n/a"
                write(f"  {a} − {b}: {mean:+.4f} ± {_num(se, '.4f')} ({ratio})")


def _timings(result: dict, write: Write) -> None:
    timings = result.get("timings")
    if timings:
        write(f"timings (medians): {json.dumps(timings)}")


def _tuning(result: dict, write: Write) -> None:
    tuning = result.get("tuning") or {}
    if not tuning:
        return
    write("\nchosen hyper-parameters (how many splits chose each value):")
    for name, summary in tuning.items():
        counts = "; ".join(
            f"{key}: " + ", ".join(f"{v} ×{n}" for v, n in values.items())
            for key, values in summary["chosen_counts"].items()
        )
        write(
            f"  {name}: {counts or 'nothing to tune'}  ({summary['candidates']} candidates, {summary['folds']} LLM folds)"
        )


def _specialists(result: dict, write: Write) -> None:
    specialists = result.get("specialists")
    if not specialists:
        return
    write(
        f"\nspecialist recall at λ = 0 (mean over categories, ± se over splits):\n"
        f"{'method':<36}{'recall':>8}{'± se':>8}{'false share':>13}{'gain on cat':>13}{'change elsewhere':>18}"
    )
    for name, s in specialists.items():
        write(
            f"{name:<36}{_num(s['recall'], '8.3f')}{_num(s['recall_se'], '8.3f')}{_num(s['false_share'], '13.4f')}"
            f"{_num(s['gain_on_category'], '+13.4f')}{_num(s['change_elsewhere'], '+18.4f')}"
        )


def _categories(result: dict, write: Write) -> None:
    per_category = result.get("per_category")
    if not per_category:
        return
    methods = [n for n in next(iter(per_category.values())) if n != "zero"]
    write("\ngain in area vs zero by category (mean over the splits testing it):")
    write(f"{'category':<20}{'splits':>7}" + "".join(f"{m[:18]:>20}" for m in methods))
    for category, by_method in per_category.items():
        trials = by_method["zero"]["trials"]
        cells = "".join(
            f"{_num(by_method[m]['gain_vs_zero'], '+10.4f')} ±{_num(by_method[m]['gain_vs_zero_se'], '.4f')}"
            if m in by_method
            else f"{'':>20}"
            for m in methods
        )
        write(f"{category[:19]:<20}{trials:>7}{cells}")


def print_online_report(result: dict, write: Write) -> None:
    """The online replay's tables (``evaluation/online.py``): per checkpoint, the router with and without
    feedback, the new LLM's area gap and the specialists' recall."""
    settings = result["settings"]
    events = result["events"]
    write(
        f"\n{result['strategy']}, {result['trials']} splits, {min(events)}–{max(events)} events per split, "
        f"feedback every {settings['reprofile_every']} events, λ ~ uniform[0, {settings['lambda_max']:g}]"
    )
    write(
        f"\n{'events':>7}{'static acc':>12}{'learning acc':>14}{'static cost':>13}{'learning cost':>15}"
        f"{'static area':>13}{'learning area':>15}{'area gain':>11}{'± se':>8}"
    )
    for row in result["checkpoints"]:
        write(
            f"{row['events']:>7}{_num(row.get('static_window_accuracy'), '12.4f')}"
            f"{_num(row.get('learning_window_accuracy'), '14.4f')}{_num(row.get('static_window_cost'), '13.4f')}"
            f"{_num(row.get('learning_window_cost'), '15.4f')}{_num(row.get('static_area'), '13.4f')}"
            f"{_num(row.get('learning_area'), '15.4f')}{_num(row.get('gain_area'), '+11.4f')}{_num(row.get('gain_area_se'), '8.4f')}"
        )
    if result["new_llm"]:
        write(
            f"\nnew LLM registered with {settings['new_llm_prompts']} validation prompts "
            f"({result['new_llm'][0]['llms']} LLM-splits)"
        )
        write(f"{'events':>7}{'area gap':>10}{'± se':>8}{'gap closed':>12}{'closed vs static':>18}")
        for row in result["new_llm"]:
            write(
                f"{row['events']:>7}{_num(row['gap'], '10.4f')}{_num(row['gap_se'], '8.4f')}"
                f"{_num(row['gap_closed'], '12.3f')}{_num(row['closed_vs_static'], '18.3f')}"
            )
    if result["specialists"]:
        write(
            f"\nspecialists registered with {settings['new_llm_prompts']} validation prompts "
            f"({result['specialists'][0]['specialists']} specialist-splits), λ = 0 on the scoring prompts"
        )
        write(f"{'events':>7}{'recall':>9}{'± se':>8}{'false share':>13}")
        for row in result["specialists"]:
            write(
                f"{row['events']:>7}{_num(row['recall'], '9.3f')}{_num(row['recall_se'], '8.3f')}"
                f"{_num(row['false_share'], '13.4f')}"
            )

"""The dashboard's evaluation pages (staff): the table of runs; one run's deferral curves and paired
differences. Served under the dashboard's namespace (``evaluation/urls.py``, joined in ``routerhub/urls.py``)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from evaluation.selectors import evaluation_run, evaluation_run_summaries, paired_differences
from routing.views import charts
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import quality, signed

REFERENCES = ("oracle", "random")


@dashboard_page("evaluations", staff_only=True)
def evaluation_list(request):
    runs = evaluation_run_summaries()
    for run in runs:
        methods = {k: v for k, v in (run["methods"] or {}).items() if k not in REFERENCES and v.get("area") is not None}
        run["best"] = max(methods.items(), key=lambda item: item[1]["area"], default=None)
    return render(
        request,
        "dashboard/evaluation_list.html",
        base_context(request, page="evaluations", title="Evaluation runs", runs=runs),
    )


@dashboard_page("evaluations", staff_only=True)
def evaluation_detail(request, run_id: int):
    run = evaluation_run(run_id=run_id)
    if run is None:
        raise Http404("no such evaluation run")
    results = run.results or {}
    methods = results.get("methods", {})
    pairs = paired_differences(per_trial_area=results.get("per_trial_area", {}))
    names = [n for n in methods if any(p.first == n for p in pairs)]
    matrix = [[next((p for p in pairs if p.first == a and p.second == b), None) for b in names] for a in names]
    context = base_context(
        request,
        page="evaluations",
        title=f"Evaluation run #{run.id}",
        run=run,
        methods=methods,
        curves_chart=_curves_chart(results),
        gains_chart=_gains_chart(methods),
        pair_names=names,
        pair_matrix=list(zip(names, matrix)),
        single_llms=results.get("single_llms", {}),
    )
    return render(request, "dashboard/evaluation_detail.html", context)


def _curves_chart(results: dict) -> charts.Chart | None:
    curves = results.get("curves")
    if not curves:
        return None
    series = []
    for name, curve in curves.get("methods", {}).items():
        # points joined by straight lines, as the area is integrated (METHODS.md, "Metrics")
        style = {"oracle": ("dashed", "#000"), "random": ("dashed", "#999")}.get(name, ("line", ""))
        series.append(charts.Series(name, list(zip(curve["cost"], curve["quality"])), kind=style[0], colour=style[1]))
    singles = curves.get("single_llms", {})
    series.append(
        charts.Series(
            "test LLMs",
            [(p["cost"], p["quality"]) for p in singles.values()],
            kind="points",
            colour="#666",
            labels=list(singles),
        )
    )
    methods = results.get("methods", {})
    return charts.xy_chart(
        series,
        title="Deferral curves of the first split",
        summary=(
            f"Accuracy against normalised cost (1 = the split's most expensive test LLM) for every method on split "
            f"{curves.get('trial', 0) + 1}; the single test LLMs are points."
        ),
        x_label="normalised cost",
        y_label="accuracy",
        x_format=lambda v: f"{v:.1f}",
        y_format=quality,
        width=900,
        height=440,
        table_head=("method", "mean area over all splits"),
        table_rows=tuple((name, quality(m.get("area"))) for name, m in methods.items()),
    )


def _gains_chart(methods: dict) -> charts.Chart | None:
    rows = [
        (name, m["gain_vs_zero"], m.get("gain_vs_zero_se") or 0.0)
        for name, m in methods.items()
        if name not in ("zero", *REFERENCES) and m.get("gain_vs_zero") is not None
    ]
    if not rows:
        return None
    best = max(rows, key=lambda r: r[1])
    return charts.interval_chart(
        rows,
        title="Gain in area over ZeroRouter, paired by split",
        summary=f"Mean gain in area over ZeroRouter on the same splits (± one standard error); {best[0]} gains most, {signed(best[1])}.",
        table_head=("method", "gain vs ZeroRouter", "± se"),
        table_rows=tuple((name, signed(v), f"{e:.4f}") for name, v, e in rows),
    )

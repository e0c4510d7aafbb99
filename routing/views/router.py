"""Router: the active state's deferral curve on held-out prompts, QNC in words, and the cluster map."""

from __future__ import annotations

import statistics

from django.shortcuts import render

from routing.exceptions import NoActiveRoutingState
from routing.selectors.clusters import ClusterMap, cluster_map
from routing.selectors.curves import HeldOut, held_out
from routing.selectors.decisions import tenants_current_lambda
from routing.selectors.routers import LoadedRouter, active_router
from routing.views import charts
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import lam as format_lam
from routing.views.formatting import percent, quality, usd


def page_lambda(request, lambdas: list[float]) -> float:
    """The λ a page shows: ``?lambda=`` if it is a non-negative number, else the tenants' median current λ."""
    try:
        value = float(request.GET.get("lambda", ""))
        if value >= 0 and value != float("inf"):
            return value
    except ValueError:
        pass
    return statistics.median(lambdas) if lambdas else 0.0


@dashboard_page
def router(request):
    try:
        loaded = active_router()
    except NoActiveRoutingState as exc:
        return render(
            request, "dashboard/router.html", base_context(request, page="router", title="Router", missing=str(exc))
        )
    scope = request.viewer.scope(request)
    tenant_lambdas = tenants_current_lambda(tenant=scope if scope else request.viewer.tenant)
    lam = page_lambda(request, [t.lam for t in tenant_lambdas])
    figures = held_out(loaded)
    clusters = cluster_map(loaded)
    context = base_context(
        request,
        page="router",
        title="Router",
        router=loaded,
        lam=lam,
        held_out=figures,
        curve_chart=curve_chart(loaded, figures, tenant_lambdas) if figures else None,
        qnc=figures.qnc_sentence() if figures else None,
        cluster_view=cluster_view(clusters, lam) if clusters else None,
        tenant_lambdas=tenant_lambdas,
    )
    return render(request, "dashboard/router.html", context)


def curve_chart(loaded: LoadedRouter, figures: HeldOut, tenant_lambdas) -> charts.Chart:
    singles = [(float(c), float(a)) for c, a in zip(figures.costs_usd, figures.accuracy)]
    operating = [(t, *figures.operating_point(t.lam)) for t in tenant_lambdas]
    series = [
        charts.Series(loaded.strategy_name, list(zip(figures.strategy.cost, figures.strategy.quality)), kind="step"),
        charts.Series("ZeroRouter", list(zip(figures.zero.cost, figures.zero.quality)), kind="step"),
        charts.Series("single LLMs", singles, kind="points", colour="#888", labels=list(figures.llm_names)),
    ]
    if operating:
        series.append(
            charts.Series(
                "tenants' current λ",
                [(cost, acc) for _, cost, acc in operating],
                kind="points",
                colour=charts.colour(2),
                labels=[f"{t.tenant} (λ {format_lam(t.lam)})" for t, _, _ in operating],
            )
        )
    rows = [(name, usd(c), quality(a), "single LLM") for name, (c, a) in zip(figures.llm_names, singles)]
    rows += [
        (t.tenant, usd(c), quality(a), f"{loaded.strategy_name} at λ {format_lam(t.lam)}") for t, c, a in operating
    ]
    return charts.xy_chart(
        series,
        title="Deferral curve on held-out prompts",
        summary=(
            f"Accuracy against mean cost per query on {figures.prompt_count:,} held-out prompts: {loaded.strategy_name} "
            f"and ZeroRouter as λ goes from 0 to ∞, each single LLM as a point"
            + (", and each tenant's current operating point." if operating else ".")
        ),
        x_label="mean cost per query (USD)",
        y_label="accuracy",
        x_format=usd,
        y_format=quality,
        width=900,
        height=440,
        table_head=("what", "cost per query", "accuracy", "how"),
        table_rows=tuple(sorted(rows, key=lambda r: r[0])),
    )


def cluster_view(clusters: ClusterMap, lam: float) -> dict:
    winners = clusters.winners(lam)
    columns = [f"#{c.index}" for c in clusters.clusters]
    heat = charts.heatmap(
        list(clusters.llm_names),
        columns,
        clusters.errors.tolist(),
        title="Per-cluster error Ψ of every LLM",
        marked={(winner, j) for j, (winner, _) in enumerate(winners)},
        summary=(
            "Each cell is an LLM's "
            + ("error Ψ on a cluster" if clusters.own_clusters else "mean predicted error on a group of prompts")
            + f" (0 = always right); a black frame marks the LLM that wins the cluster at λ = {format_lam(lam)}."
        ),
        value_format=lambda v: f"{v:.2f}".lstrip("0") if v < 1 else "1",
        table_head=("LLM", *columns),
        table_rows=tuple(
            (name, *(quality(v) for v in row)) for name, row in zip(clusters.llm_names, clusters.errors.tolist())
        ),
    )
    described = [
        {
            "cluster": c,
            "winner": clusters.llm_names[winner],
            "winner_share": percent(share, decimals=0),
            "winner_error": quality(clusters.errors[winner, j]),
            "fleet_error": quality(clusters.fleet_mean[j]),
        }
        for j, (c, (winner, share)) in enumerate(zip(clusters.clusters, winners))
    ]
    return {"map": clusters, "heatmap": heat, "clusters": described}

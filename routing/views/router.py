"""Router: the active state's deferral curve on held-out prompts, QNC in words, and the cluster map."""

from __future__ import annotations

import statistics

from django.shortcuts import render

from routing.exceptions import NoActiveRoutingState
from routing.selection import MAX_LAMBDA
from routing.selectors.clusters import ClusterMap, cluster_map
from routing.selectors.curves import HeldOut, Qnc, held_out
from routing.selectors.decisions import tenants_current_lambda
from routing.selectors.routers import LoadedRouter, active_router
from routing.views import charts
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import lam as format_lam
from routing.views.formatting import percent, quality, usd, usd_axis


def page_lambda(request, lambdas: list[float]) -> float:
    """The λ a page shows: ``?lambda=`` if it is a number in [0, MAX_LAMBDA], else the tenants' median current λ."""
    try:
        value = float(request.GET.get("lambda", ""))
        if 0 <= value <= MAX_LAMBDA:
            return value
    except ValueError:
        pass
    return statistics.median(lambdas) if lambdas else 0.0


@dashboard_page("router")
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
        qnc=qnc_sentence(figures.qnc()) if figures else None,
        cluster_view=cluster_view(clusters, lam) if clusters else None,
        tenant_lambdas=tenant_lambdas,
    )
    return render(request, "dashboard/router.html", context)


def curve_chart(loaded: LoadedRouter, figures: HeldOut, tenant_lambdas) -> charts.Chart:
    singles = [(float(c), float(a)) for c, a in zip(figures.costs_usd, figures.accuracy)]
    # Name the LLMs on the cost–accuracy frontier; the crowd below it is named on hover (and in the table).
    frontier = {i for i, (c, a) in enumerate(singles) if not any(c2 <= c and a2 > a for c2, a2 in singles)}
    operating = [(t, *figures.operating_point(t.lam)) for t in tenant_lambdas]
    series = [
        charts.Series(loaded.strategy_name, list(zip(figures.strategy.cost, figures.strategy.quality))),
        charts.Series("ZeroRouter", list(zip(figures.zero.cost, figures.zero.quality))),
        charts.Series(
            "single LLMs",
            singles,
            kind="points",
            colour="#888",
            labels=[name if i in frontier else f"~{name}" for i, name in enumerate(figures.llm_names)],
        ),
    ]
    if operating:
        # Tenants whose λs pick the same LLMs share one point, and one label.
        points: dict[tuple[float, float], list] = {}
        for t, cost, acc in operating:
            points.setdefault((cost, acc), []).append(t)
        series.append(
            charts.Series(
                "tenants' current λ",
                list(points),
                kind="points",
                colour=charts.colour(2),
                labels=[_tenants_label(group) for group in points.values()],
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
        x_label="mean cost per query (USD, log scale)",
        y_label="accuracy",
        x_format=usd_axis,
        x_log=True,
        y_format=quality,
        width=900,
        height=440,
        table_head=("what", "cost per query", "accuracy", "how"),
        table_rows=tuple(sorted(rows, key=lambda r: r[0])),
    )


def qnc_sentence(figure: Qnc) -> str:
    """QNC in words: at what share of the best LLM's cost the router reaches its accuracy."""
    best = f"the best LLM's accuracy ({figure.best_llm}, {quality(figure.best_accuracy)})"
    if figure.cost_usd is None:
        return f"The router does not reach {best} on these prompts; its best is {quality(figure.router_best_accuracy)}."
    if figure.share_of_cost >= 0.995:
        return f"The router reaches {best} only at that LLM's full cost ({usd(figure.best_cost_usd)} per query)."
    return (
        f"The router reaches {best} at {percent(figure.share_of_cost, decimals=0)} of its cost: "
        f"{usd(figure.cost_usd)} instead of {usd(figure.best_cost_usd)} per query."
    )


def _tenants_label(group) -> str:
    if len(group) == 1:
        return f"{group[0].tenant} (λ {format_lam(group[0].lam)})"
    lams = sorted(t.lam for t in group)
    return f"{len(group)} tenants (λ {format_lam(lams[0])}–{format_lam(lams[-1])})"


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

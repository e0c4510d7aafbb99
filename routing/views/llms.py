"""LLMs: the fleet, and one LLM's page — profile against the fleet per cluster, prices, where it is
chosen, the evidence its profile took in, recent jobs, traffic and spend over time."""

from __future__ import annotations

from datetime import UTC, timedelta

from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from registry.models import LLM
from routing.exceptions import NoActiveRoutingState
from routing.selectors.clusters import cluster_map
from routing.selectors.curves import held_out
from routing.selectors.decisions import tenants_current_lambda
from routing.selectors.evidence import llm_evidence_overview
from routing.selectors.llms import llm_profile_smoothing, llm_recent_jobs, llm_rows, llm_usage_by_tenant
from routing.selectors.routers import active_router
from routing.selectors.usage import days_between, usage_grouped
from routing.views import charts
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import count, quality, usd, usd_axis
from routing.views.router import page_lambda

DAYS = 30


def _window():
    until = timezone.now().astimezone(UTC).date()
    return until - timedelta(days=DAYS - 1), until


def _active_router_or_none():
    try:
        return active_router()
    except NoActiveRoutingState:
        return None


@dashboard_page("llms")
def llm_list(request):
    since, until = _window()
    loaded = _active_router_or_none()
    rows = llm_rows(
        state_id=loaded.state_id if loaded else None, tenant=request.viewer.scope(request), since=since, until=until
    )
    context = base_context(
        request, page="llms", title="LLMs", rows=rows, router=loaded, usage_shown=request.viewer.may_see("usage")
    )
    return render(request, "dashboard/llm_list.html", context)


@dashboard_page("llms")
def llm_detail(request, llm_id: int):
    llm = get_object_or_404(LLM, id=llm_id)
    since, until = _window()
    viewer = request.viewer
    scope = viewer.scope(request)
    loaded = _active_router_or_none()
    lam = page_lambda(request, [t.lam for t in tenants_current_lambda(tenant=scope or viewer.tenant)])
    usage_shown = viewer.may_see("usage")
    # Evidence names the tenants it came from: an audit for staff, never shown to a tenant's users.
    evidence_shown = viewer.is_staff and viewer.may_see("evidence")
    if usage_shown:
        daily = usage_grouped(by=("day",), since=since, until=until, tenant=scope, llm_id=llm.id)
        traffic_charts = _traffic_charts(days_between(since, until), daily)
    context = base_context(
        request,
        page="llms",
        title=llm.name,
        llm=llm,
        lam=lam,
        router=loaded,
        traffic_charts=traffic_charts if usage_shown else None,
        jobs=llm_recent_jobs(llm=llm) if viewer.is_staff and viewer.may_see("jobs") else None,
        evidence_shown=evidence_shown,
        evidence=llm_evidence_overview(state_id=loaded.state_id, llm_id=llm.id) if evidence_shown and loaded else None,
        by_tenant=llm_usage_by_tenant(llm=llm, since=since, until=until)
        if viewer.is_staff and scope is None and usage_shown
        else None,
        **(_profile_context(loaded, llm, lam) if loaded else {}),
    )
    return render(request, "dashboard/llm_detail.html", context)


def _profile_context(loaded, llm: LLM, lam: float) -> dict:
    names = [routable.name for routable in loaded.llms]
    if llm.name not in names:
        return {"routable": False}
    row = names.index(llm.name)
    result = {
        "routable": True,
        "routable_llm": loaded.llms[row],
        "smoothing": llm_profile_smoothing(state_id=loaded.state_id, llm=llm),
    }
    clusters = cluster_map(loaded)
    if clusters is not None:
        mine, fleet = clusters.errors[row], clusters.fleet_mean
        winners = clusters.winners(lam)
        labels = [f"#{c.index}" for c in clusters.clusters]
        better = int((mine < fleet).sum())
        result["profile_chart"] = charts.bar_chart(
            labels,
            [(llm.name, mine.tolist()), ("fleet mean", fleet.tolist())],
            title=f"Profile of {llm.name} against the fleet mean",
            summary=(
                f"{llm.name} makes fewer errors than the fleet mean on {better} of {len(labels)} clusters "
                f"(mean error {quality(mine.mean())} against {quality(fleet.mean())})."
            ),
            y_format=quality,
            y_label="error Ψ",
            stacked=False,
            width=760,
            height=260,
            table_head=("cluster", "label", llm.name, "fleet mean"),
            table_rows=tuple(
                (labels[j], c.label, quality(mine[j]), quality(fleet[j])) for j, c in enumerate(clusters.clusters)
            ),
        )
        result["won_clusters"] = [
            (clusters.clusters[j], share) for j, (winner, share) in enumerate(winners) if winner == row
        ]
    figures = held_out(loaded)
    if figures is not None and llm.name in figures.llm_names:
        j = figures.llm_names.index(llm.name)
        result["held_out_share"] = float(figures.chosen_shares(lam)[j])
        result["held_out_accuracy"] = float(figures.accuracy[j])
        result["held_out_cost"] = float(figures.costs_usd[j])
        result["held_out_prompts"] = figures.prompt_count
    return result


def _traffic_charts(days, daily: dict) -> tuple[charts.Chart, charts.Chart]:
    requests = [daily[(d,)].requests if (d,) in daily else 0 for d in days]
    spend = [float(daily[(d,)].spent_usd) if (d,) in daily else 0.0 for d in days]
    return (
        charts.daily_chart(
            days,
            "requests",
            requests,
            title="Requests per day",
            summary=f"{count(sum(requests))} requests routed here in the last {len(days)} days.",
            shown=count,
            axis=count,
        ),
        charts.daily_chart(
            days,
            "spend",
            spend,
            title="Spend per day (USD)",
            summary=f"{usd(sum(spend))} spent here in the last {len(days)} days.",
            shown=usd,
            axis=usd_axis,
        ),
    )

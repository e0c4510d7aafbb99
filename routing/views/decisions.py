"""Decisions: a filterable list, and one decision explained (cluster, ranked alternatives, why this λ)."""

from __future__ import annotations

from django import forms
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from registry.selectors import llm_choices
from routing.exceptions import DecisionNotFound, NoActiveRoutingState
from routing.models import Decision
from routing.selectors.clusters import cluster_map
from routing.selectors.decisions import DecisionStatus, decision_get, decision_page
from routing.selectors.routers import active_router
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import lam as format_lam


class DecisionFilters(forms.Form):
    llm = forms.ModelChoiceField(queryset=llm_choices(), required=False, empty_label="every LLM")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(choices=[("", "any status"), *DecisionStatus.CHOICES], required=False)
    before = forms.CharField(required=False, widget=forms.HiddenInput, max_length=100)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("since", "Must not be after “until”.")
        return data


@dashboard_page("decisions")
def decision_list(request):
    scope = request.viewer.scope(request)
    form = DecisionFilters(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    page = decision_page(
        tenant=scope,
        llm_id=filters["llm"].id if filters.get("llm") else None,
        since=filters.get("since"),
        until=filters.get("until"),
        status=filters.get("status") or None,
        before=filters.get("before") or None,
    )
    query = request.GET.copy()
    query.pop("before", None)
    context = base_context(
        request,
        page="decisions",
        title="Decisions",
        form=form,
        decisions=page.decisions,
        # a decision's page is the list's URL plus its id: reversing the URL 50 times per page costs more
        decisions_url=reverse("dashboard:decisions"),
        next_query=_with(query, before=page.next_cursor) if page.next_cursor else None,
        first_query=query.urlencode() if request.GET.get("before") else None,
    )
    return render(request, "dashboard/decision_list.html", context)


def _with(query, **values) -> str:
    query = query.copy()
    for key, value in values.items():
        query[key] = value
    return query.urlencode()


@dashboard_page("decisions")
def decision_detail(request, decision_id):
    viewer = request.viewer
    try:
        decision = decision_get(decision_id=decision_id, tenant=None if viewer.is_staff else viewer.tenant)
    except DecisionNotFound:
        raise Http404("No such decision for this tenant.") from None
    context = base_context(
        request,
        page="decisions",
        title="Decision",
        decision=decision,
        chosen={
            "name": decision.llm.name,
            "predicted_quality": decision.predicted_quality,
            "estimated_cost_usd": decision.estimated_cost_usd,
        },
        why_lambda=why_lambda(decision),
        cluster=_cluster_of(decision),
    )
    return render(request, "dashboard/decision_detail.html", context)


def why_lambda(decision: Decision) -> str:
    """The reason for the decision's λ, in a sentence."""
    reason = decision.lambda_reason
    Reason = Decision.LambdaReason
    request = decision.request or {}
    if reason == Reason.EXPLICIT:
        return f"The request asked for λ = {format_lam(decision.lambda_used)}."
    if reason == Reason.TENANT_DEFAULT:
        return f"The request named no λ, so the tenant's default λ = {format_lam(decision.lambda_used)} applied."
    if reason == Reason.QUALITY_TARGET:
        target = request.get("quality_target")
        source = (
            f"the request's quality target {target:g}" if target is not None else "the tenant's default quality target"
        )
        return f"No λ: {source} chose the cheapest LLM predicted to reach it (or the best one, when none does)."
    if reason == Reason.BUDGET_PACING:
        return (
            f"The request named no λ and the tenant has no default, so λ = {format_lam(decision.lambda_used)} was paced: "
            "chosen so that the expected cost per request spreads the budget left over the rest of the period at "
            "the tenant's recent request rate."
        )
    return "The budget for the period was spent, and the tenant's policy routes to the cheapest allowed LLM instead of refusing."


def _cluster_of(decision: Decision):
    """The decision's cluster as the cluster map labels it, when it was made by the active state."""
    if decision.cluster is None:
        return None
    try:
        loaded = active_router()
    except NoActiveRoutingState:
        return None
    if loaded.state_id != decision.state_id:
        return None
    clusters = cluster_map(loaded)
    if clusters is None or not clusters.own_clusters:
        return None
    return next((c for c in clusters.clusters if c.index == decision.cluster), None)

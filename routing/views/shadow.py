"""Shadow evaluation: per tenant and period, routed answers judged against a comparison LLM's — win /
tie / loss with a confidence interval, what routing saved, and the prompts where it lost most."""

from __future__ import annotations

from datetime import UTC, timedelta

from django import forms
from django.shortcuts import render
from django.utils import timezone

from routing.selectors.shadow import shadow_budgets, shadow_losses, shadow_summary
from routing.views.base import base_context, dashboard_page

DAYS = 30


class PeriodFilters(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("since", "Must not be after “until”.")
        return data


@dashboard_page("shadow")
def shadow(request):
    viewer = request.viewer
    scope = viewer.scope(request)
    form = PeriodFilters(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    until = filters.get("until") or timezone.now().astimezone(UTC).date()
    since = filters.get("since") or until - timedelta(days=DAYS - 1)
    tenants = shadow_summary(tenant=scope, since=since, until=until)
    losses = shadow_losses(tenant=scope, since=since, until=until) if scope is not None else []
    context = base_context(
        request,
        page="shadow",
        title="Shadow evaluation",
        form=form,
        since=since,
        until=until,
        tenants=tenants,
        losses=losses,
        budgets=shadow_budgets(tenant=scope) if viewer.is_staff and viewer.may_see("shadow_budgets") else [],
    )
    return render(request, "dashboard/shadow.html", context)

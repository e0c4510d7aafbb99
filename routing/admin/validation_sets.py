"""The tenant admin's "Build a validation set from its gateway logs" action, in three steps on one page:

1. a form: the set's name and size, the period, the judge LLM, the job's cost cap, whether to activate;
2. the set is built (as ``build_validation_set`` does) and the profiling job's cost estimate shown,
   with a button that starts it;
3. the job is queued, and the admin goes on to it (*Routing › Jobs*).

Each step posts back to the tenant changelist with the action, as Django's own confirmation pages do.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from registry.models import LLM, PromptSet
from routing.exceptions import JobBusy, NoActiveRoutingState, RoutingError
from routing.models import Tenant
from routing.services.judging import judge_llm_of
from routing.services.validation_sets import (
    validation_set_build,
    validation_set_estimate,
    validation_set_profiling_enqueue,
)

ACTION = "build_validation_set"


class BuildForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="The new prompt set's name.")
    size = forms.IntegerField(min_value=1, max_value=100_000, initial=500, help_text="Prompts in the set.")
    since = forms.DateTimeField(required=False, help_text="Only calls logged since (empty: all).")
    judge = forms.ModelChoiceField(
        queryset=LLM.objects.filter(is_active=True).exclude(api_base="").order_by("name"),
        help_text="The LLM that grades every answer on a rubric (no reference answers).",
    )


class StartForm(forms.Form):
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.filter(role=PromptSet.Role.VALIDATION))
    max_cost_usd = forms.FloatField(
        min_value=0, required=False, help_text="The job stops cleanly when answers and verdicts reach this (USD)."
    )
    activate = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Then fit a routing state profiled on this set and make it the active router.",
    )


def _default_judge() -> LLM | None:
    try:
        return judge_llm_of(None)
    except ValueError:
        return None  # ROUTERHUB_JUDGE_LLM names none: the form asks


def build_validation_set_action(model_admin, request, queryset):
    if queryset.count() != 1:
        model_admin.message_user(request, "Choose one tenant to build a validation set from.", messages.WARNING)
        return None
    tenant: Tenant = queryset.get()
    step = request.POST.get("step")
    if step == "start":
        start = StartForm(request.POST)
        if start.is_valid():
            try:
                job, created = validation_set_profiling_enqueue(
                    prompt_set=start.cleaned_data["prompt_set"],
                    max_cost_usd=start.cleaned_data["max_cost_usd"],
                    activate=start.cleaned_data["activate"],
                )
            except (RoutingError, JobBusy) as exc:
                model_admin.message_user(request, str(exc), messages.ERROR)
                return None
            note = "queued" if created else "already on its way (one such job at a time)"
            model_admin.message_user(request, f"Profiling job #{job.id} {note}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:routing_job_change", args=[job.id]))
        return _page(model_admin, request, tenant, form=None, start=start)
    default_judge = _default_judge()
    form = BuildForm(request.POST if step == "build" else None, initial={"judge": default_judge})
    if step == "build" and form.is_valid():
        data = form.cleaned_data
        try:
            prompt_set, report = validation_set_build(
                tenant=tenant, size=data["size"], name=data["name"], judge_llm=data["judge"], since=data["since"]
            )
            estimate = validation_set_estimate(prompt_set=prompt_set)
        except (RoutingError, NoActiveRoutingState) as exc:
            form.add_error(None, str(exc))
            return _page(model_admin, request, tenant, form=form)
        start = StartForm(initial={"prompt_set": prompt_set.id, "activate": True})
        return _page(model_admin, request, tenant, form=None, start=start, report=report, estimate=estimate)
    return _page(model_admin, request, tenant, form=form)


def _page(model_admin, request, tenant, *, form, start=None, report=None, estimate=None):
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Validation set from {tenant.name}'s traffic",
        "opts": model_admin.model._meta,
        "tenant": tenant,
        "form": form,
        "start": start,
        "report": report,
        "estimate": estimate,
        "action": ACTION,
    }
    return TemplateResponse(request, "admin/routing/validation_set.html", context)

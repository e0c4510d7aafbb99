"""Reads of LLMs for the dashboard: the fleet list and one LLM's page (prices, profile, jobs, traffic)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from registry.models import LLM
from routing.models import Job, LLMProfile, Tenant
from routing.selectors.usage import UsageRow, usage_grouped

RECENT_JOBS = 10


@dataclass(frozen=True)
class LlmRow:
    llm: LLM
    validation_error: float | None  # in the active state's profile; None: not profiled there
    n_validation_outcomes: int | None
    usage: UsageRow


def llm_rows(*, state_id: int | None, tenant: Tenant | None, since: date, until: date) -> list[LlmRow]:
    """Every LLM (active first, then by name) with its profile in the active state and its recent usage."""
    profiles = {
        p.llm_id: p
        for p in LLMProfile.objects.filter(state_id=state_id).only(
            "llm_id", "validation_error", "n_validation_outcomes"
        )
    }
    usage = usage_grouped(by=("llm_id",), since=since, until=until, tenant=tenant)
    rows = []
    for llm in LLM.objects.order_by("-is_active", "name"):
        profile = profiles.get(llm.id)
        rows.append(
            LlmRow(
                llm=llm,
                validation_error=profile.validation_error if profile else None,
                n_validation_outcomes=profile.n_validation_outcomes if profile else None,
                usage=usage.get((llm.id,), UsageRow()),
            )
        )
    return rows


def llm_recent_jobs(*, llm: LLM, limit: int = RECENT_JOBS) -> list[Job]:
    return list(Job.objects.filter(llm=llm).select_related("state").order_by("-created_at")[:limit])


def llm_usage_by_tenant(*, llm: LLM, since: date, until: date) -> list[tuple[str, UsageRow]]:
    """Which tenants sent this LLM their requests, most requests first."""
    grouped = usage_grouped(by=("tenant_id",), since=since, until=until, llm_id=llm.id)
    names = dict(Tenant.objects.filter(id__in=[key[0] for key in grouped]).values_list("id", "name"))
    return sorted(((names.get(key[0], "?"), row) for key, row in grouped.items()), key=lambda item: -item[1].requests)


def llm_profile_smoothing(*, state_id: int, llm: LLM) -> str | None:
    """How ``llm``'s profile in the state was smoothed, in words (``LLMProfile.smoothing_summary``); None
    without a profile there."""
    profile = LLMProfile.objects.filter(state_id=state_id, llm=llm).only("smoothing").first()
    return profile.smoothing_summary if profile else None

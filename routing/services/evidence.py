"""Evidence that teaches the router: record a judgement of an LLM's answer, and apply what is new.

Entry point for every source of evidence — a trusted tenant's quality feedback
(``services/feedback.py``), a grader's verdict — is :func:`evidence_record`::

    evidence_record(llm=llm, prompt=prompt, score=0.0, source="judge:gpt-4o-mini", tenant=None)

``prompt`` is a registry Prompt with an embedding (``registry.services.prompt_record`` makes one for
any text); ``score`` is correctness in [0, 1]; ``source`` names who judged, and together with
``tenant`` it is the unit of the cap: one (source, tenant) weighs at most
``ROUTERHUB_EVIDENCE_CAP_PROMPTS`` prompts' worth per LLM, and judges a prompt once per LLM (a second
judgement replaces the first). Recording writes one row and nothing else; :func:`evidence_apply`
(the Celery beat task ``routing.apply_evidence``, every 30 s) then profiles again, on the active routing
state, each LLM with evidence it has not taken in — validation rows plus evidence rows, weighted by
age and cap (``routing/strategies/evidence.py``), no refit — and the web processes reload the state
within a second. A refit profiles every LLM the same way, so accumulated evidence carries over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from registry.models import LLM, Prompt
from routing.models import Decision, Evidence, EvidenceApplication, RoutingState, Tenant
from routing.selectors import evidence as selectors
from routing.selectors.state import routing_state_active
from routing.services.state import llm_profile

logger = logging.getLogger(__name__)

SOURCE_FEEDBACK = "feedback"
MAX_SOURCE_LENGTH = 100
# pg_try_advisory_xact_lock key: one application run at a time (beat and a retried delivery may overlap).
_APPLY_LOCK = 0x45_56_49_44  # "EVID"


def evidence_record(
    *,
    llm: LLM,
    prompt: Prompt,
    score: float,
    source: str,
    tenant: Tenant | None = None,
    decision: Decision | None = None,
    observed_at: datetime | None = None,
) -> Evidence:
    """Record that ``llm`` scored ``score`` on ``prompt`` according to ``source`` (and ``tenant``).

    One row per (source, tenant, LLM, prompt): a later judgement replaces an earlier one, one older than
    the stored judgement is ignored, and the same judgement again changes nothing — safe to call from a
    retried task. Raises ValueError on a score outside [0, 1], an empty or over-long source, or a prompt
    without an embedding (it could not be placed in any cluster).
    """
    score = float(score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"an evidence score must lie in [0, 1], got {score!r}")
    if not source or len(source) > MAX_SOURCE_LENGTH:
        raise ValueError(f"an evidence source must be 1 to {MAX_SOURCE_LENGTH} characters, got {source!r}")
    if prompt.embedding is None:
        raise ValueError(f"prompt {prompt.id} has no embedding, so it cannot be evidence")
    observed_at = observed_at or timezone.now()
    with transaction.atomic():
        evidence, created = Evidence.objects.select_for_update().get_or_create(
            source=source,
            tenant=tenant,
            llm=llm,
            prompt=prompt,
            defaults={"score": score, "observed_at": observed_at, "decision": decision},
        )
        if (
            created
            or observed_at < evidence.observed_at
            or (evidence.score == score and evidence.decision_id == getattr(decision, "id", None))
        ):
            return evidence
        evidence.score, evidence.observed_at, evidence.decision = score, observed_at, decision
        evidence.save(update_fields=["score", "observed_at", "decision", "updated_at"])
    return evidence


@dataclass
class EvidenceRun:
    """What one :func:`evidence_apply` did (the task's result)."""

    state_version: int | None = None
    applied: list[dict] = field(default_factory=list)
    skipped: str = ""

    def as_dict(self) -> dict:
        return {"state_version": self.state_version, "applied": self.applied, "skipped": self.skipped}


def evidence_apply(*, state: RoutingState | None = None) -> EvidenceRun:
    """Profile again, on ``state`` (default: the active one), every LLM whose evidence changed since its
    last application there; idempotent (nothing new: nothing done) and one run at a time."""
    run = EvidenceRun(skipped=selectors.evidence_refused())
    if run.skipped:
        return run
    state = state or routing_state_active()
    run.state_version = state.version
    run.skipped = selectors.evidence_refused(strategy=state.strategy)
    if run.skipped:
        return run
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_APPLY_LOCK])
            if not cursor.fetchone()[0]:
                run.skipped = "another run is applying evidence"
                return run
        for llm in selectors.llms_with_new_evidence(state=state):
            llm_profile(llm=llm, state=state, reason=EvidenceApplication.Reason.EVIDENCE)
            application = (
                EvidenceApplication.objects.filter(state=state, llm=llm).order_by("-created_at", "-id").first()
            )
            run.applied.append(
                {
                    "llm": llm.name,
                    "events": application.events,
                    "weight": round(application.weight, 4),
                    "error_before": application.error_before,
                    "error_after": application.error_after,
                }
            )
    if run.applied:
        logger.info("applied evidence on v%s: %s", state.version, run.applied)
    return run

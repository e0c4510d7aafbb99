"""Reads of evidence: the rows an LLM's profile appends under the bounded rule, which LLMs have
evidence their profile on a state has not taken in yet, and one LLM's evidence for its dashboard page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import Count, F, Max, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from registry.models import LLM
from routing.models import Evidence, EvidenceApplication, LLMProfile, RoutingState
from routing.strategies import STRATEGIES
from routing.strategies.evidence import SECONDS_PER_DAY, decayed_weight, evidence_rows

# Of one source's judgements of one LLM only the newest this many are read: beyond the cap they share
# its weight anyway, and a source that judges without end must not make every profile read all of it.
ROWS_PER_SOURCE = 1000
# Weights decay with age even when nothing new arrives: an LLM's evidence is applied again at least
# this often, so its profile follows the half-life to within a day.
REAPPLY_AFTER = timedelta(days=1)
# An LLM's dashboard page lists this many of its latest applications on the active state.
RECENT_APPLICATIONS = 10


@dataclass(frozen=True)
class LLMEvidence:
    """One LLM's evidence rows under the bounded rule, ready to append to its validation rows."""

    embeddings: np.ndarray  # [r, D]
    correctness: np.ndarray  # [r]
    weight: np.ndarray  # [r]
    evidence_ids: list[int] = field(default_factory=list)  # [r], the Evidence rows, newest first
    sources: list[dict] = field(default_factory=list)  # per source and tenant: events, weight, capped
    # How many rows counted and the newest change among them: what a later application compares against.
    seen: int = 0
    newest_at: datetime | None = None

    @property
    def events(self) -> int:
        return len(self.weight)


def _counts(*, state: RoutingState) -> Q:
    """The evidence that counts under ``state``: from sources without a tenant or from a tenant still
    trusted, on prompts embedded by the state's embedder (another embedder's vectors live elsewhere)."""
    return (Q(tenant__isnull=True) | Q(tenant__trusted_for_learning=True, tenant__is_active=True)) & Q(
        prompt__embedder=state.embedder, prompt__embedding__isnull=False
    )


def _counted(*, state: RoutingState):
    return Evidence.objects.filter(_counts(state=state))


def evidence_enabled() -> bool:
    return bool(settings.ROUTERHUB_EVIDENCE_ENABLED)


def evidence_refused(*, strategy: str | None = None) -> str:
    """Why profiles of ``strategy`` take in no evidence, in words; empty when they do (``None``: whether
    any profile does)."""
    if not evidence_enabled():
        return "ROUTERHUB_EVIDENCE_ENABLED is off"
    if strategy is not None and not STRATEGIES[strategy].takes_sample_weight:
        return f"{strategy} profiles take no evidence"
    return ""


def evidence_of(*, llm_id: int, state: RoutingState, now: datetime | None = None) -> LLMEvidence:
    """The rows ``llm``'s profile on ``state`` appends: its counted evidence, one per prompt and source,
    decayed by ``ROUTERHUB_EVIDENCE_HALF_LIFE_DAYS`` and capped per source by ``ROUTERHUB_EVIDENCE_CAP_PROMPTS``."""
    now = now or timezone.now()
    counted = _counted(state=state).filter(llm_id=llm_id)
    fingerprint = counted.aggregate(n=Count("id"), newest=Max("updated_at"))
    newest_first = [F("observed_at").desc(), F("id").desc()]
    rows = list(
        counted.annotate(rank=Window(RowNumber(), partition_by=[F("source"), F("tenant_id")], order_by=newest_first))
        .filter(rank__lte=ROWS_PER_SOURCE)
        .order_by(*newest_first)
        .values_list("id", "prompt_id", "source", "tenant_id", "tenant__name", "score", "observed_at")
    )
    if not rows:
        return LLMEvidence(np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0))
    ids, prompt_ids, sources, tenant_ids, tenant_names, scores, observed = zip(*rows, strict=True)
    keys = [f"{source}\x1f{tenant or ''}" for source, tenant in zip(sources, tenant_ids, strict=True)]
    times = np.asarray([t.timestamp() for t in observed])
    half_life = settings.ROUTERHUB_EVIDENCE_HALF_LIFE_DAYS * SECONDS_PER_DAY
    applied = evidence_rows(
        llm=np.zeros(len(rows), dtype=int),
        source=keys,
        prompt=np.asarray(prompt_ids),
        embedding_index=np.arange(len(rows)),
        correctness=np.asarray(scores, dtype=np.float64),
        time=times,
        now=now.timestamp(),
        half_life_seconds=half_life,
        cap=settings.ROUTERHUB_EVIDENCE_CAP_PROMPTS,
    )
    kept = applied.embedding_index
    decayed = decayed_weight(now.timestamp() - times[kept], half_life)  # before the cap, to tell who it scaled
    vectors = dict(Evidence.objects.filter(id__in=[ids[i] for i in kept]).values_list("id", "prompt__embedding"))
    by_source: dict[str, dict] = {}
    for row, weight, uncapped in zip(kept, applied.weight, decayed, strict=True):
        entry = by_source.setdefault(
            keys[row], {"source": sources[row], "tenant": tenant_names[row], "events": 0, "weight": 0.0, "decayed": 0.0}
        )
        entry["events"] += 1
        entry["weight"] += float(weight)
        entry["decayed"] += float(uncapped)
    summary = [
        {
            "source": entry["source"],
            "tenant": entry["tenant"],
            "events": entry["events"],
            "weight": round(entry["weight"], 4),
            "capped": entry["decayed"] > entry["weight"] + 1e-9,
        }
        for entry in by_source.values()
    ]
    return LLMEvidence(
        embeddings=np.stack([np.asarray(vectors[ids[i]], dtype=np.float32) for i in kept]),
        correctness=applied.correctness,
        weight=applied.weight,
        evidence_ids=[ids[i] for i in kept],
        sources=sorted(summary, key=lambda s: (-s["weight"], s["source"], s["tenant"] or "")),
        seen=fingerprint["n"],
        newest_at=fingerprint["newest"],
    )


def evidence_details(*, evidence_ids: list[int]) -> dict[int, dict]:
    """Evidence id → its prompt, source, tenant and score, for the audit."""
    return {
        row["id"]: row
        for row in Evidence.objects.filter(id__in=evidence_ids).values(
            "id", "prompt_id", "source", "tenant__name", "score", "observed_at"
        )
    }


def llms_with_new_evidence(*, state: RoutingState, now: datetime | None = None) -> list[LLM]:
    """Active LLMs profiled on ``state`` whose counted evidence differs from what their last application on
    it read (evidence added, replaced, or no longer counted — a tenant no longer trusted), or whose last
    application is older than :data:`REAPPLY_AFTER` while they have evidence; by name."""
    now = now or timezone.now()
    profiled = set(LLMProfile.objects.filter(state=state, llm__is_active=True).values_list("llm_id", flat=True))
    counted = _counted(state=state).filter(llm_id__in=profiled)
    current = {
        row["llm_id"]: (row["n"], row["newest"])
        for row in counted.values("llm_id").annotate(n=Count("id"), newest=Max("updated_at"))
    }
    last = {}
    for row in (
        EvidenceApplication.objects.filter(state=state, llm_id__in=profiled)
        .order_by("llm_id", "-created_at", "-id")
        .distinct("llm_id")
        .values("llm_id", "evidence_seen", "newest_evidence_at", "created_at")
    ):
        last[row["llm_id"]] = row
    due = []
    for llm_id in profiled:
        seen = current.get(llm_id, (0, None))
        applied = last.get(llm_id)
        if applied is None:
            if seen[0]:
                due.append(llm_id)
            continue
        if (applied["evidence_seen"], applied["newest_evidence_at"]) != seen:
            due.append(llm_id)
        elif seen[0] and now - applied["created_at"] >= REAPPLY_AFTER:
            due.append(llm_id)
    return list(LLM.objects.filter(id__in=due).order_by("name"))


@dataclass(frozen=True)
class EvidenceOverview:
    """One LLM's evidence under one routing state, as its dashboard page shows it."""

    state_version: int
    refused: str  # why the state's profiles take in no evidence (``evidence_refused``); empty when they do
    recorded: int  # the LLM's judgements, from anyone
    counted: int  # of them, those that count under the state (``_counts``)
    newest_counted_at: datetime | None
    # Newest first. The first is what the LLM's profile in use took in: its events, weights and sources
    # are after one-per-prompt, decay and the cap, as of when it was applied.
    applications: list[EvidenceApplication]
    half_life_days: float
    cap_prompts: float

    @property
    def latest(self) -> EvidenceApplication | None:
        return self.applications[0] if self.applications else None

    @property
    def not_counted(self) -> int:
        """Judgements recorded that do not count under the state: from a tenant no longer trusted for
        learning (or inactive), or on a prompt another embedder placed."""
        return self.recorded - self.counted

    @property
    def waiting(self) -> bool:
        """Whether counted evidence changed since the latest application read it: the next run of
        ``routing.apply_evidence`` takes it in."""
        if self.refused:
            return False
        latest = self.latest
        if latest is None:
            return self.counted > 0
        return (latest.evidence_seen, latest.newest_evidence_at) != (self.counted, self.newest_counted_at)


def llm_evidence_overview(*, state_id: int, llm_id: int, limit: int = RECENT_APPLICATIONS) -> EvidenceOverview:
    """``llm_id``'s evidence under the state: how much of it counts, and its ``limit`` latest applications
    there. Three queries, whatever the amount of evidence."""
    state = RoutingState.objects.only("id", "version", "strategy", "embedder").get(id=state_id)
    counts = _counts(state=state)
    totals = Evidence.objects.filter(llm_id=llm_id).aggregate(
        recorded=Count("id"), counted=Count("id", filter=counts), newest=Max("updated_at", filter=counts)
    )
    applications = list(
        EvidenceApplication.objects.filter(state_id=state.id, llm_id=llm_id).order_by("-created_at", "-id")[:limit]
    )
    return EvidenceOverview(
        state_version=state.version,
        refused=evidence_refused(strategy=state.strategy),
        recorded=totals["recorded"],
        counted=totals["counted"],
        newest_counted_at=totals["newest"],
        applications=applications,
        half_life_days=float(settings.ROUTERHUB_EVIDENCE_HALF_LIFE_DAYS),
        cap_prompts=float(settings.ROUTERHUB_EVIDENCE_CAP_PROMPTS),
    )

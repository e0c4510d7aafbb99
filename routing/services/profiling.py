"""Make an LLM routable: collect its validation outcomes (when it has an API), then compute Ψ — no refit.

UniRoute's promise (METHODS.md, "UniRoute"): an LLM is represented by its correctness on the
validation prompts only, so adding one costs one pass over S_val and no gradient step. This module
is that pass. Outcomes are written in small batches as answers arrive, so a job stopped half-way
(time limit, provider outage, worker killed) keeps what it paid for and asks only the rest when it
runs again; the unique (llm, prompt) constraint makes a second write of one answer impossible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.tokens import count_tokens
from routing.models import LLMProfile, RoutingState
from routing.profiling.client import (
    ChatClient,
    Completion,
    PromptRejected,
    ProviderConfigurationError,
    complete_all,
    job_api_key,
)
from routing.profiling.graders import Grader, JudgeGrader, grader_for
from routing.selectors.state import routing_state_active
from routing.services.judging import judge_for_prompt_set, judge_spent_since
from routing.services.state import llm_profile

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# Answers are written at least this often (and every FLUSH_EVERY answers): what a killed job loses.
FLUSH_EVERY, FLUSH_SECONDS = 25, 2.0
RESPONSE_TEXT_LIMIT = 4000
# A profiling job's defaults, each overridden by the job's own arguments: calls in flight, per-call
# timeout and answer length (its cost cap is the setting ROUTERHUB_PROFILING_MAX_COST_USD).
CONCURRENCY = 8
TIMEOUT_SECONDS = 60.0
MAX_TOKENS = 1024


@dataclass(frozen=True)
class ProfilingOptions:
    """How to profile one LLM; a job's ``arguments`` override the settings' defaults."""

    concurrency: int = 8
    timeout_seconds: float = 60.0
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    max_tokens: int = 1024
    max_cost_usd: float | None = None
    grader: str | None = None
    # Ask again the validation prompts whose *profiled* outcome is older than this (drift checks).
    refresh_older_than_days: float | None = None

    @classmethod
    def from_arguments(cls, arguments: dict | None) -> ProfilingOptions:
        defaults = {
            "concurrency": CONCURRENCY,
            "timeout_seconds": TIMEOUT_SECONDS,
            "max_tokens": MAX_TOKENS,
            "max_cost_usd": settings.ROUTERHUB_PROFILING_MAX_COST_USD,
        }
        known = {f.name for f in fields(cls)}
        unknown = set(arguments or {}) - known
        if unknown:
            raise ValueError(
                f"unknown profiling option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        options = cls(**{**defaults, **(arguments or {})})
        if (
            options.concurrency < 1
            or options.timeout_seconds <= 0
            or options.max_attempts < 1
            or options.max_tokens < 1
        ):
            raise ValueError("concurrency, timeout_seconds, max_attempts and max_tokens must be positive")
        if options.max_cost_usd is not None and options.max_cost_usd < 0:
            raise ValueError("max_cost_usd must not be negative")
        return options


@dataclass
class ProfilingReport:
    llm: str
    state_version: int | None = None
    validation_prompts: int = 0
    asked: int = 0
    answered: int = 0
    correct: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)  # the first few, for the admin
    # Judge grader only: answers judged, answers the judge gave no verdict on (no outcome stored),
    # answers left ungraded because the cost cap was reached, judge calls answered from the cache.
    judged: int = 0
    no_verdict: int = 0
    no_verdicts: list[str] = field(default_factory=list)  # the first few, for the admin
    ungraded: int = 0
    judge_cached: int = 0
    judge_cost_usd: float = 0.0
    cost_usd: float = 0.0  # answers and judge calls
    stopped_by_cost_cap: bool = False
    n_validation_outcomes: int = 0
    validation_error: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def llm_profile_run(
    *,
    llm: LLM,
    options: ProfilingOptions | None = None,
    spent_since: datetime | None = None,
    progress: Progress = lambda done, total: None,
) -> tuple[LLMProfile, ProfilingReport]:
    """Ask ``llm`` the validation prompts it has no outcome for (if it has an API), then profile it.

    ``spent_since``: profiled outcomes written since then count against ``options.max_cost_usd``
    (a job passes its creation time, so a retried job does not get a fresh budget).
    Raises ``NoActiveRoutingState`` / ``RoutingError`` when it cannot be profiled, and the client's
    errors when the provider fails for good.
    """
    options = options or ProfilingOptions.from_arguments(None)
    report = ProfilingReport(llm=llm.name)
    started = time.monotonic()
    # A refit may activate a new state while answers are being collected; profile on the state
    # that is active at the end (three tries; a refit re-profiles stale LLMs itself afterwards).
    for _ in range(3):
        state = routing_state_active()
        report.state_version = state.version
        report.validation_prompts = len(state.validation_prompt_ids)
        if llm.api_base and not report.stopped_by_cost_cap:
            outcomes_collect(
                llm=llm,
                prompt_ids=list(state.validation_prompt_ids),
                prompt_set=state.validation_set or state.prompt_set,
                options=options,
                spent_since=spent_since or timezone.now(),
                progress=progress,
                report=report,
            )
        else:
            answered = _answered_count(llm=llm, prompt_ids=state.validation_prompt_ids)
            progress(answered, len(state.validation_prompt_ids))
        profile = llm_profile(llm=llm, state=state)
        if RoutingState.objects.filter(id=state.id, is_active=True).exists():
            break
    report.n_validation_outcomes = profile.n_validation_outcomes
    report.validation_error = profile.validation_error
    report.seconds = round(time.monotonic() - started, 3)
    return profile, report


def _answered_count(*, llm: LLM, prompt_ids: list[int]) -> int:
    return Outcome.objects.filter(llm=llm, prompt_id__in=prompt_ids).count()


def pending_prompt_ids(*, llm: LLM, prompt_ids: list[int], refresh_older_than_days: float | None = None) -> list[int]:
    """The prompts (of ``prompt_ids``) ``llm`` has no outcome for — or only a profiled one gone stale."""
    current = Outcome.objects.filter(llm=llm, prompt_id__in=prompt_ids)
    if refresh_older_than_days is not None:
        cutoff = timezone.now() - timedelta(days=refresh_older_than_days)
        current = current.exclude(Q(source=Outcome.Source.PROFILED) & Q(updated_at__lt=cutoff))
    have = set(current.values_list("prompt_id", flat=True))
    return sorted(pid for pid in prompt_ids if pid not in have)


def outcomes_collect(
    *,
    llm: LLM,
    prompt_ids: list[int],
    prompt_set: PromptSet,
    options: ProfilingOptions,
    spent_since: datetime,
    progress: Progress,
    report: ProfilingReport,
) -> None:
    """Ask ``llm`` the prompts of ``prompt_ids`` it has no outcome for and store the graded answers.

    The grader is ``options.grader`` or the one ``prompt_set`` names (its judge LLM too); what ``llm``'s
    answers and their verdicts cost since ``spent_since`` counts against ``options.max_cost_usd``.
    """
    pending = pending_prompt_ids(
        llm=llm, prompt_ids=prompt_ids, refresh_older_than_days=options.refresh_older_than_days
    )
    done = len(prompt_ids) - len(pending)
    progress(done, len(prompt_ids))
    if not pending:
        return
    references = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "answer"))
    configured = options.grader or prompt_set.metadata.get("grader")
    judge = None
    if configured == JudgeGrader.name:
        judge = judge_for_prompt_set(
            prompt_set,
            graded_llm=llm,
            timeout_seconds=options.timeout_seconds,
            max_attempts=options.max_attempts,
            backoff_seconds=options.backoff_seconds,
        )
    grader = grader_for(configured=configured, references=references.values(), judge=judge)
    texts = dict(Prompt.objects.filter(id__in=pending).values_list("id", "text"))
    client = ChatClient(
        api_base=llm.api_base,
        model=llm.api_model or llm.name,
        api_key=job_api_key(llm),
        system_prompt=grader.instruction or None,
        max_tokens=options.max_tokens,
        timeout_seconds=options.timeout_seconds,
        max_attempts=options.max_attempts,
        backoff_seconds=options.backoff_seconds,
    )
    # Answers and judge calls of this job so far (a retried job resumes with what it spent).
    spent = profiled_cost_since(llm=llm, since=spent_since) + judge_spent_since(graded_llm=llm, since=spent_since)
    capped = options.max_cost_usd is not None

    def may_start() -> bool:
        # Checked before each call (and each batch of judge calls): with calls in flight, the cap can
        # be passed by at most ``concurrency`` answers' (and judge calls') worth.
        return not capped or spent < options.max_cost_usd

    batch: list[Outcome] = []
    flushed_at = time.monotonic()

    def flush() -> None:
        nonlocal done, flushed_at
        if batch:
            _store_outcomes(batch)
            done += len(batch)
            report.answered += len(batch)
            batch.clear()
        progress(done, len(prompt_ids))
        flushed_at = time.monotonic()

    # Judge grader: answers wait here to be judged together, ``concurrency`` judge calls in flight.
    to_judge: list[tuple[Outcome, str]] = []

    def judge_waiting() -> None:
        nonlocal spent
        if not to_judge:
            return
        if not may_start():
            # The cap is reached: a judge call would pass it. These answers are left ungraded (no
            # outcome); a later job with room in its cap asks them again.
            report.ungraded += len(to_judge)
            to_judge.clear()
            return
        questions = [(texts[o.prompt_id], text, references[o.prompt_id]) for o, text in to_judge]
        verdicts = grader.judge.grade_many(questions, concurrency=options.concurrency)
        for (outcome, _), verdict in zip(to_judge, verdicts, strict=True):
            report.judged += 1
            report.judge_cached += int(verdict.cached)
            report.judge_cost_usd += verdict.cost_usd
            report.cost_usd += verdict.cost_usd
            spent += verdict.cost_usd
            if verdict.score is None:
                report.no_verdict += 1
                if len(report.no_verdicts) < 5:
                    report.no_verdicts.append(f"prompt {outcome.prompt_id}: {verdict.label}")
                continue
            outcome.score = verdict.score
            report.correct += int(verdict.score >= 0.5)
            batch.append(outcome)
        to_judge.clear()

    def on_idle() -> None:  # slow calls must not hold finished answers back
        judge_waiting()
        flush()

    judging = isinstance(grader, JudgeGrader)
    try:
        answers = complete_all(
            client,
            ((pid, texts[pid]) for pid in pending),
            concurrency=options.concurrency,
            may_start=may_start,
            idle_seconds=FLUSH_SECONDS,
            on_idle=on_idle,
        )
        for prompt_id, answer in answers:
            report.asked += 1
            if isinstance(answer, PromptRejected):
                report.rejected += 1
                if len(report.rejections) < 5:
                    report.rejections.append(f"prompt {prompt_id}: {answer}")
                continue
            outcome = _outcome_of(llm=llm, prompt_id=prompt_id, prompt_text=texts[prompt_id], answer=answer)
            spent += outcome.cost_usd or 0.0
            report.cost_usd += outcome.cost_usd or 0.0
            if judging:
                to_judge.append((outcome, answer.text or ""))
                if len(to_judge) >= options.concurrency:
                    judge_waiting()
            else:
                score = _score(
                    grader, llm=llm, prompt_text=texts[prompt_id], answer=answer, reference=references[prompt_id]
                )
                if score is None:
                    report.no_verdict += 1
                    if len(report.no_verdicts) < 5:
                        report.no_verdicts.append(f"prompt {prompt_id}: no verdict")
                else:
                    outcome.score = score
                    report.correct += int(score >= 0.5)
                    batch.append(outcome)
            if len(batch) >= FLUSH_EVERY or time.monotonic() - flushed_at >= FLUSH_SECONDS:
                flush()
        judge_waiting()
    finally:
        # Keep every answer already paid for, also when the provider then failed for good.
        flush()
    report.cost_usd = round(report.cost_usd, 8)
    report.judge_cost_usd = round(report.judge_cost_usd, 8)
    report.stopped_by_cost_cap = capped and (report.asked < len(pending) or report.ungraded > 0)
    if report.rejected and not report.answered and not _answered_count(llm=llm, prompt_ids=prompt_ids):
        raise ProviderConfigurationError(
            f"{llm.name} rejected all {report.rejected} prompts; first: {report.rejections[0]}"
        )


def _score(grader: Grader, *, llm: LLM, prompt_text: str, answer: Completion, reference: str) -> float | None:
    """A grader's score in [0, 1], or None: no verdict (the judge grader's verdicts are asked in
    batches, in ``_collect_outcomes``)."""
    try:
        score = grader.grade(answer.text, reference, prompt_text=prompt_text)
        return None if score is None else min(1.0, max(0.0, float(score)))
    except Exception:  # a plug-in grader that trips on garbage must not lose the answer
        logger.exception("grader %s failed on an answer of %s; counted as incorrect", grader.name, llm.name)
        return 0.0


def _outcome_of(*, llm: LLM, prompt_id: int, prompt_text: str, answer: Completion) -> Outcome:
    """The outcome of an answer, priced; its score is the grader's to set."""
    input_tokens, output_tokens = answer.input_tokens, answer.output_tokens
    if input_tokens is None or output_tokens is None:
        # No usage in the response: estimate both, so the cost is never silently zero.
        estimated_in, estimated_out = count_tokens([prompt_text, answer.text or " "])
        input_tokens = estimated_in if input_tokens is None else input_tokens
        output_tokens = estimated_out if output_tokens is None else output_tokens
    cost = llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens)
    return Outcome(
        llm=llm,
        prompt_id=prompt_id,
        score=0.0,
        cost_usd=cost,
        latency_ms=round(answer.latency_ms, 3),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        response_text=(answer.text or "")[:RESPONSE_TEXT_LIMIT],
        source=Outcome.Source.PROFILED,
    )


def _store_outcomes(outcomes: list[Outcome]) -> None:
    """Insert, or overwrite a stale outcome of the same (llm, prompt); never a second row."""
    with transaction.atomic():
        Outcome.objects.bulk_create(
            outcomes,
            update_conflicts=True,
            unique_fields=["llm", "prompt"],
            update_fields=[
                "score",
                "cost_usd",
                "latency_ms",
                "input_tokens",
                "output_tokens",
                "response_text",
                "source",
                "updated_at",
            ],
        )


def profiled_cost_since(*, llm: LLM, since: datetime) -> float:
    spent = Outcome.objects.filter(llm=llm, source=Outcome.Source.PROFILED, updated_at__gte=since).aggregate(
        total=Sum("cost_usd")
    )["total"]
    return float(spent or 0.0)


def llms_to_reprofile(*, state: RoutingState) -> list[LLM]:
    """Active LLMs the weekly re-profiling should run for.

    Every LLM with an API (its answers may have drifted, or the validation split grown); an LLM
    without one only when its profile on ``state`` is missing or counts fewer outcomes than it has
    (imported data changed) — recomputing an unchanged Ψ would only make every process reload.
    """
    prompt_ids = list(state.validation_prompt_ids)
    profiled = dict(LLMProfile.objects.filter(state=state).values_list("llm_id", "n_validation_outcomes"))
    chosen = []
    for llm in LLM.objects.filter(is_active=True).order_by("name"):
        if llm.api_base:
            chosen.append(llm)
            continue
        answered = _answered_count(llm=llm, prompt_ids=prompt_ids)
        if answered and profiled.get(llm.id) != answered:
            chosen.append(llm)
    return chosen

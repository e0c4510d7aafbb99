"""Validation sets built from a tenant's gateway traffic, and the one job that profiles every LLM on them.

A team in front of whose traffic routerhub sits has prompts but no labels. ``validation_set_build``
turns the prompts its gateway logged (tenants with ``log_gateway_text`` on) into a prompt set of role
*validation* without references, graded by a judge (``routing.profiling.judges``, rubric mode):

1. read the logged calls' prompts (their last user turn, what the gateway routed on);
2. redact each with ``ROUTERHUB_VALIDATION_REDACTOR`` — before anything derived from it is computed
   or stored, so neither the stored text nor its embedding holds what was masked;
3. drop exact repeats, embed (reusing what the route API embedded for this tenant when the text is
   unchanged), and drop near-duplicates: cosine ≥ ``ROUTERHUB_VALIDATION_DUPLICATE_COSINE``;
4. sample ``size`` prompts stratified over the active routing state's clusters
   (``routing.strategies.sampling``) and store them.

``validation_set_profile`` is the job (``Job.Kind.PROFILE_VALIDATION_SET``): every active LLM with an
API answers each prompt once, the judge grades every answer, and the whole job — answers and verdicts
of all LLMs — stays within one cost cap. With ``activate`` it then fits a routing state whose LLM
profiles come from those judged outcomes and activates it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction

from registry.embedders import get_embedder, text_sha256
from registry.models import LLM, URL_SAFE_PATTERN, Prompt, PromptSet
from registry.tokens import count_tokens
from routing.exceptions import RoutingError
from routing.models import Job, RoutingState, Tenant
from routing.redaction import configured_redactor
from routing.selectors.state import routing_state_active, strategy_of
from routing.selectors.validation_sets import (
    ProfilingEstimate,
    cached_embeddings,
    logged_prompts,
    profiled_llms,
    profiling_estimate,
    validation_prompt_ids,
)
from routing.services import jobs
from routing.services.judging import judge_llm_of, judge_spent_since
from routing.services.profiling import ProfilingOptions, ProfilingReport, outcomes_collect, profiled_cost_since
from routing.services.state import fixed_params_of, routing_state_fit, tuning_of
from routing.strategies.kmeans import spherical_centroids
from routing.strategies.profiles import nearest_centroid
from routing.strategies.sampling import near_duplicate_free, stratified_sample

Say = Callable[[str], None]
#: Groups drawn over the logged prompts when the active strategy has no clusters of its own (K-NN,
#: the predictors), as the dashboard's cluster map does.
DISPLAY_CLUSTERS = 10
JUDGE_GRADER = "judge"  # the grader a traffic-built set names (routing.profiling.graders.JudgeGrader)


class ValidationSetError(RoutingError):
    """A validation set cannot be built as asked (the message says why and what to change)."""


@dataclass
class BuildReport:
    tenant: str
    logged_calls: int = 0
    unreadable: int = 0  # truncated by the log, or no user turn with text
    redacted: int = 0  # prompts the redactor changed
    exact_repeats: int = 0
    near_duplicates: int = 0
    distinct: int = 0
    embedded: int = 0
    embeddings_reused: int = 0
    clusters: int = 0  # of the active state (or drawn, see DISPLAY_CLUSTERS)
    clusters_reached: int = 0  # by the distinct prompts
    clusters_covered: int = 0  # by the chosen prompts
    chosen: int = 0
    per_cluster: dict = field(default_factory=dict)  # cluster → (distinct prompts, chosen)
    duplicate_cosine: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def validation_set_build(
    *,
    tenant: Tenant,
    size: int,
    name: str,
    judge_llm: LLM,
    since: datetime | None = None,
    until: datetime | None = None,
    seed: int = 0,
    say: Say = lambda _: None,
) -> tuple[PromptSet, BuildReport]:
    """Build and store the validation set ``name`` from ``tenant``'s logged gateway prompts (module docstring).

    Raises ``ValidationSetError`` (a ``RoutingError``) naming what is wrong: the tenant does not log
    text, the name is taken, too few distinct prompts, no judge; ``NoActiveRoutingState`` without a
    state to stratify over.
    """
    started = time.monotonic()
    _check_request(tenant=tenant, size=size, name=name, judge_llm=judge_llm)
    state = routing_state_active()
    embedder = get_embedder()
    if state.embedder != embedder.name:
        raise ValidationSetError(
            f"the active routing state v{state.version} was fitted with the {state.embedder!r} embedder, this "
            f"process embeds with {embedder.name!r}: its clusters cannot be used (set ROUTERHUB_EMBEDDER)"
        )
    threshold = settings.ROUTERHUB_VALIDATION_DUPLICATE_COSINE
    report = BuildReport(tenant=tenant.name, duplicate_cosine=threshold)
    period = (f" since {since:%Y-%m-%d %H:%M}" if since else "") + (f" until {until:%Y-%m-%d %H:%M}" if until else "")
    say(f"Reading the gateway calls tenant {tenant.name!r} logged{period} ...")
    read = logged_prompts(tenant=tenant, since=since, until=until)
    report.logged_calls, report.unreadable = read.calls, read.unreadable
    say(f"  {read.calls:,} logged calls, {len(read.prompts):,} with a prompt ({read.unreadable:,} truncated or empty)")

    redact = configured_redactor()
    raw_of: dict[str, str] = {}  # redacted text → its first raw text (for the route-time embedding)
    for logged in read.prompts:
        text = redact(logged.text).strip()
        report.redacted += text != logged.text
        if text and text not in raw_of:
            raw_of[text] = logged.text
    texts = list(raw_of)
    report.exact_repeats = len(read.prompts) - len(texts)
    say(
        f"  redacted with {settings.ROUTERHUB_VALIDATION_REDACTOR} ({report.redacted:,} prompts changed); "
        f"{len(texts):,} distinct after dropping {report.exact_repeats:,} exact repeats"
    )
    if len(texts) < size:
        raise _too_few(tenant, len(texts), size, period, "distinct")

    # Visited in a seeded random order: which of two near-duplicates stays does not depend on when it came.
    random.Random(seed).shuffle(texts)
    embeddings = _embed(texts, raw_of=raw_of, tenant=tenant, embedder=embedder, report=report, say=say)
    kept = near_duplicate_free(embeddings, threshold)
    report.near_duplicates = len(texts) - len(kept)
    report.distinct = len(kept)
    say(f"  {report.near_duplicates:,} near-duplicates dropped (cosine ≥ {threshold:g}): {len(kept):,} prompts left")
    if len(kept) < size:
        raise _too_few(tenant, len(kept), size, period, "distinct (near-duplicates dropped)")
    texts = [texts[i] for i in kept]
    embeddings = embeddings[kept]

    clusters, report.clusters = _clusters_of(state, embeddings)
    chosen = stratified_sample(clusters, size, seed=seed)
    distinct_sizes = np.bincount(clusters, minlength=report.clusters)
    chosen_sizes = np.bincount(clusters[chosen], minlength=report.clusters)
    report.clusters_reached = int((distinct_sizes > 0).sum())
    report.clusters_covered = int((chosen_sizes > 0).sum())
    report.per_cluster = {
        int(k): [int(distinct_sizes[k]), int(chosen_sizes[k])] for k in np.flatnonzero(distinct_sizes)
    }
    report.chosen = len(chosen)
    say(
        f"  {len(chosen):,} prompts chosen over {report.clusters_covered} of the {report.clusters_reached} clusters "
        f"the traffic reaches (state v{state.version}, {report.clusters} clusters)"
    )

    report.seconds = round(time.monotonic() - started, 3)
    prompt_set = _store(
        name=name,
        tenant=tenant,
        judge_llm=judge_llm,
        texts=[texts[i] for i in chosen],
        embeddings=embeddings[chosen],
        clusters=clusters[chosen],
        embedder_name=embedder.name,
        state=state,
        report=report,
    )
    say(f"Validation set {prompt_set.name!r}: {report.chosen:,} prompts, graded by the judge {judge_llm.name}")
    return prompt_set, report


def _check_request(*, tenant: Tenant, size: int, name: str, judge_llm: LLM) -> None:
    if not tenant.log_gateway_text:
        raise ValidationSetError(
            f"tenant {tenant.name!r} does not log gateway text (log_gateway_text is off), so there are no prompts "
            "to build from: turn it on in the admin (Routing › Tenants) and let traffic arrive"
        )
    if size < 1:
        raise ValidationSetError(f"size must be at least 1, not {size}")
    if PromptSet.objects.filter(name=name).exists():
        raise ValidationSetError(f"a prompt set named {name!r} exists already: choose another name")
    if not re.fullmatch(URL_SAFE_PATTERN, name or ""):
        raise ValidationSetError(
            f"name {name!r} is not a valid prompt set name: letters, digits, '.', '_' or '-', at most 100 characters"
        )
    if not judge_llm.api_base:
        raise ValidationSetError(f"the judge LLM {judge_llm.name} has no api_base: it cannot be asked")


def _too_few(tenant: Tenant, found: int, size: int, period: str, what: str) -> ValidationSetError:
    return ValidationSetError(
        f"tenant {tenant.name!r} logged only {found:,} {what} prompts{period}, fewer than the {size:,} asked: "
        "ask for fewer, or widen the period"
    )


def _embed(texts, *, raw_of, tenant, embedder, report: BuildReport, say: Say) -> np.ndarray:
    """Unit vectors of ``texts``: the route API's embedding when a text is the one it routed on, else computed."""
    # Only a text the redactor left unchanged is the text the route API embedded.
    unchanged = [i for i, text in enumerate(texts) if raw_of[text] == text]
    reused = cached_embeddings(embedder=embedder, texts=[texts[i] for i in unchanged], tenant_id=tenant.id)
    embeddings = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    for row, vector in reused.items():
        embeddings[unchanged[row]] = vector
    have = {unchanged[row] for row in reused}
    todo = [i for i in range(len(texts)) if i not in have]
    report.embeddings_reused, report.embedded = len(have), len(todo)
    say(f"  embedding {len(todo):,} prompts with {embedder.name} ({len(have):,} embedded at route time, reused) ...")
    if todo:
        step = max(1, len(todo) // 10)
        marks = iter(range(step, len(todo) + step, step))
        mark = next(marks)

        def progress(done: int, total: int) -> None:
            nonlocal mark
            if done >= mark:
                say(f"    {done:,} / {total:,}")
                mark = next(marks, total + 1)

        embeddings[todo] = embedder.embed([texts[i] for i in todo], progress=progress)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def _clusters_of(state: RoutingState, embeddings: np.ndarray) -> tuple[np.ndarray, int]:
    """Each prompt's cluster in the active state, and how many clusters there are."""
    strategy = strategy_of(state)
    assigned = strategy.cluster_of(embeddings)
    centroids = strategy.centroids()
    if assigned is not None:
        count = len(centroids) if centroids is not None else int(assigned.max()) + 1
        return np.asarray(assigned, dtype=np.int64), count
    groups = spherical_centroids(embeddings, min(DISPLAY_CLUSTERS, len(embeddings)), n_init=1, random_state=0)
    return np.asarray(nearest_centroid(embeddings, groups), dtype=np.int64), len(groups)


def _store(
    *,
    name: str,
    tenant: Tenant,
    judge_llm: LLM,
    texts: list[str],
    embeddings: np.ndarray,
    clusters: np.ndarray,
    embedder_name: str,
    state: RoutingState,
    report: BuildReport,
) -> PromptSet:
    tokens = count_tokens(texts)
    with transaction.atomic():
        prompt_set = PromptSet.objects.create(
            name=name,
            role=PromptSet.Role.VALIDATION,
            description=f"{len(texts):,} prompts of tenant {tenant.name}'s gateway traffic, redacted, "
            f"near-duplicates removed, stratified over the clusters of routing state v{state.version}.",
            source=f"gateway logs of tenant {tenant.name}",
            metadata={
                "grader": JUDGE_GRADER,
                "judge_llm": judge_llm.name,
                "tenant": tenant.name,
                "stratified_on_state": state.version,
                "mean_prompt_tokens": float(np.mean(tokens)) if tokens else 0.0,
                "build": report.as_dict(),
            },
        )
        Prompt.objects.bulk_create(
            Prompt(
                prompt_set=prompt_set,
                external_id=text_sha256(text),
                text=text,
                answer="",
                split=Prompt.Split.VALIDATION,
                metadata={"cluster": int(cluster)},
                text_sha256=text_sha256(text),
                embedding=vector,
                embedder=embedder_name,
            )
            for text, vector, cluster in zip(texts, embeddings, clusters)
        )
    return prompt_set


# --- profiling every LLM on a validation set: one job ------------------------------------------------


def validation_set_profiling_enqueue(
    *, prompt_set: PromptSet, max_cost_usd: float | None, activate: bool
) -> tuple[Job, bool]:
    """Queue the job that profiles every active LLM on ``prompt_set`` (one such job at a time)."""
    _check_profilable(prompt_set)
    arguments = {"prompt_set_id": prompt_set.id, "max_cost_usd": max_cost_usd, "activate": activate}
    return jobs.job_enqueue(kind=Job.Kind.PROFILE_VALIDATION_SET, arguments=arguments)


def _check_profilable(prompt_set: PromptSet) -> LLM:
    if prompt_set.metadata.get("grader") != JUDGE_GRADER:
        raise ValidationSetError(f"{prompt_set.name!r} is not graded by a judge: build it with build_validation_set")
    try:
        judge_llm = judge_llm_of(prompt_set)
    except ValueError as exc:
        raise ValidationSetError(str(exc)) from None
    if not validation_prompt_ids(prompt_set=prompt_set):
        raise ValidationSetError(f"{prompt_set.name!r} has no validation prompts")
    return judge_llm


def validation_set_estimate(*, prompt_set: PromptSet) -> ProfilingEstimate:
    """The cost estimate shown before the job starts (command and admin)."""
    judge_llm = _check_profilable(prompt_set)
    return profiling_estimate(prompt_set=prompt_set, llms=profiled_llms(), judge=judge_llm)


@dataclass
class SetProfilingReport:
    prompt_set: str
    prompts: int = 0
    max_cost_usd: float | None = None
    llms: list[dict] = field(default_factory=list)  # each LLM's ProfilingReport
    calls: int = 0  # answers asked and judge calls made (cached verdicts cost no call)
    cost_usd: float = 0.0  # answers and verdicts of this job
    stopped_by_cost_cap: bool = False
    state_version: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def validation_set_profile(
    *,
    prompt_set: PromptSet,
    max_cost_usd: float | None,
    activate: bool,
    spent_since: datetime,
    profiling_arguments: dict | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    say: Say = lambda _: None,
) -> tuple[SetProfilingReport, RoutingState | None]:
    """Every active LLM with an API answers the set's prompts once and the judge grades each answer;
    with ``activate``, a routing state profiled on the set is fitted and activated afterwards.

    ``max_cost_usd`` caps the whole job — answers and verdicts of all LLMs, counted since
    ``spent_since`` (the job's creation, so a retried job resumes within the same cap). When it is
    reached the job stops cleanly, keeps what was graded and activates nothing.
    ``profiling_arguments``: the calls' options (``ProfilingOptions``: concurrency, timeout, …).
    """
    started = time.monotonic()
    _check_profilable(prompt_set)
    prompt_ids = validation_prompt_ids(prompt_set=prompt_set)
    llms = profiled_llms()
    if not llms:
        raise ValidationSetError("no active LLM has an api_base: there is nothing to ask")
    report = SetProfilingReport(prompt_set=prompt_set.name, prompts=len(prompt_ids), max_cost_usd=max_cost_usd)
    total = len(prompt_ids) * len(llms)
    say(f"Profiling {len(llms)} LLMs on {len(prompt_ids):,} prompts of {prompt_set.name} ...")
    for index, llm in enumerate(llms):
        spent = {other.id: _spent_on(other, spent_since) for other in llms}
        others = sum(cost for llm_id, cost in spent.items() if llm_id != llm.id)
        remaining = None if max_cost_usd is None else max(0.0, max_cost_usd - others)
        options = ProfilingOptions.from_arguments({**(profiling_arguments or {}), "max_cost_usd": remaining})
        llm_report = ProfilingReport(llm=llm.name, validation_prompts=len(prompt_ids))
        offset = index * len(prompt_ids)
        outcomes_collect(
            llm=llm,
            prompt_ids=prompt_ids,
            prompt_set=prompt_set,
            options=options,
            spent_since=spent_since,
            progress=lambda done, _total, offset=offset: progress(offset + done, total),
            report=llm_report,
        )
        report.llms.append(llm_report.as_dict())
        report.calls += llm_report.asked + llm_report.judged - llm_report.judge_cached
        say(
            f"  {llm.name}: {llm_report.answered:,} answers graded ({llm_report.no_verdict} without a verdict), "
            f"{llm_report.cost_usd:.4f} USD"
        )
        if llm_report.stopped_by_cost_cap:
            report.stopped_by_cost_cap = True
            say(f"  stopped: the job's cost cap of {max_cost_usd:g} USD is reached")
            break
    report.cost_usd = round(sum(_spent_on(llm, spent_since) for llm in llms), 8)
    state = None
    if activate and not report.stopped_by_cost_cap:
        state = validation_set_activate(prompt_set=prompt_set, say=say)
        report.state_version = state.version
    elif activate:
        say("  no routing state fitted: the profiles are incomplete (raise the cap and run the job again)")
    report.seconds = round(time.monotonic() - started, 3)
    return report, state


def _spent_on(llm: LLM, since: datetime) -> float:
    return profiled_cost_since(llm=llm, since=since) + judge_spent_since(graded_llm=llm, since=since)


def validation_set_activate(*, prompt_set: PromptSet, say: Say = lambda _: None) -> RoutingState:
    """Fit a routing state like the active one (data set, strategy, fixed hyper-parameters) whose LLM
    profiles come from their outcomes on ``prompt_set``, and activate it."""
    active = routing_state_active()
    state = routing_state_fit(
        prompt_set=active.prompt_set,
        strategy=active.strategy,
        params=fixed_params_of(active),
        tune=tuning_of(active) is not None,
        validation_set=prompt_set,
        activate=True,
        say=say,
    )
    return state

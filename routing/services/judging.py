"""Judges bound to registered LLMs, with their verdicts cached in the database (docs/judges.md).

- ``judge_for_llm(judge_llm, graded_llm=...)`` — a ``routing.profiling.judges.Judge`` that calls the
  judge LLM through the shared upstream client, prices its calls with the LLM's prices and caches
  every verdict as a ``JudgeVerdict`` row (a second identical question costs nothing and makes no call)
- ``judge_for_prompt_set(prompt_set, graded_llm=...)`` — the judge named by ``metadata["judge_llm"]``
- ``judge_spent_since(graded_llm, since)`` — what judging that LLM's answers cost since then (a
  profiling job's cost cap counts it)
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Sum

from registry.models import LLM, PromptSet
from registry.tokens import count_tokens
from routing.models import JudgeVerdict
from routing.profiling.client import ChatClient, ProviderConfigurationError
from routing.profiling.judges import JUDGE_MAX_TOKENS, Judge, JudgeCall, Verdict
from routing.upstream.credentials import CredentialError, llm_api_key

JUDGE_LLM_KEY = "judge_llm"  # prompt_set.metadata key naming the judge LLM
PROMPT_EXCERPT = 200


class DatabaseVerdictCache:
    """``VerdictCache`` on ``JudgeVerdict`` rows. ``graded_llm`` is recorded on the rows it writes."""

    def __init__(self, *, judge_llm: LLM, graded_llm: LLM | None = None) -> None:
        self.judge_llm = judge_llm
        self.graded_llm = graded_llm

    def get(self, call: JudgeCall) -> Verdict | None:
        row = JudgeVerdict.objects.filter(key=call.key).only("mode", "label", "score", "raw_text").first()
        if row is None:
            return None
        return Verdict(mode=row.mode, label=row.label, score=row.score, raw_text=row.raw_text, cached=True)

    def put(self, call: JudgeCall, verdict: Verdict) -> None:
        try:
            with transaction.atomic():
                JudgeVerdict.objects.create(
                    key=call.key,
                    judge=self.judge_llm,
                    mode=verdict.mode,
                    label=verdict.label,
                    score=verdict.score,
                    cost_usd=verdict.cost_usd,
                    raw_text=verdict.raw_text,
                    prompt_excerpt=call.prompt[:PROMPT_EXCERPT],
                    graded_llm=self.graded_llm,
                )
        except IntegrityError:
            pass  # the same question answered at once elsewhere: the first verdict stays


def judge_for_llm(
    judge_llm: LLM,
    *,
    graded_llm: LLM | None = None,
    timeout_seconds: float = 60.0,
    max_attempts: int = 4,
    backoff_seconds: float = 0.5,
    cache: bool = True,
) -> Judge:
    """A judge asking ``judge_llm``; raises ``ProviderConfigurationError`` when it cannot be called."""
    if not judge_llm.api_base:
        raise ProviderConfigurationError(f"judge LLM {judge_llm.name} has no api_base: it cannot be asked")
    try:
        api_key = llm_api_key(judge_llm)
    except CredentialError as exc:
        raise ProviderConfigurationError(str(exc)) from None
    client = ChatClient(
        api_base=judge_llm.api_base,
        model=judge_llm.api_model or judge_llm.name,
        api_key=api_key,
        max_tokens=JUDGE_MAX_TOKENS,
        timeout_seconds=timeout_seconds,
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
    )
    return Judge(
        name=judge_llm.name,
        client=client,
        price=lambda i, o: judge_llm.expected_cost_usd(input_tokens=i, output_tokens=o),
        cache=DatabaseVerdictCache(judge_llm=judge_llm, graded_llm=graded_llm) if cache else None,
        estimate_tokens=lambda text, reply: tuple(count_tokens([text, reply])),
    )


def judge_llm_of(prompt_set: PromptSet) -> LLM:
    """The LLM named by the prompt set's ``metadata["judge_llm"]``; ValueError naming the field if unusable."""
    name = (prompt_set.metadata or {}).get(JUDGE_LLM_KEY)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"prompt set {prompt_set.name} uses a judge but its metadata names no {JUDGE_LLM_KEY}")
    llm = LLM.objects.filter(name=name.strip()).first()
    if llm is None:
        raise ValueError(f"prompt set {prompt_set.name}: metadata {JUDGE_LLM_KEY} names unknown LLM {name!r}")
    return llm


def judge_for_prompt_set(prompt_set: PromptSet, *, graded_llm: LLM | None = None, **options) -> Judge:
    return judge_for_llm(judge_llm_of(prompt_set), graded_llm=graded_llm, **options)


def judge_spent_since(*, graded_llm: LLM, since: datetime) -> float:
    """USD paid to judges for grading ``graded_llm``'s answers since ``since`` (cache hits cost nothing)."""
    total = JudgeVerdict.objects.filter(graded_llm=graded_llm, created_at__gte=since).aggregate(total=Sum("cost_usd"))[
        "total"
    ]
    return float(total or 0.0)

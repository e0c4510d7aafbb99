"""Judges bound to registered LLMs, with their verdicts cached in the database (docs/judges.md).

- ``judge_for_llm(judge_llm, graded_llm=...)`` — a ``routing.profiling.judges.Judge`` that calls the
  judge LLM through the shared upstream client, prices its calls with the LLM's prices and caches
  every verdict as a ``JudgeVerdict`` row (a second identical question costs nothing and makes no call)
- ``judge_for_prompt_set(prompt_set, graded_llm=...)`` — the judge named by ``metadata["judge_llm"]``,
  else by ``ROUTERHUB_JUDGE_LLM`` (``judge_llm_of(None)``: that one alone)
- ``judge_spent_since(graded_llm, since)`` — what judging that LLM's answers cost since then (a
  profiling job's cost cap counts it)
- ``judge_agreement(...)`` — how often the reference-guided judge agrees with the rule grader on a
  prompt set with references (``manage.py judge_agreement``)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.tokens import count_tokens
from routing.models import JudgeVerdict
from routing.profiling.client import (
    ChatClient,
    PromptRejected,
    ProviderConfigurationError,
    complete_all,
    job_api_key,
)
from routing.profiling.graders import JudgeGrader, grader_for
from routing.profiling.judges import JUDGE_MAX_TOKENS, Judge, JudgeCall, Verdict

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
    api_key = job_api_key(judge_llm)
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


def judge_llm_of(prompt_set: PromptSet | None = None) -> LLM:
    """The judge LLM of ``prompt_set`` (its ``metadata["judge_llm"]``), else ``ROUTERHUB_JUDGE_LLM``;
    ValueError naming the field when neither names a registered LLM."""
    named = (prompt_set.metadata or {}).get(JUDGE_LLM_KEY) if prompt_set is not None else None
    where = f"prompt set {prompt_set.name}: metadata {JUDGE_LLM_KEY}" if named else "ROUTERHUB_JUDGE_LLM"
    name = named or settings.ROUTERHUB_JUDGE_LLM
    if not isinstance(name, str) or not name.strip():
        if prompt_set is None:
            raise ValueError("ROUTERHUB_JUDGE_LLM names no judge LLM")
        raise ValueError(
            f"prompt set {prompt_set.name} uses a judge, but neither its metadata {JUDGE_LLM_KEY} nor "
            "ROUTERHUB_JUDGE_LLM names a judge LLM"
        )
    llm = LLM.objects.filter(name=name.strip()).first()
    if llm is None:
        raise ValueError(f"{where} names unknown LLM {name!r}")
    return llm


def judge_for_prompt_set(prompt_set: PromptSet, *, graded_llm: LLM | None = None, **options) -> Judge:
    return judge_for_llm(judge_llm_of(prompt_set), graded_llm=graded_llm, **options)


def judge_spent_since(*, graded_llm: LLM, since: datetime) -> float:
    """USD paid to judges for grading ``graded_llm``'s answers since ``since`` (cache hits cost nothing)."""
    total = JudgeVerdict.objects.filter(graded_llm=graded_llm, created_at__gte=since).aggregate(total=Sum("cost_usd"))[
        "total"
    ]
    return float(total or 0.0)


# --- agreement with a rule grader ---------------------------------------------------------------------


@dataclass
class AgreementReport:
    """How often the reference-guided judge agrees with the prompt set's rule grader, on the same answers."""

    prompt_set: str
    judge: str
    rule_grader: str
    answerers: list[str]
    pairs: int = 0  # (prompt, answer) pairs graded by the rule
    with_verdict: int = 0  # … of which the judge gave a verdict on
    agree: int = 0
    no_verdict: dict[str, int] = field(default_factory=dict)  # label → count
    # rule → judge counts on the pairs with a verdict: "correct→correct", "correct→incorrect", …
    confusion: dict[str, int] = field(default_factory=dict)
    kappa: float | None = None  # Cohen's κ of the two graders on the pairs with a verdict
    answers_asked: int = 0
    answers_stored: int = 0  # profiled answers read from the outcomes instead of asked
    answers_rejected: int = 0
    answer_cost_usd: float = 0.0
    judge_calls: int = 0
    judge_cached: int = 0
    judge_cost_usd: float = 0.0
    disagreements: list[str] = field(default_factory=list)  # the first few, to read
    seconds: float = 0.0

    @property
    def agreement(self) -> float | None:
        return self.agree / self.with_verdict if self.with_verdict else None

    def as_dict(self) -> dict:
        return {**asdict(self), "agreement": self.agreement}


def _kappa(confusion: dict[str, int]) -> float | None:
    n = sum(confusion.values())
    if not n:
        return None
    rule_yes = (confusion.get("correct→correct", 0) + confusion.get("correct→incorrect", 0)) / n
    judge_yes = (confusion.get("correct→correct", 0) + confusion.get("incorrect→correct", 0)) / n
    observed = (confusion.get("correct→correct", 0) + confusion.get("incorrect→incorrect", 0)) / n
    expected = rule_yes * judge_yes + (1 - rule_yes) * (1 - judge_yes)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def judge_agreement(
    *,
    prompt_set: PromptSet,
    judge_llm: LLM,
    answerers: list[LLM],
    limit: int,
    split: str | None = Prompt.Split.VALIDATION,
    concurrency: int = 8,  # answer calls in flight, and judge calls
    max_tokens: int = 1024,
    say: Callable[[str], None] = lambda _: None,
) -> AgreementReport:
    """Grade the same answers with the prompt set's rule grader and with the reference-guided judge.

    The first ``limit`` prompts with a reference (of ``split``; None: all) are answered by each of
    ``answerers`` — a profiled answer already stored is read, any other is asked (with the rule grader's
    instruction, as profiling asks it) and not stored. Judge verdicts are cached as always: a second run
    pays only for the answers it asks.
    """
    started = time.monotonic()
    configured = (prompt_set.metadata or {}).get("grader")
    references_all = prompt_set.prompts.exclude(answer="").values_list("answer", flat=True)
    rule = grader_for(
        configured=None if configured == JudgeGrader.name else configured, references=references_all.iterator()
    )
    prompts = prompt_set.prompts.exclude(answer="").order_by("id")
    if split:
        prompts = prompts.filter(split=split)
    prompts = list(prompts.values_list("id", "text", "answer")[:limit])
    if not prompts:
        raise ValueError(f"prompt set {prompt_set.name} has no prompts with a reference answer in split {split}")
    judge = judge_for_llm(judge_llm)
    report = AgreementReport(
        prompt_set=prompt_set.name, judge=judge_llm.name, rule_grader=rule.name, answerers=[a.name for a in answerers]
    )
    texts = {pid: text for pid, text, _ in prompts}
    references = {pid: answer for pid, _, answer in prompts}
    for answerer in answerers:
        answers = _answers_of(
            answerer, texts, instruction=rule.instruction, concurrency=concurrency, max_tokens=max_tokens, report=report
        )
        answered = sorted(answers.items())
        verdicts = judge.grade_many(
            [(texts[pid], text, references[pid]) for pid, text in answered], concurrency=concurrency
        )
        for (prompt_id, answer_text), verdict in zip(answered, verdicts, strict=True):
            rule_correct = rule.grade(answer_text, references[prompt_id], prompt_text=texts[prompt_id]) >= 0.5
            report.pairs += 1
            report.judge_cached += int(verdict.cached)
            if not verdict.has_verdict:
                report.no_verdict[verdict.label] = report.no_verdict.get(verdict.label, 0) + 1
                continue
            judge_correct = verdict.score >= 0.5
            report.with_verdict += 1
            report.agree += int(judge_correct == rule_correct)
            cell = f"{'correct' if rule_correct else 'incorrect'}→{'correct' if judge_correct else 'incorrect'}"
            report.confusion[cell] = report.confusion.get(cell, 0) + 1
            if judge_correct != rule_correct and len(report.disagreements) < 5:
                report.disagreements.append(
                    f"{answerer.name} on prompt {prompt_id} (reference {references[prompt_id]!r}): rule says "
                    f"{cell.split('→')[0]}, judge {cell.split('→')[1]}: {answer_text[-160:]!r}"
                )
        say(f"  {answerer.name}: {len(answers)} answers graded")
    report.judge_calls = judge.calls
    report.judge_cost_usd = round(judge.spent_usd, 8)
    report.answer_cost_usd = round(report.answer_cost_usd, 8)
    report.kappa = _kappa(report.confusion)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _answers_of(
    llm: LLM, texts: dict[int, str], *, instruction: str, concurrency: int, max_tokens: int, report: AgreementReport
) -> dict[int, str]:
    stored = dict(
        Outcome.objects.filter(llm=llm, prompt_id__in=list(texts), source=Outcome.Source.PROFILED)
        .exclude(response_text="")
        .values_list("prompt_id", "response_text")
    )
    report.answers_stored += len(stored)
    missing = [(pid, text) for pid, text in texts.items() if pid not in stored]
    if not missing:
        return stored
    if not llm.api_base:
        raise ProviderConfigurationError(f"{llm.name} has no api_base and no stored answers to {len(missing)} prompts")
    api_key = job_api_key(llm)
    client = ChatClient(
        api_base=llm.api_base,
        model=llm.api_model or llm.name,
        api_key=api_key,
        system_prompt=instruction or None,
        max_tokens=max_tokens,
    )
    answers = dict(stored)
    for prompt_id, completion in complete_all(client, missing, concurrency=concurrency):
        if isinstance(completion, PromptRejected):
            report.answers_rejected += 1
            continue
        report.answers_asked += 1
        answers[prompt_id] = completion.text
        input_tokens, output_tokens = completion.input_tokens, completion.output_tokens
        if input_tokens is None or output_tokens is None:
            input_tokens, output_tokens = count_tokens([texts[prompt_id], completion.text or " "])
        report.answer_cost_usd += llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens) or 0.0
    return answers

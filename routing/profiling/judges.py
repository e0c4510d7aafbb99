"""LLM-as-judge: a registered LLM grades answers that no rule can check (docs/judges.md).

Three modes, each a prompt template in ``routing/profiling/judge_prompts/``:

- ``reference`` — is the answer's conclusion the reference answer's? → correct (1.0) / incorrect (0.0)
- ``rubric``    — no reference: a 1–10 score on a fixed rubric → (n − 1) / 9 in [0, 1]
- ``pairwise``  — the answer against a comparison answer (a reference LLM's), asked twice with the
  order swapped so that a judge that prefers a position cancels itself out → win / tie / loss and
  the answer's share of the two verdicts in [0, 1] (1 = won both orders, 0.5 = tie)

The judge's reply is parsed strictly: one verdict line of the template's form, all such lines
agreeing. A reply without one is ``unparseable``; a "CANNOT JUDGE", a refusal ("I'm sorry, I can't…")
or a prompt the judge's provider rejected is ``refused``. Either way the score is ``None`` — never a
guess. Provider outages and configuration errors are raised (``routing.profiling.client``), as when
profiling, so the job retries or stops.

Each judge call is cached by (judge LLM, mode, template, prompt, answer, reference or comparison)
through a ``VerdictCache`` (the database one is ``routing.services.judging``): a cached verdict
costs nothing and makes no call. This module touches no database.

    judge = Judge(name="gpt-judge", client=ChatClient(...), price=lambda i, o: ..., cache=...)
    judge.reference(prompt="2+2?", answer="4", reference="4")      # Verdict(label="correct", score=1.0)
    judge.rubric(prompt="Write a haiku", answer="...")             # Verdict(label="scored", score=0.67)
    judge.pairwise(prompt="...", answer="...", comparison="...")   # Verdict(label="win", score=1.0)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from routing.profiling.client import Completion, PromptRejected

PROMPTS_DIRECTORY = Path(__file__).resolve().parent / "judge_prompts"
RAW_TEXT_LIMIT = 2000  # of the judge's reply, kept with the verdict (the admin shows it)
JUDGE_MAX_TOKENS = 512  # room for a short justification before the verdict line


class Mode(StrEnum):
    REFERENCE = "reference"
    RUBRIC = "rubric"
    PAIRWISE = "pairwise"


class Label(StrEnum):
    CORRECT = "correct"  # reference mode
    INCORRECT = "incorrect"
    SCORED = "scored"  # rubric mode
    WIN = "win"  # pairwise mode, the answer against the comparison
    TIE = "tie"
    LOSS = "loss"
    REFUSED = "refused"  # no verdict: the judge declined, or its provider rejected the prompt
    UNPARSEABLE = "unparseable"  # no verdict: the reply holds no (consistent) verdict line


NO_VERDICT = frozenset({Label.REFUSED, Label.UNPARSEABLE})


@dataclass(frozen=True)
class Verdict:
    mode: str
    label: str
    score: float | None  # in [0, 1]; None exactly when there is no verdict
    raw_text: str  # the judge's reply, truncated to RAW_TEXT_LIMIT (both replies, for pairwise)
    cost_usd: float = 0.0  # what this verdict cost now: 0 when it came from the cache
    cached: bool = False

    @property
    def has_verdict(self) -> bool:
        return self.label not in NO_VERDICT


@dataclass(frozen=True)
class JudgeCall:
    """One question put to a judge: what the cache is keyed by (``key``) and what it stores."""

    judge: str
    mode: str
    prompt: str
    answer: str  # for pairwise: the answer shown first ("A")
    other: str = ""  # the reference (reference mode) or the answer shown second ("B", pairwise)

    @property
    def key(self) -> str:
        parts = [self.judge, self.mode, TEMPLATE_DIGESTS[self.mode], self.prompt, self.answer, self.other]
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class VerdictCache(Protocol):
    def get(self, call: JudgeCall) -> Verdict | None: ...

    def put(self, call: JudgeCall, verdict: Verdict) -> None: ...


class Answerer(Protocol):
    """What a judge asks: ``routing.profiling.client.ChatClient`` or a test double."""

    def complete(self, prompt_text: str) -> Completion: ...


# --- templates --------------------------------------------------------------------------------------

_PLACEHOLDERS = {
    Mode.REFERENCE: ("prompt", "reference", "answer"),
    Mode.RUBRIC: ("prompt", "answer"),
    Mode.PAIRWISE: ("prompt", "answer_a", "answer_b"),
}
TEMPLATES: dict[str, str] = {mode: (PROMPTS_DIRECTORY / f"{mode}.txt").read_text() for mode in Mode}
# A template edited invalidates the verdicts cached under the old wording.
TEMPLATE_DIGESTS: dict[str, str] = {m: hashlib.sha256(t.encode()).hexdigest()[:16] for m, t in TEMPLATES.items()}
_TAGS = re.compile(r"<(/?)(question|reference|answer|answer_a|answer_b)>", re.IGNORECASE)


def _enclosed(text: str) -> str:
    """``text`` with the templates' tags defused, so an answer cannot close its own section and write
    instructions (or a verdict) outside it."""
    return _TAGS.sub(lambda m: f"‹{m.group(1)}{m.group(2)}›", text or "")


def render(mode: str, **values: str) -> str:
    """The judge prompt of ``mode`` with its placeholders (``{prompt}``, ``{answer}``, …) filled."""
    text = TEMPLATES[mode]
    for name in _PLACEHOLDERS[Mode(mode)]:
        text = text.replace("{" + name + "}", _enclosed(values[name]).strip())
    return text


# --- parsing ------------------------------------------------------------------------------------------

_DECORATION = re.compile(r"[*_`#>]")
_VERDICT_LINE = re.compile(r"^\s*verdict\s*:\s*(.+?)\s*\.?\s*$", re.IGNORECASE)
_SCORE_LINE = re.compile(r"^\s*score\s*:\s*(.+?)\s*\.?\s*$", re.IGNORECASE)
_SCORE_VALUE = re.compile(r"^(\d{1,2})(?:\s*/\s*10)?$")
_REFUSAL = re.compile(
    r"\b(i\s+(?:can ?not|can't|can’t|won't|won’t|will not|am unable|'m unable|’m unable|am not able)|"
    r"i'm sorry|i’m sorry|i am sorry|i apologi[sz]e|as an ai)\b",
    re.IGNORECASE,
)
CANNOT_JUDGE = "CANNOT JUDGE"


def _tagged_values(text: str, line: re.Pattern) -> list[str]:
    values = []
    for raw_line in (text or "").splitlines():
        found = line.match(_DECORATION.sub("", raw_line))
        if found:
            values.append(" ".join(found.group(1).upper().split()))
    return values


def _no_verdict(text: str) -> str:
    return Label.REFUSED if _REFUSAL.search(text or "") else Label.UNPARSEABLE


def parse_reference(text: str) -> tuple[str, float | None]:
    """(label, score) of a reference-mode reply."""
    values = set(_tagged_values(text, _VERDICT_LINE))
    if values == {"CORRECT"}:
        return Label.CORRECT, 1.0
    if values == {"INCORRECT"}:
        return Label.INCORRECT, 0.0
    if values == {CANNOT_JUDGE}:
        return Label.REFUSED, None
    return (_no_verdict(text) if not values else Label.UNPARSEABLE), None


def parse_rubric(text: str) -> tuple[str, float | None]:
    """(label, score) of a rubric reply: "Score: 7" (or "7/10") → (scored, 6/9)."""
    values = set(_tagged_values(text, _SCORE_LINE))
    if values == {CANNOT_JUDGE}:
        return Label.REFUSED, None
    if len(values) == 1:
        number = _SCORE_VALUE.match(next(iter(values)))
        if number and 1 <= int(number.group(1)) <= 10:
            return Label.SCORED, (int(number.group(1)) - 1) / 9
    return (_no_verdict(text) if not values else Label.UNPARSEABLE), None


def parse_pairwise(text: str) -> tuple[str, float | None]:
    """(label, score of answer A) of one pairwise reply: A → (win, 1), B → (loss, 0), TIE → (tie, 0.5)."""
    values = set(_tagged_values(text, _VERDICT_LINE))
    if values == {"A"}:
        return Label.WIN, 1.0
    if values == {"B"}:
        return Label.LOSS, 0.0
    if values == {"TIE"}:
        return Label.TIE, 0.5
    if values == {CANNOT_JUDGE}:
        return Label.REFUSED, None
    return (_no_verdict(text) if not values else Label.UNPARSEABLE), None


PARSERS: dict[str, Callable[[str], tuple[str, float | None]]] = {
    Mode.REFERENCE: parse_reference,
    Mode.RUBRIC: parse_rubric,
    Mode.PAIRWISE: parse_pairwise,
}


def pairwise_label(score: float) -> str:
    return Label.WIN if score > 0.5 else Label.LOSS if score < 0.5 else Label.TIE


# --- the judge ----------------------------------------------------------------------------------------


@dataclass
class Judge:
    """A registered LLM asked to grade; safe to share between threads.

    ``price(input_tokens, output_tokens)`` is the judge LLM's cost of one call in USD (None: unpriced,
    counted as 0). ``spent_usd`` and ``calls`` add up what this judge paid and asked (cache hits
    excluded), for the job that uses it.
    """

    name: str
    client: Answerer
    price: Callable[[int, int], float | None] = lambda input_tokens, output_tokens: 0.0
    cache: VerdictCache | None = None
    estimate_tokens: Callable[[str, str], tuple[int, int]] | None = None
    spent_usd: float = 0.0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def grade(self, *, prompt: str, answer: str, reference: str | None = None) -> Verdict:
        """Reference-guided when there is a reference, else the rubric."""
        return self._ask(*self._question(prompt, answer, reference))

    def grade_many(self, questions: Sequence[tuple[str, str, str | None]], *, concurrency: int = 8) -> list[Verdict]:
        """``grade`` of each (prompt, answer, reference), in order, with up to ``concurrency`` judge calls
        in flight. The cache is read and written in the calling thread only (a database cache's
        connection is the caller's). A provider error is raised once the other calls are done and
        their verdicts cached — paid for, never asked again."""
        asked = [self._question(prompt, answer, reference) for prompt, answer, reference in questions]
        verdicts: list[Verdict | None] = [self._cached(call) for call, _ in asked]
        missing = [i for i, verdict in enumerate(verdicts) if verdict is None]
        failure: Exception | None = None
        if missing:
            workers = max(1, min(concurrency, len(missing)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
                futures = {pool.submit(self._fresh, *asked[i]): i for i in missing}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        verdicts[i], cacheable = future.result()
                    except Exception as exc:  # raised below, once the verdicts paid for are cached
                        failure = failure or exc
                        continue
                    if cacheable:
                        self._store(asked[i][0], verdicts[i])
        if failure is not None:
            raise failure
        return verdicts

    def _question(self, prompt: str, answer: str, reference: str | None) -> tuple[JudgeCall, str]:
        if reference and reference.strip():
            call = JudgeCall(judge=self.name, mode=Mode.REFERENCE, prompt=prompt, answer=answer, other=reference)
            return call, render(Mode.REFERENCE, prompt=prompt, reference=reference, answer=answer)
        call = JudgeCall(judge=self.name, mode=Mode.RUBRIC, prompt=prompt, answer=answer)
        return call, render(Mode.RUBRIC, prompt=prompt, answer=answer)

    def reference(self, *, prompt: str, answer: str, reference: str) -> Verdict:
        call = JudgeCall(judge=self.name, mode=Mode.REFERENCE, prompt=prompt, answer=answer, other=reference)
        return self._ask(call, render(Mode.REFERENCE, prompt=prompt, reference=reference, answer=answer))

    def rubric(self, *, prompt: str, answer: str) -> Verdict:
        call = JudgeCall(judge=self.name, mode=Mode.RUBRIC, prompt=prompt, answer=answer)
        return self._ask(call, render(Mode.RUBRIC, prompt=prompt, answer=answer))

    def pairwise(self, *, prompt: str, answer: str, comparison: str) -> Verdict:
        """``answer`` against ``comparison``, asked in both orders; the verdict is the answer's."""
        first = self._ask(
            JudgeCall(judge=self.name, mode=Mode.PAIRWISE, prompt=prompt, answer=answer, other=comparison),
            render(Mode.PAIRWISE, prompt=prompt, answer_a=answer, answer_b=comparison),
        )
        second = self._ask(
            JudgeCall(judge=self.name, mode=Mode.PAIRWISE, prompt=prompt, answer=comparison, other=answer),
            render(Mode.PAIRWISE, prompt=prompt, answer_a=comparison, answer_b=answer),
        )
        raw = f"[answer shown first]\n{first.raw_text}\n[answer shown second]\n{second.raw_text}"[:RAW_TEXT_LIMIT]
        common = {
            "mode": Mode.PAIRWISE,
            "raw_text": raw,
            "cost_usd": first.cost_usd + second.cost_usd,
            "cached": first.cached and second.cached,
        }
        if not (first.has_verdict and second.has_verdict):
            # One order alone cannot cancel a position bias: no verdict rather than half of one.
            refused = Label.REFUSED in (first.label, second.label)
            return Verdict(label=Label.REFUSED if refused else Label.UNPARSEABLE, score=None, **common)
        score = (first.score + (1.0 - second.score)) / 2
        return Verdict(label=pairwise_label(score), score=score, **common)

    def _ask(self, call: JudgeCall, text: str) -> Verdict:
        verdict = self._cached(call)
        if verdict is None:
            verdict, cacheable = self._fresh(call, text)
            if cacheable:
                self._store(call, verdict)
        return verdict

    def _cached(self, call: JudgeCall) -> Verdict | None:
        cached = self.cache.get(call) if self.cache is not None else None
        return None if cached is None else replace(cached, cost_usd=0.0, cached=True)

    def _fresh(self, call: JudgeCall, text: str) -> tuple[Verdict, bool]:
        """The judge asked (in any thread) → (verdict, whether to cache it). Provider errors other than a
        rejected prompt are raised."""
        try:
            completion = self.client.complete(text)
        except PromptRejected as rejected:
            # The judge's provider refused this prompt (a filter, a length limit): no verdict, and
            # not cached — another judge or a later try may answer.
            rejection = Verdict(
                mode=call.mode, label=Label.REFUSED, score=None, raw_text=str(rejected)[:RAW_TEXT_LIMIT]
            )
            return rejection, False
        label, score = PARSERS[call.mode](completion.text)
        verdict = Verdict(
            mode=call.mode,
            label=label,
            score=score,
            raw_text=(completion.text or "")[:RAW_TEXT_LIMIT],
            cost_usd=self._cost(text, completion),
        )
        with self._lock:
            self.spent_usd += verdict.cost_usd
            self.calls += 1
        return verdict, True

    def _store(self, call: JudgeCall, verdict: Verdict) -> None:
        if self.cache is not None:
            self.cache.put(call, verdict)

    def _cost(self, text: str, completion: Completion) -> float:
        input_tokens, output_tokens = completion.input_tokens, completion.output_tokens
        if (input_tokens is None or output_tokens is None) and self.estimate_tokens is not None:
            estimated_in, estimated_out = self.estimate_tokens(text, completion.text or " ")
            input_tokens = estimated_in if input_tokens is None else input_tokens
            output_tokens = estimated_out if output_tokens is None else output_tokens
        return float(self.price(input_tokens or 0, output_tokens or 0) or 0.0)

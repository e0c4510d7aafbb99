"""Graders turn an LLM's answer into a correctness score in [0, 1] against the prompt's reference.

One method, like DRF's ``BaseThrottle.allow_request()``:
``grade(response_text, reference, *, prompt_text="") -> float | None``. A rule grader never raises on a
bad answer — garbage, an empty string or a refusal scores 0 and is recorded as such (an LLM that
answers garbage is an LLM that is wrong) — and ignores the prompt. The judge grader reads the prompt
too, and returns ``None`` ("no verdict") when its judge refused or answered unparseably: that answer
gets no outcome rather than a guessed one.

Which grader a prompt set uses: ``prompt_set.metadata["grader"]`` when set ("judge" needs
``metadata["judge_llm"]`` too, docs/judges.md), else multiple choice when every reference is a single
letter (the MMLU-Pro format), else exact match.
"""

from __future__ import annotations

import re
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable

from routing.profiling.judges import Judge, Verdict


class Grader(ABC):
    #: The key under which the grader is registered (``GRADERS``) and named in job arguments.
    name: str
    #: The instruction sent as the system message, so the LLM answers in a form this grader reads.
    instruction: str = "Answer the question."

    @abstractmethod
    def grade(self, response_text: str, reference: str, *, prompt_text: str = "") -> float | None: ...


class MultipleChoiceGrader(Grader):
    """The answer letter of a lettered multiple-choice question (MMLU-Pro: options A–J).

    Reads the forms LLMs use — "The answer is (C)", "Answer: C", "**C**", a bare "C." — and, like
    the MMLU-Pro authors' scorer, takes the *last* "answer is" when a chain of thought names
    several. Unlike that scorer it never falls back to "the last capital letter anywhere": "I" and
    "A" are English words, and a guess would turn garbage into lucky correct answers.
    """

    name = "multiple_choice"
    instruction = (
        "Answer the multiple-choice question. Think step by step if needed, then finish with "
        "'The answer is (X)' where X is the letter of the correct option."
    )
    # Case-insensitive words, upper-case letter: "the answer is a guess" names no option.
    _answer_is = re.compile(r"(?i:answer\s+is)\s*:?\s*\(?\*{0,2}([A-Z])\b")
    _answer_colon = re.compile(r"(?i:\banswer\s*:)\s*\(?\*{0,2}([A-Z])\b")
    _bare = re.compile(r"^\W*\(?([A-Z])\)?\W*$")

    def extract(self, response_text: str) -> str | None:
        text = response_text or ""
        for pattern in (self._answer_is, self._answer_colon):
            found = pattern.findall(text)
            if found:
                return found[-1].upper()
        bare = self._bare.match(text.strip())
        return bare.group(1) if bare else None

    def grade(self, response_text: str, reference: str, *, prompt_text: str = "") -> float:
        letter = self.extract(response_text)
        return float(letter is not None and letter == reference.strip().upper())


class ExactMatchGrader(Grader):
    """The whole answer equals the reference, ignoring case, surrounding punctuation and spacing."""

    name = "exact_match"
    instruction = "Answer with the answer only: no explanation, no extra words."

    @staticmethod
    def normalise(text: str) -> str:
        return " ".join((text or "").casefold().split()).strip(string.punctuation + " ")

    def grade(self, response_text: str, reference: str, *, prompt_text: str = "") -> float:
        return float(self.normalise(response_text) == self.normalise(reference) != "")


class JudgeGrader(Grader):
    """An LLM judge (``routing.profiling.judges``): reference-guided when the prompt has a reference,
    else the rubric. ``last_verdict`` is the verdict behind the last grade (its label, cost, whether it
    came from the cache), for the caller's report; one grader per thread."""

    name = "judge"
    # No system message: the LLM answers as it would the same prompt in production traffic.
    instruction = ""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.last_verdict: Verdict | None = None

    @property
    def last_label(self) -> str | None:
        return self.last_verdict.label if self.last_verdict else None

    def verdict(self, response_text: str, reference: str, *, prompt_text: str = "") -> Verdict:
        self.last_verdict = self.judge.grade(prompt=prompt_text, answer=response_text, reference=reference)
        return self.last_verdict

    def grade(self, response_text: str, reference: str, *, prompt_text: str = "") -> float | None:
        return self.verdict(response_text, reference, prompt_text=prompt_text).score


# Rule graders, built without arguments; the judge grader needs its judge (``grader_for``).
GRADERS: dict[str, type[Grader]] = {
    MultipleChoiceGrader.name: MultipleChoiceGrader,
    ExactMatchGrader.name: ExactMatchGrader,
}


GRADER_NAMES = (*GRADERS, JudgeGrader.name)


def get_grader(name: str, *, judge: Judge | None = None) -> Grader:
    if name == JudgeGrader.name:
        if judge is None:
            raise ValueError("the judge grader needs a judge LLM: set the prompt set's metadata judge_llm")
        return JudgeGrader(judge)
    try:
        return GRADERS[name]()
    except KeyError:
        raise ValueError(f"unknown grader {name!r}; choose one of {', '.join(sorted(GRADER_NAMES))}") from None


def grader_for(*, configured: str | None, references: Iterable[str], judge: Judge | None = None) -> Grader:
    """The configured grader, else multiple choice when every reference is one letter, else exact match."""
    if configured:
        return get_grader(configured, judge=judge)
    references = list(references)
    if references and all(len(r.strip()) == 1 and r.strip().isalpha() for r in references):
        return MultipleChoiceGrader()
    return ExactMatchGrader()

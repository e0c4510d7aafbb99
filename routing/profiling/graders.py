"""Graders turn an LLM's answer into a correctness score in [0, 1] against the prompt's reference.

One method, like DRF's ``BaseThrottle.allow_request()``: ``grade(response_text, reference) -> float``.
A grader never raises on a bad answer — garbage, an empty string or a refusal scores 0 and is
recorded as such (an LLM that answers garbage is an LLM that is wrong).

Which grader a prompt set uses: ``prompt_set.metadata["grader"]`` when set, else multiple choice
when every reference is a single letter (the MMLU-Pro format), else exact match.
"""

from __future__ import annotations

import re
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable


class Grader(ABC):
    #: The key under which the grader is registered (``GRADERS``) and named in job arguments.
    name: str
    #: The instruction sent as the system message, so the LLM answers in a form this grader reads.
    instruction: str = "Answer the question."

    @abstractmethod
    def grade(self, response_text: str, reference: str) -> float: ...


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

    def grade(self, response_text: str, reference: str) -> float:
        letter = self.extract(response_text)
        return float(letter is not None and letter == reference.strip().upper())


class ExactMatchGrader(Grader):
    """The whole answer equals the reference, ignoring case, surrounding punctuation and spacing."""

    name = "exact_match"
    instruction = "Answer with the answer only: no explanation, no extra words."

    @staticmethod
    def normalise(text: str) -> str:
        return " ".join((text or "").casefold().split()).strip(string.punctuation + " ")

    def grade(self, response_text: str, reference: str) -> float:
        return float(self.normalise(response_text) == self.normalise(reference) != "")


GRADERS: dict[str, type[Grader]] = {
    MultipleChoiceGrader.name: MultipleChoiceGrader,
    ExactMatchGrader.name: ExactMatchGrader,
}


def get_grader(name: str) -> Grader:
    try:
        return GRADERS[name]()
    except KeyError:
        raise ValueError(f"unknown grader {name!r}; choose one of {', '.join(sorted(GRADERS))}") from None


def grader_for(*, configured: str | None, references: Iterable[str]) -> Grader:
    """The configured grader, else multiple choice when every reference is one letter, else exact match."""
    if configured:
        return get_grader(configured)
    references = list(references)
    if references and all(len(r.strip()) == 1 and r.strip().isalpha() for r in references):
        return MultipleChoiceGrader()
    return ExactMatchGrader()

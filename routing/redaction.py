"""Redaction of logged prompts before a validation set stores them.

A validation set built from gateway traffic keeps the prompts' text for good (profiling asks every
new LLM those prompts), so personal data in them is masked first. Which function does it is the
setting ``ROUTERHUB_VALIDATION_REDACTOR``: a dotted path to any ``text -> text`` callable (a
deployment with its own rules — names, account numbers — points it at its own function). The
default, :func:`mask_personal_data`, masks what can be recognised without a model:

- e-mail addresses → ``[email]``;
- phone numbers → ``[phone]``: 7–15 digits in groups of 2–4, after a ``+``/``00`` prefix or an area
  code in brackets, or else in three or more groups joined by the same dash or dot;
- API-key-like tokens → ``[key]``: known prefixes (``sk-``, ``rh_``, ``ghp_``, ``xox?-``, ``AKIA``, …)
  followed by at least 16 key characters, ``Bearer`` credentials, and any run of 32 or more letters,
  digits, ``_`` or ``-`` that mixes letters and digits (hex digests and base64 secrets look so) and
  is not mostly dashes.

It is a filter, not a guarantee: text it does not recognise passes ("555 2671", spaces only, does).
Dates, year ranges, decimals, rows of numbers and rules of dashes are left alone, because masking them
would change what the prompt asks: on the 12,032 MMLU-Pro questions it changes one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

Redactor = Callable[[str], str]

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
KEY_PREFIXED = re.compile(
    r"\b(?:sk|pk|rk|rh|sk-proj|sk-ant|ghp|gho|ghs|github_pat|xox[abprs]|glpat|hf|AKIA|ASIA|AIza)[-_]?[A-Za-z0-9_\-]{16,}"
)
BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}=*")
LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[0-9])(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{32,}")
# A phone number: an optional international prefix ("+44", "0044") and area code in brackets, then
# two to five groups of 2–4 digits joined by one space, dot or dash, 7–15 digits in all. Without a
# prefix or brackets it needs three groups or more joined by one and the same dash or dot
# ("415-555-2671", "415.555.2671"):
# a row of numbers split by spaces ("95 5950 6000 255"), a year range ("1837-1843") or a decimal
# ("238.0508") is what a question asks about, not a phone number.
PHONE = re.compile(
    r"(?<![\w.,+/])"
    r"(?P<prefix>(?:\+|00)\d{1,3}[\s.\-]?(?:\(\d{1,4}\)[\s.\-]?)?|\(\d{2,4}\)[\s.\-]?)?"
    r"\d{2,4}(?:[\s.\-]\d{2,4}){1,4}"
    r"(?![\w.,/]?\d)"
)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _long_token(match: re.Match) -> str:
    text = match.group(0)
    # A rule of dashes or underscores with a word on it ("----LOT3") is layout, not a secret.
    return text if sum(c in "-_" for c in text) * 4 > len(text) else "[key]"


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    body = text[len(match.group("prefix") or "") :]
    if not 7 <= digits <= 15 or DATE.fullmatch(text):
        return text
    if not match.group("prefix"):
        separators = re.findall(r"\d([\s.\-])\d", body)
        if len(separators) < 2 or len(set(separators)) != 1 or separators[0] not in "-.":
            return text
    return "[phone]"


def mask_personal_data(text: str) -> str:
    """``text`` with e-mail addresses, API-key-like tokens and phone numbers masked (module docstring)."""
    text = EMAIL.sub("[email]", text)
    text = BEARER.sub("Bearer [key]", text)
    text = KEY_PREFIXED.sub("[key]", text)
    text = LONG_TOKEN.sub(_long_token, text)
    return PHONE.sub(_phone, text)


@cache
def _load(path: str) -> Redactor:
    try:
        function = import_string(path)
    except ImportError as exc:
        raise ValueError(f"ROUTERHUB_VALIDATION_REDACTOR={path!r} cannot be imported: {exc}") from None
    if not callable(function):
        raise ValueError(f"ROUTERHUB_VALIDATION_REDACTOR={path!r} is not a function")
    return function


def configured_redactor() -> Redactor:
    """The function ``ROUTERHUB_VALIDATION_REDACTOR`` names; ValueError naming the setting when it cannot be used."""
    function = _load(settings.ROUTERHUB_VALIDATION_REDACTOR)

    def redact(text: str) -> str:
        redacted = function(text)
        if not isinstance(redacted, str):
            raise ValueError(
                f"ROUTERHUB_VALIDATION_REDACTOR={settings.ROUTERHUB_VALIDATION_REDACTOR!r} returned "
                f"{type(redacted).__name__}, not text"
            )
        return redacted

    return redact

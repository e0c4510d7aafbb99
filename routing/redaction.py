"""Redaction of logged prompts before a validation set stores them.

A validation set built from gateway traffic keeps the prompts' text for good (profiling asks every
new LLM those prompts), so personal data in them is masked first. Which function does it is the
setting ``ROUTERHUB_VALIDATION_REDACTOR``: a dotted path to any ``text -> text`` callable (a
deployment with its own rules — names, account numbers — points it at its own function). The
default, :func:`mask_personal_data`, masks what can be recognised without a model:

- e-mail addresses → ``[email]``;
- phone numbers (7–15 digits, with optional ``+``, spaces, dots, dashes or brackets, the forms of
  E.164 and of national numbers) → ``[phone]``;
- API-key-like tokens → ``[key]``: known prefixes (``sk-``, ``rh_``, ``ghp_``, ``xox?-``, ``AKIA``, …)
  followed by at least 16 key characters, ``Bearer`` credentials, and any run of 32 or more letters,
  digits, ``_`` or ``-`` that mixes letters and digits (hex digests and base64 secrets look so).

It is a filter, not a guarantee: text it does not recognise passes. Dates (``2024-01-31``) and short
numbers are left alone, because masking them would change what the prompt asks.
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
# A run of 7–15 digits with the separators phone numbers are written with, not inside a longer word
# or number. It is a phone number when it starts with "+", "00" or "(", or is split in three or more
# groups ("415 555 2671"): a bare "12345678" or "3.1415926" in a maths question is a number.
PHONE = re.compile(r"(?<![\w+.,])(?:\+|00|\()?\d(?:[\s.\-()]{0,2}\d){6,14}(?![\w.,]\d|\w)")
GROUP_BREAK = re.compile(r"\d[\s.\-()]+(?=\d)")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone(match: re.Match) -> str:
    text = match.group(0)
    prefixed = text.startswith(("+", "00", "("))
    if DATE.fullmatch(text) or not (prefixed or len(GROUP_BREAK.findall(text)) >= 2):
        return text
    return "[phone]"


def mask_personal_data(text: str) -> str:
    """``text`` with e-mail addresses, API-key-like tokens and phone numbers masked (module docstring)."""
    text = EMAIL.sub("[email]", text)
    text = BEARER.sub("Bearer [key]", text)
    text = KEY_PREFIXED.sub("[key]", text)
    text = LONG_TOKEN.sub("[key]", text)
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

"""Schemathesis hooks of the fuzz test (tests/processes/test_api_fuzz.py, ``SCHEMATHESIS_HOOKS``).

A schema-valid request may still be refused for what no schema can say: which LLMs, prompt sets and
fitted routing states this database holds, and what the registered LLMs cost. Those refusals — a 400
naming only such fields, with the message the server gives for that reason — are not counted as
"schema-valid request rejected". Any other failure, and any other 400, fails the run.

The JSON reader's rules for every value of a body (routing/json_checks.py, stated in each operation's
400 answer) cannot be written into OpenAPI 3.0 for its free-form objects (message parts, metadata,
job parameters): requests that break them are not generated — NUL by ``--generation-allow-x00
false``, integers beyond 64 bits here.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

from routing.json_checks import MAX_INTEGER

# operation → field → the beginnings of the messages that refuse a value for what the database holds
REFUSED_FOR_WHAT_THE_DATABASE_HOLDS = {
    "POST /api/v1/route": {
        "models": ("Unknown LLM(s): ", "None of "),  # no such LLM; none of them routable or allowed
        "strategy": ("No routing state has been fitted with ",),
        "max_cost_usd": ("No allowed LLM costs at most ",),  # what the registered LLMs cost for the prompt
    },
    "POST /api/v1/jobs": {
        "llm": ("No LLM named ",),
        "prompt_set": ("No prompt set named ",),
    },
}


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    known = REFUSED_FOR_WHAT_THE_DATABASE_HOLDS.get(f"{case.method.upper()} {case.operation.path}")
    if known is None:
        return True
    try:
        fields = json.loads(response.content)["error"]["fields"]
    except (ValueError, KeyError, TypeError):
        return True
    for name, messages in fields.items():
        if name not in known or not all(message.startswith(known[name]) for message in messages):
            return True
    return False


@schemathesis.hook
def filter_case(context, case) -> bool:
    return not holds_an_integer_beyond_64_bits(case.body)


def holds_an_integer_beyond_64_bits(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -MAX_INTEGER <= value <= MAX_INTEGER
    if isinstance(value, dict):
        return any(holds_an_integer_beyond_64_bits(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_an_integer_beyond_64_bits(item) for item in value)
    return False

"""The one validator of untrusted JSON (routing/json_checks.py)."""

from __future__ import annotations

import json

import pytest

from routing.exceptions import UnacceptableJSON
from routing.json_checks import MAX_INTEGER, MAX_ITEMS, check_json


@pytest.mark.parametrize(
    ("body", "path", "said"),
    [
        ('{"a": "x\\u0000"}', "a", "NUL character"),
        ('{"a": [{"b": "\\ud800"}]}', "a[0].b", "lone surrogate (\\ud800)"),
        ('{"a": {"k\\u0000": 1}}', "a", "A key in `a` contains a NUL"),
        ('{"k\\udfff": 1}', "k\udfff", "A key in The request body contains a lone surrogate"),
        ('{"a": {"b": 1e999}}', "a.b", "not a finite number"),
        ('{"a": [-1e999]}', "a[0]", "not a finite number"),
        (f'{{"seed": {2**63}}}', "seed", "beyond ±9,223,372,036,854,775,807"),
        ('{"a": ' + "[" * 5 + "1" + "]" * 5 + "}", "a[0][0][0]", "nested deeper than 4 levels"),
        ('{"messages": [' + ",".join(["{}"] * 4) + "]}", "messages", "has 4 items; at most 3"),
        ('{"tools": [' + ",".join(["0"] * (MAX_ITEMS + 1)) + "]}", "tools", f"at most {MAX_ITEMS:,}"),
    ],
)
def test_what_cannot_be_stored_or_passed_on_is_named_by_its_path(body, path, said):
    with pytest.raises(UnacceptableJSON) as refused:
        check_json(json.loads(body), max_depth=4, max_items={"messages": 3})
    assert refused.value.path == path and said in str(refused.value)
    assert refused.value.field == path.split(".")[0].split("[")[0]


def test_ordinary_json_passes_whatever_it_holds():
    body = {
        "messages": [{"role": "user", "content": "smile 😀, ünïcödé"}] * 3,
        "seed": MAX_INTEGER,
        "temperature": -0.5,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "flag": True,
        "nothing": None,
    }
    check_json(json.loads(json.dumps(body)), max_depth=6, max_items={"messages": 3})

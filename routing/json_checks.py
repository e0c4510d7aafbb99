"""Untrusted JSON, checked the same way for every API: ``/api/``'s parser (``routing/apis/parsers.py``)
and ``/v1/``'s request reader (``routing/gateway/requests.py``), before any view code, upstream call or
database write.

Python's ``json`` happily returns what the rest of the service cannot take:

- NUL characters (``"\\u0000"``): a PostgreSQL text or jsonb column refuses them, so the row that
  records the call would fail to insert — after the LLM had answered;
- lone UTF-16 surrogates (``"\\ud800"``): not encodable as UTF-8, for the database or an upstream;
- numbers nothing downstream holds: ``1e999`` is read as infinity, and integers have no bound;
- nesting so deep that recursive code overflows, and arrays or objects long enough to make every
  later walk over the body expensive.

Each is an :class:`~routing.exceptions.UnacceptableJSON` naming where it is; each API turns that into
a 400 in its own error shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from routing.exceptions import UnacceptableJSON

# NUL, or a UTF-16 surrogate code point (only ever "lone" in a str: paired ones decode to one character).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Items of any one array or object, unless the caller gives a field its own limit (a chat's messages).
MAX_ITEMS = 10_000
# Deepest nesting of arrays and objects accepted in a JSON body, /api/ and /v1/ (Python's parser
# recurses per level; no real request comes near it).
MAX_DEPTH = 32
# A signed 64-bit integer: what PostgreSQL's bigint and most JSON readers of other languages hold.
MAX_INTEGER = 2**63 - 1


def check_json(data, *, max_depth: int, max_items: Mapping[str, int] | None = None) -> None:
    """Raise :class:`UnacceptableJSON` for the first thing in ``data`` the service cannot take.

    ``max_items`` gives top-level fields a limit of their own (``{"messages": 1000}``); any other
    array or object may hold ``MAX_ITEMS``."""
    limits = max_items or {}
    stack = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            match = UNSTORABLE.search(value)
            if match:
                raise UnacceptableJSON(
                    path, f"{_shown(path)} contains {_describe(match.group())}, which cannot be stored."
                )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_INTEGER:
                raise UnacceptableJSON(path, f"{_shown(path)} is an integer beyond ±{MAX_INTEGER:,} (64 bits).")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise UnacceptableJSON(path, f"{_shown(path)} is not a finite number.")
        elif isinstance(value, (dict, list)):
            if depth >= max_depth:
                raise UnacceptableJSON(path, f"{_shown(path)} is nested deeper than {max_depth} levels.")
            limit = limits.get(path, MAX_ITEMS)
            if len(value) > limit:
                raise UnacceptableJSON(
                    path, f"{_shown(path)} has {len(value):,} items; at most {limit:,} are accepted."
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    child = f"{path}.{key}" if path else key
                    match = UNSTORABLE.search(key)
                    if match:
                        raise UnacceptableJSON(
                            path or key, f"A key in {_shown(path)} contains {_describe(match.group())}."
                        )
                    stack.append((item, child, depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _shown(path: str) -> str:
    return f"`{path}`" if path else "The request body"


def _describe(character: str) -> str:
    if character == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(character):04x}), which is not valid Unicode text"

"""The API's one request parser: JSON, read defensively (settings ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

Python's ``json`` happily returns what PostgreSQL and UTF-8 cannot take: NUL characters
(``"\\u0000"``; a text or jsonb column refuses them) and lone UTF-16 surrogates (``"\\ud800"``; not
encodable as UTF-8). It also recurses once per nesting level, so ``[[[[…]]]]`` a thousand deep
raises ``RecursionError``. Each of these would surface far from the request as a 500; here they are
a 400 naming the field, before any view code runs.
"""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from routing.apis.serializers import UNSTORABLE


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.ROUTERHUB_MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.") from None
        check_json(data, max_depth=limit)
        return data


def check_json(data, *, max_depth: int) -> None:
    """Raise a ValidationError naming the top-level field that nests too deep or holds a string
    that cannot be stored (NUL, lone surrogate); the message gives the full path."""
    stack = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            match = UNSTORABLE.search(value)
            if match:
                _fail(path, f"{_shown(path)} contains {_describe(match.group())}, which cannot be stored.")
        elif isinstance(value, (dict, list)):
            if depth >= max_depth:
                _fail(path, f"{_shown(path)} is nested deeper than {max_depth} levels.")
            if isinstance(value, dict):
                for key, item in value.items():
                    child = f"{path}.{key}" if path else key
                    if UNSTORABLE.search(key):
                        _fail(
                            path or key,
                            f"A key in {_shown(path)} contains {_describe(UNSTORABLE.search(key).group())}.",
                        )
                    stack.append((item, child, depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _fail(path: str, message: str):
    field = re.split(r"[.\[]", path, maxsplit=1)[0] if path else "non_field_errors"
    raise serializers.ValidationError({field or "non_field_errors": [message]})


def _shown(path: str) -> str:
    return f"`{path}`" if path else "The request body"


def _describe(character: str) -> str:
    if character == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(character):04x}), which is not valid Unicode text"

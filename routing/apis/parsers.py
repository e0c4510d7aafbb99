"""The API's one request parser: JSON, read defensively (settings ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

What the parsed body may hold is checked by ``routing/json_checks.py``, as the gateway checks its own
bodies: no NUL or lone surrogate in any string or key, no nesting deeper than
``MAX_DEPTH`` (routing/json_checks.py), no non-finite number or integer beyond 64 bits. Each would surface far
from the request as a 500; here it is a 400 naming the field, before any view code runs.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from routing.exceptions import UnacceptableJSON
from routing.json_checks import MAX_DEPTH, check_json


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = MAX_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.") from None
        try:
            check_json(data, max_depth=limit)
        except UnacceptableJSON as error:
            raise serializers.ValidationError({error.field: [str(error)]}) from None
        return data

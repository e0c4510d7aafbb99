"""Serializers shared by several API views; each view keeps its own Input/Output serializers.

Input fields are *strict*: JSON numbers must be numbers and strings strings. DRF would otherwise
read ``"lambda": "0.5"`` or ``"prompt": 42`` happily, and a client bug would route silently.

The OpenAPI schema (``/api/schema/``) states what these fields accept, and the fields refuse what it
refuses: a schema extension below maps each rule the schema generator would not see — unknown fields
refused, a string that may not be blank, a chat that needs a user turn with text, a rule over several
fields (``schema_constraints``).
"""

from __future__ import annotations

import math
import threading

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import LLM_NAME_MAX_LENGTH
from routing.caches import process_cache
from routing.json_checks import UNSTORABLE
from routing.prompt_text import message_text
from routing.selection import MAX_LAMBDA
from routing.strategies import STRATEGIES

# DRF deep-copies every declared field (and every nested serializer's) for each serializer it creates,
# on every request; the route API renders and validates with instances made once instead. What that
# saves is measured against DRF's own way in benchmarks/results/plain_code.md.
_representers = process_cache("apis.serializers.representers")
# Keyed by (class, thread): a new thread (Django's handler starts one per request) takes a new entry.
_validators = process_cache("apis.serializers.validators", max_entries=256)


def represent(serializer_class: type[serializers.Serializer], instance) -> dict:
    """``serializer_class(instance).data``, for an output serializer that needs no context, without
    building its fields again. Rendering only reads the fields, so one instance per class serves every
    request and thread of the process."""
    serializer = _representers.get(serializer_class)
    if serializer is None:
        serializer = serializer_class()
        _representers.set(serializer_class, serializer)
    return serializer.to_representation(instance)


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    """What ``serializer_class(data=data).is_valid(raise_exception=True)`` validates, raising the same
    ``ValidationError``, without building the serializer's fields for every request. One instance per
    class and thread: validation keeps nothing on the serializer, and a thread's own instance needs
    no proof of that. A field whose checks read settings reads them in ``to_internal_value``, on
    every call (:class:`ChatField`), never when it is built."""
    key = (serializer_class, threading.get_ident())
    serializer = _validators.get(key)
    if serializer is None:
        serializer = serializer_class()
        _validators.set(key, serializer)
    return serializer.run_validation(data)


# A string with a character that is not whitespace: what DRF's blank check and ``str.strip()`` leave
# non-empty. The whitespace is spelled out (the code points ``str.isspace()`` counts) so that every
# regular expression engine reading the schema agrees with Python: ``\s`` differs between them.
WHITESPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"[^{WHITESPACE}]"
not_blank = RegexValidator(NOT_BLANK, "This field may not be blank.")


def has_text(text: str) -> bool:
    return bool(text.strip())


class StrictCharField(serializers.CharField):
    """A JSON string; unless ``allow_blank``, one with a character that is not whitespace (which the
    schema states as a pattern)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.allow_blank:
            self.validators.append(not_blank)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "A number is required (a JSON number, not a string)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "An integer is required (a JSON number, not a string)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            if not (isinstance(data, float) and data.is_integer()):
                self.fail("invalid")
        return super().to_internal_value(data)


class RejectUnknownFieldsMixin:
    # A misspelt option ("lamda") is an error, not silently ignored. (Comments, not a docstring: the
    # schema would show a docstring as the description of every serializer using this.)

    # What the serializer's ``validate`` requires of several fields together, in JSON Schema (e.g.
    # ``{"minProperties": 1}``), added to its schema.
    schema_constraints: dict = {}

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


# A content part: a text part (``type`` "text" or absent) with its string ``text``, or a part of any
# other type (images, audio, files), whose fields are the provider's business.
TEXT_PART = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    "required": ["text"],
}
OTHER_PART = {"type": "object", "properties": {"type": {"not": {"enum": ["text"]}}}, "required": ["type"]}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"anyOf": [TEXT_PART, OTHER_PART]}},
        ],
        "nullable": True,
    }
)
class MessageContentField(serializers.Field):
    """OpenAI chat content: a string, or a list of parts of which ``{"type": "text", "text": …}`` count."""

    default_error_messages = {"invalid": "Content must be a string or a list of content parts."}

    def to_internal_value(self, data):
        if data is None or isinstance(data, str):
            _check_storable(data)
            return data
        if isinstance(data, list) and all(isinstance(part, dict) for part in data):
            for part in data:
                if part.get("type", "text") == "text" and not isinstance(part.get("text"), str):
                    raise serializers.ValidationError("A text part needs a string 'text'.")
                _check_storable(part.get("text"))
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


def _check_storable(text: str | None) -> None:
    """The JSON parser refuses these already (routing/json_checks.py); checked again here so the
    field is safe whatever parsed the request."""
    if isinstance(text, str) and UNSTORABLE.search(text):
        raise serializers.ValidationError("Text must not contain NUL characters or lone surrogates.")


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool", "function"])
    content = MessageContentField(allow_null=True)
    name = StrictCharField(required=False, max_length=200)
    # other OpenAI message keys (tool_calls, tool_call_id, …) are accepted and ignored

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Each message must be an object with 'role' and 'content'.")
        return super().to_internal_value(data)


def check_text_size(text: str) -> None:
    limit = settings.ROUTERHUB_MAX_PROMPT_CHARS
    if len(text) > limit:
        raise serializers.ValidationError(f"Too long: {len(text):,} characters; at most {limit:,} may be routed.")


def check_messages(messages: list[dict]) -> None:
    check_text_size("".join(message_text(m.get("content")) for m in messages))
    if not any(is_user_turn_with_text(m) for m in messages):
        raise serializers.ValidationError("The chat has no user message with text to route on.")


def is_user_turn_with_text(message: dict) -> bool:
    return message["role"] == "user" and has_text(message_text(message.get("content")))


# The same in JSON Schema: a user message whose content is a string with text, or parts of which a
# text part has text (the parts' texts are joined: one with text is enough). OpenAPI 3.0 has no
# "contains"; "not every item is without" says it.
TEXT_PART_WITH_TEXT = {
    **TEXT_PART,
    "properties": {**TEXT_PART["properties"], "text": {"type": "string", "pattern": NOT_BLANK}},
}
USER_TURN_WITH_TEXT = {
    "type": "object",
    "properties": {
        "role": {"enum": ["user"]},
        "content": {
            "anyOf": [
                {"type": "string", "pattern": NOT_BLANK},
                {"type": "array", "not": {"items": {"not": TEXT_PART_WITH_TEXT}}},
            ]
        },
    },
    "required": ["role", "content"],
}


class ChatField(serializers.ListField):
    """An OpenAI-format chat: 1 to ``ROUTERHUB_MAX_MESSAGES`` messages, at least one of them a user
    turn with text (routed on the last such turn), all their text within ``ROUTERHUB_MAX_PROMPT_CHARS``."""

    child = MessageSerializer()

    def __init__(self, **kwargs):
        # No max_length: its validator would keep the setting's value when the field was built (one
        # instance serves a thread's requests); the limit is read on every call below.
        super().__init__(allow_empty=False, min_length=1, **kwargs)

    def to_internal_value(self, data):
        # Counted before each message is validated: a body of 30,000 tiny messages is refused at once.
        limit = settings.ROUTERHUB_MAX_MESSAGES
        if isinstance(data, list) and len(data) > limit:
            raise serializers.ValidationError(f"Ensure this field has no more than {limit} elements.")
        messages = super().to_internal_value(data)
        check_messages(messages)
        return messages


class RouteOptionsSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """How to route: the options of /api/v1/route, and of the gateway's ``routerhub`` object."""

    models = serializers.ListField(
        child=StrictCharField(max_length=LLM_NAME_MAX_LENGTH),
        required=False,
        allow_empty=False,
        min_length=1,
        max_length=500,
        help_text="Only consider these LLMs.",
    )
    locals()["lambda"] = StrictFloatField(
        required=False,
        min_value=0,
        max_value=MAX_LAMBDA,
        help_text=f"Cost weight λ in argmin loss + λ·cost (USD), from 0 to {MAX_LAMBDA:g}: at that weight the "
        "smallest cost difference budgets count outweighs any quality difference. Omit to pace λ to the budget.",
    )
    quality_target = StrictFloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="Choose the cheapest LLM whose predicted quality reaches this.",
    )
    max_cost_usd = StrictFloatField(
        required=False,
        min_value=0,
        help_text="Never choose an LLM estimated to cost more than this for the prompt.",
    )
    strategy = serializers.ChoiceField(
        choices=sorted(STRATEGIES),
        required=False,
        help_text="Route with the newest state fitted with this strategy (default: the active state).",
    )


# --- output pieces --------------------------------------------------------------------------------


class LlmRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    api_base = serializers.CharField(help_text="OpenAI-compatible base URL to send the prompt to.")
    api_model = serializers.CharField(help_text="Model id to send to api_base.")


class AlternativeSerializer(serializers.Serializer):
    name = serializers.CharField()
    predicted_quality = serializers.FloatField()
    estimated_cost_usd = serializers.FloatField()


class BudgetStatusSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    period = serializers.ChoiceField(choices=["day", "week", "month"])
    limit_usd = serializers.FloatField()
    spent_usd = serializers.FloatField(
        help_text="Counted against the limit: reservations of requests, corrected by feedback."
    )
    remaining_usd = serializers.FloatField()
    overage_usd = serializers.FloatField(
        help_text="Routed after the budget was spent (policy 'cheapest'); never counted in spent_usd."
    )
    period_ends_at = serializers.DateTimeField(source="ends_at", help_text="When the budget resets (UTC).")
    when_spent = serializers.ChoiceField(choices=["reject", "cheapest"])


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    budget = serializers.DictField(
        required=False, help_text="With code budget_exhausted: the budget and when it resets."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- what the schema generator does not see ------------------------------------------------------


class StrictInputSchema(OpenApiSerializerExtension):
    """A serializer that refuses unknown fields says so (``additionalProperties: false``), with the
    rules it states over several fields (``schema_constraints``)."""

    target_class = RejectUnknownFieldsMixin
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False, **self.target.schema_constraints}


class ChatFieldSchema(OpenApiSerializerFieldExtension):
    """A chat's length limit (a setting, read when the schema is made) and its user turn with text."""

    target_class = ChatField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "maxItems": settings.ROUTERHUB_MAX_MESSAGES, "not": {"items": {"not": USER_TURN_WITH_TEXT}}}


__all__ = [
    "AlternativeSerializer",
    "BudgetStatusSerializer",
    "ChatField",
    "ErrorSerializer",
    "LlmRefSerializer",
    "MessageSerializer",
    "OpenApiTypes",
    "RejectUnknownFieldsMixin",
    "StrictCharField",
    "StrictFloatField",
    "StrictIntegerField",
]

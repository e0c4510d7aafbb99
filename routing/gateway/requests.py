"""A ``/v1/chat/completions`` body, checked and split into what routing needs and what goes upstream.

The body is untrusted JSON first (``routing/json_checks.py``, as under ``/api/``: no NUL or lone
surrogate anywhere, bounded depth, at most ``ROUTERHUB_MAX_MESSAGES`` messages, finite numbers), then
an OpenAI chat. What routerhub reads is checked (``model``, ``messages``, ``stream``,
``stream_options``, ``max_tokens`` / ``max_completion_tokens``, ``n``, ``prediction`` and the
``routerhub`` object); every other field is sorted by what it does to the bill:

- fields whose whole cost is tokens at the LLM's prices (:data:`TOKEN_PRICED`: ``temperature``,
  ``tools``, ``response_format``, …) go to the LLM unchanged — their strings are counted in the
  reservation;
- any other field, or one of those set to a value billed otherwise (``service_tier`` but ``auto`` or
  ``default``, ``modalities`` beyond text, tools of a built-in type), goes only to an LLM whose
  metadata accepts and prices it (``registry/gateway_fields.py``); none: a 400 naming the field.

The reservation is the most the call can bill (``ChatRequest.input_tokens``, ``output_tokens``). The
upstream body is the client's, with ``model`` replaced per attempt, ``routerhub`` removed,
``max_tokens`` set to what was reserved when the client sets no output limit, and, for streams,
``stream_options.include_usage`` on.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from registry.tokens import text_tokens
from routing.apis.serializers import RouteOptionsSerializer
from routing.exceptions import UnacceptableJSON
from routing.gateway.errors import invalid
from routing.json_checks import MAX_DEPTH, check_json
from routing.prompt_text import (
    ChatInput,
    chat_input_tokens,
    embeddable,
    message_text,
    request_and_context,
    strings_of,
)
from routing.services.gateway import RoutingOptions

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


# Fields of OpenAI's chat API whose whole cost is tokens at the LLM's prices that the reservation
# counts: input (every string sent) and output (bounded by max_tokens × n).
TOKEN_PRICED = frozenset(
    {
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "metadata",
        "parallel_tool_calls",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "stop",
        "store",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
    }
)
# What routerhub reads itself (never a prompt: not counted as input text).
READ = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "prediction",
        "routerhub",
    }
)
# More output than any LLM writes in one answer; a larger limit is a 400, not a reservation no column holds.
MAX_OUTPUT_TOKENS = 1_000_000
MAX_CHOICES = 128  # OpenAI's own limit on n
TOOL_TYPES = ("function", "custom")  # tools the LLM only reads and calls back: no built-in service billed


@dataclass(frozen=True)
class ChatRequest:
    model: str
    stream: bool
    client_wants_usage: bool
    prompt: ChatInput  # its input tokens, as routerhub counts them: what metering holds usage to
    output_tokens: int  # the most output it can bill: its output limit × n (+ a prediction's tokens)
    expected_output_tokens: int  # what routing weighs: the expected output, within that limit, × n
    options: RoutingOptions
    upstream_body: dict  # without "model", which each attempt sets
    messages: list[dict]
    fields: tuple[str, ...] = ()  # fields that bill beyond token prices: only LLMs that accept them

    @property
    def input_tokens(self) -> int:
        """The most input the call can bill, as routerhub counts it: what it reserves."""
        return self.prompt.most

    def route_input(self, *, routed: bool) -> tuple[str, int]:
        """(text recorded — and routed on, for routed models; tokens sent to the LLM)."""
        has_user = any(m["role"] == "user" and message_text(m.get("content")).strip() for m in self.messages)
        if routed and not has_user:
            raise invalid("Routing needs a user message with text.", "messages")
        text = (
            request_and_context(self.messages)[0]
            if has_user
            else "\n".join(message_text(m.get("content")) for m in self.messages)
        )
        return embeddable(text), self.input_tokens


def _bounded_int(body: dict, name: str, most: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer from 1 to {most:,}.", name, "invalid_type")
    if not 1 <= value <= most:
        raise invalid(f"'{name}' must be an integer from 1 to {most:,}; it is {value:,}.", name, "invalid_value")
    return value


def billed_otherwise(name: str, value) -> bool:
    """Whether setting ``name`` to ``value`` makes the provider bill beyond the LLM's token prices (or
    routerhub cannot tell: a field it does not know)."""
    if value is None or name in READ:
        return False
    if name == "service_tier":
        return value not in ("auto", "default")
    if name == "modalities":
        return not (isinstance(value, list) and all(modality == "text" for modality in value))
    if name == "tools":
        return not isinstance(value, list) or not all(
            isinstance(tool, dict) and tool.get("type", "function") in TOOL_TYPES for tool in value
        )
    return name not in TOKEN_PRICED


def _check_messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array of messages.", "messages", "invalid_type")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(
                f"messages[{i}] must be an object with 'role' and 'content'.", f"messages[{i}]", "invalid_type"
            )
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}.", f"messages[{i}].role", "invalid_value"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            if not (isinstance(content, list) and all(isinstance(part, dict) for part in content)):
                raise invalid(
                    f"messages[{i}].content must be a string or an array of content parts.",
                    f"messages[{i}].content",
                    "invalid_type",
                )
            for part in content:
                if not isinstance(part.get("type", "text"), str):
                    raise invalid(
                        f"messages[{i}].content: a part's 'type' must be a string.",
                        f"messages[{i}].content",
                        "invalid_type",
                    )
                if part.get("type", "text") == "text" and not isinstance(part.get("text"), str):
                    raise invalid(
                        f"messages[{i}].content: a text part needs a string 'text'.",
                        f"messages[{i}].content",
                        "invalid_type",
                    )
        total += len(message_text(content))
    if total > settings.ROUTERHUB_MAX_PROMPT_CHARS:
        raise invalid(
            f"The messages are too long: {total:,} characters; at most {settings.ROUTERHUB_MAX_PROMPT_CHARS:,}.",
            "messages",
            "context_length_exceeded",
        )


def _options(value) -> RoutingOptions:
    if value is None:
        return RoutingOptions()
    if not isinstance(value, dict):
        raise invalid("'routerhub' must be an object of routing options.", "routerhub", "invalid_type")
    serializer = RouteOptionsSerializer(data=value)
    if not serializer.is_valid():
        name, problems = next(iter(serializer.errors.items()))
        message = problems[0] if isinstance(problems, list) and problems else problems
        raise invalid(f"routerhub.{name}: {message}", f"routerhub.{name}")
    data = serializer.validated_data
    return RoutingOptions(
        models=data.get("models"),
        lam=data.get("lambda"),
        quality_target=data.get("quality_target"),
        max_cost_usd=data.get("max_cost_usd"),
        strategy=data.get("strategy"),
    )


def chat_request(body) -> ChatRequest:
    """Validate a parsed body; raises ``GatewayError`` (400, naming the field) on bad input."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_type")
    try:
        check_json(
            body,
            max_depth=MAX_DEPTH,
            max_items={"messages": settings.ROUTERHUB_MAX_MESSAGES},
        )
    except UnacceptableJSON as error:
        raise invalid(str(error), error.path or None) from None
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' is required: routerhub-auto, routerhub-auto:<preset> or an LLM's name.", "model")
    if "messages" not in body:
        raise invalid("'messages' is required.", "messages", "missing_required_parameter")
    _check_messages(body["messages"])
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", "stream", "invalid_type")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("'stream_options' must be an object.", "stream_options", "invalid_type")
    # Either limit may be the one the upstream applies: the larger bounds the answer.
    limits = [_bounded_int(body, name, MAX_OUTPUT_TOKENS) for name in ("max_tokens", "max_completion_tokens")]
    per_choice = max((limit for limit in limits if limit is not None), default=None)
    choices = _bounded_int(body, "n", MAX_CHOICES) or 1
    options = _options(body.get("routerhub"))
    upstream = {key: value for key, value in body.items() if key not in ("model", "routerhub")}
    if per_choice is None:  # nothing would bound what the LLM writes, and bills
        per_choice = upstream["max_tokens"] = settings.ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS
    client_wants_usage = bool(stream and stream_options and stream_options.get("include_usage"))
    if stream:
        upstream["stream_options"] = {**(stream_options or {}), "include_usage": True}  # for metering
    # A predicted output's tokens that the answer does not use are billed as output too.
    predicted = body.get("prediction")
    predicted_tokens = text_tokens("\n".join(strings_of(predicted, []))) if predicted is not None else 0
    return ChatRequest(
        model=model,
        stream=bool(stream),
        client_wants_usage=client_wants_usage,
        prompt=chat_input_tokens(body["messages"], {key: value for key, value in body.items() if key not in READ}),
        output_tokens=per_choice * choices + predicted_tokens,
        expected_output_tokens=min(per_choice, settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS) * choices,
        options=options,
        upstream_body=upstream,
        messages=body["messages"],
        fields=tuple(name for name, value in body.items() if billed_otherwise(name, value)),
    )

"""A ``/v1/chat/completions`` body, checked and split into what routing needs and what goes upstream.

Only what routerhub reads is checked (``model``, ``messages``, ``stream``, ``stream_options``,
``max_tokens`` / ``max_completion_tokens``, ``n`` and the ``routerhub`` object); every other field is
passed to the LLM unchanged, for the LLM to judge. The upstream body is the client's, with ``model``
replaced per attempt, ``routerhub`` removed and, for streams, ``stream_options.include_usage`` on.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from routing.apis.serializers import RouteOptionsSerializer
from routing.gateway.errors import invalid
from routing.prompt_text import TOKENS_PER_MESSAGE, embeddable, estimated_tokens, message_text, request_and_context
from routing.services.gateway import RoutingOptions

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class ChatRequest:
    model: str
    stream: bool
    client_wants_usage: bool
    output_tokens: int | None  # the most output the call can bill: max_tokens × n, when given
    options: RoutingOptions
    upstream_body: dict  # without "model", which each attempt sets
    messages: list[dict]

    def route_input(self, *, routed: bool) -> tuple[str, int]:
        """(text recorded — and routed on, for routed models; tokens sent to the LLM)."""
        sent = "\n".join(message_text(m.get("content")) for m in self.messages)
        tokens = estimated_tokens(sent) + TOKENS_PER_MESSAGE * len(self.messages)
        has_user = any(m["role"] == "user" and message_text(m.get("content")).strip() for m in self.messages)
        if routed and not has_user:
            raise invalid("Routing needs a user message with text.", "messages")
        text = request_and_context(self.messages)[0] if has_user else sent
        return embeddable(text), tokens


def _positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(f"'{name}' must be a positive integer.", name, "invalid_type")
    return value


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
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    choices = _positive_int(body, "n") or 1
    options = _options(body.get("routerhub"))
    upstream = {key: value for key, value in body.items() if key not in ("model", "routerhub")}
    client_wants_usage = bool(stream and stream_options and stream_options.get("include_usage"))
    if stream:
        upstream["stream_options"] = {**(stream_options or {}), "include_usage": True}  # for metering
    return ChatRequest(
        model=model,
        stream=bool(stream),
        client_wants_usage=client_wants_usage,
        # What the reservation counts on: max_tokens per choice when given, else the expected length.
        output_tokens=None
        if max_tokens is None and choices == 1
        else (max_tokens or settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS) * choices,
        options=options,
        upstream_body=upstream,
        messages=body["messages"],
    )

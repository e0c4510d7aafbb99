"""What a route request is routed on, and how many tokens the chosen LLM will be sent.

A chat is routed on its last user turn — the request. The system prompt and earlier turns (newest
first, up to ``ROUTERHUB_ROUTING_CONTEXT_CHARS``) are its *context*: they are embedded on their own
and nudge the request's embedding with a fixed weight w (``ROUTERHUB_ROUTING_CONTEXT_WEIGHT``),

    φ = normalise(φ(request) + w · φ(context)),

so they inform the route (a follow-up such as "and for n = 5?" leans towards the conversation's
topic) but can never swamp it, however long they are: the routed vector stays within a fixed angle
of the request's own: cosine ≥ √(1 − w²) whatever the context (0.968 for w = 0.25).
Mixing texts before embedding could not promise that: MiniLM averages over word pieces, so a
generic "You are a helpful assistant." longer than a short maths question outweighs it, and the
question lands among greetings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from registry.tokens import count_tokens

# OpenAI-style chats add a few tokens of framing per message (role markers, separators).
TOKENS_PER_MESSAGE = 4


def message_text(content) -> str:
    """Text of a chat message's content: a string, or a list of parts of which the text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(
        part.get("text", "") for part in content if isinstance(part, dict) and part.get("type", "text") == "text"
    )


@dataclass(frozen=True)
class RoutedInput:
    request: str  # the last user turn (or the prompt): what is routed on, and recorded with the decision
    context: str  # earlier turns and system prompts, newest first, bounded; "" for none
    input_tokens: int  # what the chosen LLM will be sent (a whole chat, not only the routed turn)


def request_and_context(messages: list[dict]) -> tuple[str, str]:
    """The last user turn, and the turns before it (newest first) up to ``ROUTERHUB_ROUTING_CONTEXT_CHARS``."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    request = message_text(messages[last_user]["content"]).strip()
    budget = settings.ROUTERHUB_ROUTING_CONTEXT_CHARS
    context = []
    for message in reversed(messages[:last_user]):
        if budget <= 0:
            break
        text = message_text(message["content"]).strip()
        if text:
            context.append(text[-budget:])  # the end of a long turn is nearest the question
            budget -= len(context[-1])
    return request, "\n\n".join(context)


def routed_embedding(request_vector: np.ndarray, context_vector: np.ndarray | None) -> np.ndarray:
    """φ(request) nudged towards φ(context) by ``ROUTERHUB_ROUTING_CONTEXT_WEIGHT``, unit length (module docstring)."""
    if context_vector is None:
        return request_vector
    mixed = np.asarray(request_vector, dtype=np.float32) + settings.ROUTERHUB_ROUTING_CONTEXT_WEIGHT * np.asarray(
        context_vector, dtype=np.float32
    )
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else np.asarray(request_vector, dtype=np.float32)


def embeddable(text: str) -> str:
    """``text`` cut to ``ROUTERHUB_EMBED_MAX_CHARS``: well past what the embedder reads, so the
    embedding is unchanged, but a 100k-character prompt is not tokenised in full on every request."""
    return text[: settings.ROUTERHUB_EMBED_MAX_CHARS]


def estimated_tokens(text: str) -> int:
    """Tokens of ``text``: counted exactly up to ``TOKEN_SAMPLE_CHARS``, extrapolated beyond.

    Only a cost estimate (the target LLM's tokenizer is unknown anyway, and feedback replaces the
    estimate by the real count): tokenising a 200,000-character prompt in full would cost ~80 ms.
    """
    if len(text) <= TOKEN_SAMPLE_CHARS:
        return count_tokens([text])[0]
    sample = count_tokens([text[:TOKEN_SAMPLE_CHARS]])[0]
    return round(sample * len(text) / TOKEN_SAMPLE_CHARS)


TOKEN_SAMPLE_CHARS = 4000


def route_input(*, prompt: str | None = None, messages: list[dict] | None = None) -> RoutedInput:
    """The request and context to route on (each cut to what is embedded), and the tokens the chosen LLM will be sent."""
    if messages is not None:
        sent = "\n".join(message_text(m.get("content")) for m in messages)
        request, context = request_and_context(messages)
        return RoutedInput(
            embeddable(request), embeddable(context), estimated_tokens(sent) + TOKENS_PER_MESSAGE * len(messages)
        )
    return RoutedInput(embeddable(prompt), "", estimated_tokens(prompt))

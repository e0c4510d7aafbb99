"""What a route request is routed on, and how many tokens the chosen LLM will be sent.

A chat is routed on its last user turn plus a bounded amount of the turns before it. The user turn
comes *first* in the routed text: the embedder reads only the beginning of a text (MiniLM stops at
256 word pieces, ~1,000–1,500 characters of English), and the question being asked now says most
about which LLM can answer it.
"""

from __future__ import annotations

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


def routed_text_of_messages(messages: list[dict]) -> str:
    """The last user turn, then earlier turns (newest first) up to ``ROUTERHUB_ROUTING_CONTEXT_CHARS``."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    question = message_text(messages[last_user]["content"]).strip()
    budget = settings.ROUTERHUB_ROUTING_CONTEXT_CHARS
    context = []
    for message in reversed(messages[:last_user]):
        if budget <= 0:
            break
        text = message_text(message["content"]).strip()
        if text:
            context.append(text[-budget:])  # the end of a long turn is nearest the question
            budget -= len(context[-1])
    return "\n\n".join([question, *context])


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


def route_input(*, prompt: str | None = None, messages: list[dict] | None = None) -> tuple[str, int]:
    """(text to route on, cut to what is embedded; tokens the chosen LLM will be sent)."""
    if messages is not None:
        sent = "\n".join(message_text(m.get("content")) for m in messages)
        return embeddable(routed_text_of_messages(messages)), estimated_tokens(sent) + TOKENS_PER_MESSAGE * len(
            messages
        )
    return embeddable(prompt), estimated_tokens(prompt)

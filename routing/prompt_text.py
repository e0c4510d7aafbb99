"""What a route request is routed on, and how many tokens the chosen LLM will be sent.

A chat is routed on its last user turn with text — the request. The system prompt and earlier turns
(newest first, up to :data:`CONTEXT_CHARS`) are its *context*: they are embedded on their own
and nudge the request's embedding with a fixed weight w (:data:`CONTEXT_WEIGHT`),

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

from registry.tokens import text_tokens

# The framing an OpenAI-style chat adds to its messages' text, as OpenAI counts it: 3 tokens per
# message (role markers, separators) and 3 that start the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
#: Characters of earlier turns and system prompts that inform the route of the last user turn.
CONTEXT_CHARS = 1000
#: The weight w of the context's embedding next to the turn's own (module docstring).
CONTEXT_WEIGHT = 0.25
#: Characters embedded at most: MiniLM reads 256 word pieces (~1,500 characters), so cutting here
#: leaves embeddings unchanged and keeps long prompts from being tokenised in full.
EMBED_MAX_CHARS = 4000


def chat_framing_tokens(messages: list) -> int:
    return TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY


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


@dataclass(frozen=True)
class ChatInput:
    """The input tokens of an OpenAI chat, as routerhub counts them (:func:`chat_input_tokens`)."""

    # The messages' text and the chat's framing: what any provider bills at least.
    text: int
    # Every other string sent (names, tool calls, tool definitions, schemas, …): each provider renders
    # them its own way.
    other: int
    # The ceilings of its image, audio and file parts: each provider bills them at its own rates.
    media: int

    @property
    def most(self) -> int:
        """The most input an LLM may bill for the chat: what a call reserves."""
        return self.text + self.other + self.media


def request_and_context(messages: list[dict]) -> tuple[str, str]:
    """The last user turn with text (an image or audio alone gives nothing to route on), and the turns
    before it (newest first) up to :data:`CONTEXT_CHARS`."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    last_user = ([i for i in users if message_text(messages[i]["content"]).strip()] or users)[-1]
    request = message_text(messages[last_user]["content"]).strip()
    budget = CONTEXT_CHARS
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
    """φ(request) nudged towards φ(context) by :data:`CONTEXT_WEIGHT`, unit length (module docstring)."""
    if context_vector is None:
        return request_vector
    mixed = np.asarray(request_vector, dtype=np.float32) + CONTEXT_WEIGHT * np.asarray(context_vector, dtype=np.float32)
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else np.asarray(request_vector, dtype=np.float32)


def embeddable(text: str) -> str:
    """``text`` cut to :data:`EMBED_MAX_CHARS`: well past what the embedder reads, so the
    embedding is unchanged, but a 100k-character prompt is not tokenised in full on every request."""
    return text[:EMBED_MAX_CHARS]


# Content parts that are not text, by type: the ceiling they are counted at (MEDIA_PART_TOKENS) and
# where their payload is (a URL or base64 data: never counted as text).
MEDIA_PARTS = {
    "image_url": ("image", ("image_url", "url")),
    "input_audio": ("audio", ("input_audio", "data")),
    "file": ("file", ("file", "file_data")),
}


# What a gateway call reserves for each image, audio and file part: ceilings of the input tokens an
# LLM bills for one, each provider at its own rates.
MEDIA_PART_TOKENS = {"image": 5000, "audio": 10_000, "file": 50_000}


def chat_input_tokens(messages: list[dict], others: dict) -> ChatInput:
    """The input tokens of an OpenAI chat, as far as routerhub can tell, each string counted exactly:
    the messages' text and the chat's framing (:func:`chat_framing_tokens`); every other string sent
    with them (names, tool calls and their arguments; in ``others``, the body's other fields: tool
    definitions, response schemas, … — object keys below the top level too, since a schema's property
    names are read by the LLM); and a ceiling per image, audio or file part (an assistant's earlier
    ``audio`` counts as one; a part of a type routerhub does not know counts as a file, its strings
    as other strings)."""
    ceilings = MEDIA_PART_TOKENS
    texts = [message_text(m.get("content")) for m in messages]
    strings: list[str] = []
    media = 0
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            kind = part.get("type", "text")
            if kind == "text":
                continue  # in message_text
            if kind in MEDIA_PARTS:
                ceiling, (holder, payload) = MEDIA_PARTS[kind]
                media += ceilings[ceiling]
                part = {**part, holder: _without(part.get(holder), payload)}
            elif kind != "refusal":
                media += ceilings["file"]
            strings_of(part, strings)
        for key, value in message.items():
            if key == "audio" and value is not None:
                media += ceilings["audio"]
            elif key not in ("role", "content"):
                strings_of(value, strings)
    for value in others.values():
        if isinstance(value, (str, dict, list)):  # not the numbers and flags that set the call up
            strings_of(value, strings)
    # Texts joined by line breaks count exactly the sum of their counts (whitespace separates words);
    # a long text is counted off the GIL (registry/tokens.py).
    return ChatInput(
        text=text_tokens("\n".join(texts)) + chat_framing_tokens(messages),
        other=text_tokens("\n".join(strings)),
        media=media,
    )


def strings_of(value, out: list[str]) -> list[str]:
    """Every string in ``value`` — object keys too — and every number written out, appended to ``out``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(str(item))
    return out


def _without(holder, payload: str):
    return {k: v for k, v in holder.items() if k != payload} if isinstance(holder, dict) else None


def route_input(*, prompt: str | None = None, messages: list[dict] | None = None) -> RoutedInput:
    """The request and context to route on (each cut to what is embedded), and the tokens the chosen LLM will be sent."""
    if messages is not None:
        sent = "\n".join(message_text(m.get("content")) for m in messages)
        request, context = request_and_context(messages)
        return RoutedInput(embeddable(request), embeddable(context), text_tokens(sent) + chat_framing_tokens(messages))
    return RoutedInput(embeddable(prompt), "", text_tokens(prompt))

"""A streamed chat completion (Server-Sent Events), relayed event by event.

:class:`EventRelay` is fed the upstream's bytes as they arrive and returns, for each *complete*
event, what the client gets: the same event with ``model`` set to the routed LLM's name. Nothing
waits for more than one event, so the client sees every chunk as soon as the upstream sends it.
On the way it keeps what metering needs: the ``usage`` of the final chunk (requested upstream with
``stream_options.include_usage``; dropped again when the client did not ask for it), and the text
of the answer, to count tokens when an upstream reports no usage or the stream is cut short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def usage_tokens(usage) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) of an OpenAI ``usage`` object; None for what is missing."""
    if not isinstance(usage, dict):
        return None, None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def answer_text(message: dict) -> str:
    """The text an answer (a message or a streamed delta) costs output tokens for: content, refusal,
    reasoning and tool-call arguments."""
    if not isinstance(message, dict):
        return ""
    parts = []
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str):
            parts.append(value)
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.extend(str(function.get(key) or "") for key in ("name", "arguments"))
    return "".join(parts)


@dataclass
class EventRelay:
    model: str  # what every chunk's "model" becomes
    client_wants_usage: bool  # the client asked for stream_options.include_usage itself
    usage: dict | None = None
    done: bool = False
    upstream_error: dict | None = None  # an error event sent by the upstream mid-stream
    chunks: int = 0
    _text: list[str] = field(default_factory=list)
    _buffer: bytes = b""

    @property
    def text(self) -> str:
        return "".join(self._text)

    def feed(self, data: bytes) -> bytes:
        """The complete events in ``data`` (plus what was buffered), rewritten; b"" while one is incomplete."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                break
            event, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            out.append(self._event(event))
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left when the upstream closes: an unterminated last event, completed."""
        rest, self._buffer = self._buffer, b""
        return self._event(rest.rstrip(b"\n") + b"\n\n") if rest.strip() else b""

    def _event(self, event: bytes) -> bytes:
        lines = event.rstrip(b"\n").split(b"\n")
        data_lines = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
        if not data_lines:
            return event  # a comment (": keep-alive") or a field the client may want: as it came
        data = b"\n".join(data_lines)
        if data.strip() == b"[DONE]":
            self.done = True
            return DONE
        try:
            payload = json.loads(data)
        except ValueError:
            return event
        if not isinstance(payload, dict):
            return event
        if "error" in payload and "choices" not in payload:
            self.upstream_error = payload["error"] if isinstance(payload["error"], dict) else {"message": str(payload)}
            return sse_event(payload)
        self.chunks += 1
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if "usage" in payload and not self.client_wants_usage:
            if self.usage is payload["usage"] and not payload.get("choices"):
                return b""  # the usage-only chunk asked for by routerhub, not by the client
            payload = {key: value for key, value in payload.items() if key != "usage"}
        for choice in payload.get("choices") or []:
            if isinstance(choice, dict):
                self._text.append(answer_text(choice.get("delta") or {}))
        if "model" in payload:
            payload["model"] = self.model
        return sse_event(payload)

"""A streamed chat completion (Server-Sent Events), relayed event by event.

:class:`EventRelay` is fed the upstream's bytes as they arrive and returns, for each *complete*
event, what the client gets: the same event with ``model`` set to the routed LLM's name. Nothing
waits for more than one event, so the client sees every chunk as soon as the upstream sends it.
On the way it keeps what metering needs: the ``usage`` of the final chunk (requested upstream with
``stream_options.include_usage``; dropped again when the client did not ask for it), and the text
of the answer, to count tokens when an upstream reports no usage or the stream is cut short.

An upstream is not trusted to be reasonable:

- Each byte is looked at a bounded number of times, however the stream is cut into chunks (an
  event sent a byte at a time is not searched again from its start on every byte).
- One event may hold at most :data:`MAX_EVENT_BYTES`, the whole stream :data:`MAX_ANSWER_BYTES`:
  beyond, :class:`~routing.upstream.http.AnswerTooLarge` is raised and the caller cuts the stream.
- The upstream's API key never reaches the client, not even cut in two across events: text that
  could be the start of the key is held back until the next event shows what follows (:class:`Scrubber`).
- An error event is passed on in OpenAI's shape, naming the LLM, with the upstream's message
  stripped of addresses and secrets (``http.public_text``), never as it came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from routing.upstream.http import MAX_ANSWER_BYTES, REDACTED, AnswerTooLarge, public_text

DONE = b"data: [DONE]\n\n"
# One event: a chunk of a few tokens in practice; a provider that sends a whole answer as one event
# (or one tool call's arguments) stays well within.
MAX_EVENT_BYTES = 4 * 1024 * 1024
_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")


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
    for key in _TEXT_FIELDS:
        value = message.get(key)
        if isinstance(value, str):
            parts.append(value)
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.extend(str(function.get(key) or "") for key in ("name", "arguments"))
    return "".join(parts)


def scrub_json(value, secret: str | None):
    """``value`` (parsed JSON) with ``secret`` replaced in every string, keys included."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED) if secret in value else value
    if isinstance(value, list):
        return [scrub_json(item, secret) for item in value]
    if isinstance(value, dict):
        return {scrub_json(key, secret): scrub_json(item, secret) for key, item in value.items()}
    return value


class Scrubber:
    """Removes ``secret`` from a text that arrives in pieces (one field of a streamed answer): the
    end of a piece that could be the start of the secret is held back until the next piece, so a
    secret cut in two is still found. What is held is never more than the secret's length."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.held = ""

    def feed(self, text: str) -> str:
        text = (self.held + text).replace(self.secret, REDACTED)
        keep = self._start_of_secret_at_end(text)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held

    def _start_of_secret_at_end(self, text: str) -> int:
        """The length of the longest end of ``text`` that is a (proper) start of the secret."""
        first = self.secret[0]
        at = text.find(first, max(0, len(text) - len(self.secret) + 1))
        while at != -1:
            if self.secret.startswith(text[at:]):
                return len(text) - at
            at = text.find(first, at + 1)
        return 0


@dataclass
class EventRelay:
    model: str  # what every chunk's "model" becomes
    client_wants_usage: bool  # the client asked for stream_options.include_usage itself
    secret: str | None = None  # the upstream's API key: never passed on
    hosts: tuple[str, ...] = ()  # the upstream's host names: not shown in error messages
    usage: dict | None = None
    done: bool = False
    upstream_error: dict | None = None  # an error event sent by the upstream mid-stream (as sent)
    chunks: int = 0
    received: int = 0  # bytes fed
    scanned: int = 0  # bytes the event splitter examined (each once: the relay's work is linear)
    _text: list[str] = field(default_factory=list)
    _line: list[bytes] = field(default_factory=list)  # the pieces of an unfinished line
    _lines: list[bytes] = field(default_factory=list)  # the finished lines of an unfinished event
    _event_bytes: int = 0
    _after_cr: bool = False  # the last chunk ended with CR: a LF that starts the next one ends no line
    _scrubbers: dict = field(default_factory=dict)  # (choice, field[, tool call]) → Scrubber
    _last: dict = field(default_factory=dict)  # id and created of the last chunk (for held text's chunk)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def feed(self, data: bytes) -> bytes:
        """The complete events in ``data`` (with what came before), rewritten; b"" while one is
        incomplete. Raises ``AnswerTooLarge`` past :data:`MAX_EVENT_BYTES` or :data:`MAX_ANSWER_BYTES`."""
        self.received += len(data)
        if self.received > MAX_ANSWER_BYTES:
            raise AnswerTooLarge("a stream", MAX_ANSWER_BYTES)
        if self._after_cr and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF cut between two chunks
        self._after_cr = data[-1:] == b"\r"
        out = []
        *finished, unfinished = self._split_lines(data)
        for piece in finished:
            if piece or self._line:
                self._lines.append(b"".join([*self._line, piece]) if self._line else piece)
                self._line = []
                self._grew(len(piece))
            elif self._lines:  # a blank line ends the event
                lines, self._lines, self._event_bytes = self._lines, [], 0
                out.append(self._event(lines))
        if unfinished:
            self._line.append(unfinished)
            self._grew(len(unfinished))
        return b"".join(out)

    def _split_lines(self, data: bytes) -> list[bytes]:
        """``data`` cut at line ends (LF, CRLF or CR, as SSE allows). Only the new bytes are examined,
        each a bounded number of times; an event's earlier bytes are not looked at again."""
        self.scanned += len(data)
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data.split(b"\n")

    def _grew(self, size: int) -> None:
        self._event_bytes += size
        if self._event_bytes > MAX_EVENT_BYTES:
            raise AnswerTooLarge("an event", MAX_EVENT_BYTES)

    def flush(self) -> bytes:
        """What is left when the upstream closes: an unterminated last event, completed, and any text
        the scrubbers still hold."""
        lines = [*self._lines, b"".join(self._line)] if self._line else self._lines
        self._lines, self._line, self._event_bytes = [], [], 0
        return (self._event(lines) if lines else b"") + self._held_text()

    def _event(self, lines: list[bytes]) -> bytes:
        data_lines = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
        if not data_lines:  # a comment (": keep-alive") or a field the client may want: as it came
            return self._scrubbed(b"\n".join(lines) + b"\n\n")
        data = b"\n".join(data_lines)
        if data.strip() == b"[DONE]":
            self.done = True
            return self._held_text() + DONE
        try:
            payload = json.loads(data)
        except ValueError:
            return self._scrubbed(b"\n".join(lines) + b"\n\n")
        if not isinstance(payload, dict):
            return self._scrubbed(b"\n".join(lines) + b"\n\n")
        if "error" in payload and "choices" not in payload:
            error = payload["error"]
            self.upstream_error = error if isinstance(error, dict) else {"message": str(error)}
            return sse_event(self.error_payload())
        self.chunks += 1
        self._last = {key: payload[key] for key in ("id", "created") if key in payload}
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if "usage" in payload and not self.client_wants_usage:
            if self.usage is payload["usage"] and not payload.get("choices"):
                return b""  # the usage-only chunk asked for by routerhub, not by the client
            payload = {key: value for key, value in payload.items() if key != "usage"}
        choices = payload.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                delta = choice.get("delta")
                self._text.append(answer_text(delta or {}))
                if self.secret and isinstance(delta, dict):
                    self._scrub_delta(choice.get("index"), delta, finished=choice.get("finish_reason") is not None)
        if "model" in payload:
            payload["model"] = self.model
        return self._scrubbed(sse_event(payload))

    def error_payload(self) -> dict:
        """The upstream's error event as the client gets it: OpenAI's shape, the LLM named."""
        message = (self.upstream_error or {}).get("message")
        said = public_text(message, self.secret, hosts=self.hosts) if isinstance(message, str) else ""
        return {
            "error": {
                "message": f"The LLM {self.model} reported an error mid-stream" + (f": {said}" if said else "."),
                "type": "upstream_error",
                "param": None,
                "code": "upstream_error",
            }
        }

    def _scrub_delta(self, index, delta: dict, *, finished: bool) -> None:
        for name in _TEXT_FIELDS:
            if isinstance(delta.get(name), str):
                delta[name] = self._scrubber(index, name).feed(delta[name])
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function["arguments"] = self._scrubber(index, "arguments", call.get("index")).feed(
                    function["arguments"]
                )
        if finished:  # the choice's last chunk: nothing of it may stay held back
            for key in [key for key in self._scrubbers if key[0] == index]:
                _add_text(delta, key, self._scrubbers.pop(key).flush())

    def _scrubber(self, *key) -> Scrubber:
        scrubber = self._scrubbers.get(key)
        if scrubber is None:
            scrubber = self._scrubbers[key] = Scrubber(self.secret)
        return scrubber

    def _held_text(self) -> bytes:
        """A chunk with the text still held back (a stream that ended without its finishing chunks)."""
        choices: dict = {}
        for key, scrubber in self._scrubbers.items():
            held = scrubber.flush()
            if held:
                _add_text(choices.setdefault(key[0], {}), key, held)
        self._scrubbers.clear()
        if not choices:
            return b""
        payload = {
            **self._last,
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": None} for index, delta in choices.items()],
        }
        return self._scrubbed(sse_event(payload))

    def _scrubbed(self, event: bytes) -> bytes:
        """``event`` without the secret anywhere in it (the text fields were scrubbed across events)."""
        if self.secret and self.secret.encode() in event:
            return event.replace(self.secret.encode(), REDACTED.encode())
        return event


def _add_text(delta: dict, key: tuple, text: str) -> None:
    """Put ``text`` held back for ``key`` (see ``EventRelay._scrubber``) at the end of ``delta``."""
    if not text:
        return
    if key[1] in _TEXT_FIELDS:
        delta[key[1]] = (delta.get(key[1]) or "") + text
    else:
        delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": text}})

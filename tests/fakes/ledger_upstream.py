"""A hostile OpenAI-compatible upstream that keeps its own ledger of what it billed.

It is the provider in the budget red-team tests (``tests/processes/test_budget_redteam.py``): it
serves ``POST /v1/chat/completions`` for any model name, and each request says how it is to be
mistreated in a directive at the start of its user text, ``[rt:TAG key=value …]``:

- ``act=ok`` (default): answer ``len`` tokens (capped by the ``max_tokens`` / ``max_completion_tokens``
  it is sent) per choice, ``n`` choices, as JSON or as a stream of ``chunk`` words per event,
  ``delay`` seconds apart;
- ``act=slow``: a JSON answer generated at :data:`TOKENS_PER_SECOND` before it is sent;
- ``act=timeout``: take the request and generate without ever sending a byte;
- ``act=error``: answer ``status`` (default 503) at once;
- ``act=drop``: a stream cut after ``drop`` content events; a JSON answer cut half-way;
- ``act=forever``: stream the answer, then keep-alive comments until the caller leaves;
- ``act=big_event``: a stream with one event of :data:`BIG_BYTES` in the middle;
- ``act=big_json``: a JSON answer of :data:`BIG_BYTES`;
- ``usage=honest|none|low|high|garbage``: what ``usage`` says (the ledger always keeps the truth).

**The ledger** is what a provider would bill, counted by the fake's own rules and never by what the
caller estimated: input tokens = 3 + Σ per message (3 + the tokens of its text parts, tool-call
names and arguments) + :data:`IMAGE_PART_TOKENS` per image part + the tokens of every string value
of ``tools`` and ``response_format``; output tokens = what it generated until it stopped (a stream:
the content it sent; a call the caller left or timed out: :data:`TOKENS_PER_SECOND` × the time it
held it, at most the answer). A 5xx bills nothing; keep-alive comments and padding are no tokens.
Fields that change the price are billed as a provider bills them: ``service_tier: "priority"`` at
:data:`PRIORITY_MULTIPLIER` × the prices, audio output (``modalities``) at
:data:`AUDIO_OUTPUT_MULTIPLIER` × the output price, ``web_search_options`` with a fee of
:data:`WEB_SEARCH_FEE_USD` per call. Tokens are counted with the WordPiece tokenizer routerhub also
uses as its stand-in (an empty text is 0 tokens here).

``GET /ledger`` returns ``{"in_progress": n, "calls": [...]}``. Run it in its own process, so that
its counting and its 50 MB answers take nothing from the caller's process:

    python -m tests.fakes.ledger_upstream --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

TAG = re.compile(r"\[rt:(?P<tag>[A-Za-z0-9_-]+)(?P<options>[^\]]*)\]")
VOCABULARY = "river stone light green table music house paper water cloud field north south apple bread".split()
IMAGE_PART_TOKENS = 85  # what a provider bills for a small (low-detail) image
TOKENS_PER_SECOND = 50.0  # generation speed while a call is held
PRIORITY_MULTIPLIER = 2.0
AUDIO_OUTPUT_MULTIPLIER = 8.0
WEB_SEARCH_FEE_USD = 0.03
BIG_BYTES = 50 * 1024 * 1024
HIGH_USAGE_TOKENS = 10_000_000
TAIL_SECONDS = 1.0  # content sent this long before a caller was seen leaving may never have reached it
KEEP_ALIVE_SECONDS = 0.3
# Bodies this large are counted in another process: the tokenizer holds the GIL (a megabyte takes
# seconds on a busy machine), and the event loop must keep answering the other calls meanwhile.
COUNT_ELSEWHERE_BYTES = 100_000


def tokens(text: str) -> int:
    from registry.tokens import count_tokens

    return count_tokens([text])[0] if text else 0


def _strings(value) -> list[str]:
    """Every string value inside ``value`` (not the keys)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def billed_input_tokens(body: dict) -> int:
    """The prompt as this provider bills it (module docstring)."""
    texts: list[str] = []
    total = 3
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += 3
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    total += IMAGE_PART_TOKENS
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts.extend(str(function.get(key) or "") for key in ("name", "arguments"))
    for name in ("tools", "response_format"):
        texts.extend(_strings(body.get(name)))
    return total + sum(tokens(text) for text in texts if text)


@dataclass
class Options:
    act: str = "ok"
    length: int = 40
    chunk: int = 4
    delay: float = 0.0
    usage: str = "honest"
    status: int = 503
    drop: int = 3
    hold: float = 60.0

    @classmethod
    def parse(cls, text: str) -> Options:
        found = dict(pair.split("=", 1) for pair in text.split() if "=" in pair)
        options = cls()
        for key, value in found.items():
            name = "length" if key == "len" else key
            if hasattr(options, name):
                current = getattr(options, name)
                setattr(options, name, type(current)(value))
        return options


@dataclass
class Billed:
    """One request as the provider saw and billed it."""

    tag: str
    model: str
    stream: bool
    act: str
    usage: str
    status: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    audio_output: bool = False  # output billed as audio tokens
    price_multiplier: float = 1.0
    fee_usd: float = 0.0
    ended: str = ""  # complete, dropped (by the fake), disconnected (by the caller), refused, oversized
    tail_tokens: int = 0  # output sent within TAIL_SECONDS before the caller was seen leaving
    max_tokens_sent: int | None = None
    n: int = 1
    body_bytes: int = 0
    started: float = field(default_factory=time.time)
    finished: float = 0.0


class LedgerUpstream:
    """The ASGI application (module docstring)."""

    def __init__(self) -> None:
        self.calls: list[Billed] = []
        self.in_progress = 0
        self._counter: ProcessPoolExecutor | None = None

    async def __call__(self, scope, receive, send):
        if scope["method"] == "GET" and scope["path"].rstrip("/").endswith("/ledger"):
            calls = [asdict(call) for call in self.calls]
            return await _send_json(send, 200, {"in_progress": self.in_progress, "calls": calls})
        raw = bytearray()
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        call, body, options = self._parse(bytes(raw))
        call.body_bytes = len(raw)
        self.in_progress += 1
        disconnected = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, disconnected))
        try:
            if body is None:
                error = {"error": {"message": "body is not a JSON object", "type": "invalid_request"}}
                await _send_json(send, 400, error)
            else:
                await self._answer(call, body, options, send, disconnected)
        finally:
            watcher.cancel()
            self.in_progress -= 1
            call.finished = time.time()
            self.calls.append(call)

    @staticmethod
    def _parse(raw: bytes) -> tuple[Billed, dict | None, Options]:
        found = TAG.search(raw.decode("utf-8", "replace"))
        tag, options = (found["tag"], Options.parse(found["options"])) if found else ("", Options())
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return (
                Billed(tag=tag, model="", stream=False, act=options.act, usage=options.usage, status=400),
                None,
                options,
            )
        call = Billed(
            tag=tag,
            model=str(body.get("model")),
            stream=body.get("stream") is True,
            act=options.act,
            usage=options.usage,
        )
        return call, body, options

    async def _answer(self, call: Billed, body: dict, options: Options, send, disconnected: asyncio.Event) -> None:
        if options.act == "error":
            call.status, call.ended = options.status, "refused"
            error = {"error": {"message": f"hostile failure {options.status}", "type": "server_error"}}
            await _send_json(send, options.status, error)
            return
        call.input_tokens = await self._input_tokens(body, call.body_bytes)
        call.max_tokens_sent = _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))
        call.n = min(_positive(body.get("n")) or 1, 10)
        call.price_multiplier = PRIORITY_MULTIPLIER if body.get("service_tier") == "priority" else 1.0
        call.audio_output = "audio" in (body.get("modalities") or [])
        call.fee_usd = WEB_SEARCH_FEE_USD if "web_search_options" in body else 0.0
        length = min(options.length, call.max_tokens_sent or options.length)
        answers = [" ".join(VOCABULARY[(i + j) % len(VOCABULARY)] for j in range(length)) for i in range(call.n)]
        if options.act == "timeout":
            await self._hold(call, answers, options.hold, disconnected)
        elif call.stream:
            await self._stream(call, body, answers, options, send, disconnected)
        else:
            await self._json(call, answers, options, send, disconnected)

    async def _input_tokens(self, body: dict, size: int) -> int:
        if size < COUNT_ELSEWHERE_BYTES:
            return billed_input_tokens(body)
        if self._counter is None:
            self._counter = ProcessPoolExecutor(max_workers=1, initializer=_die_with_parent)
        return await asyncio.get_running_loop().run_in_executor(self._counter, billed_input_tokens, body)

    async def _hold(self, call: Billed, answers: list[str], seconds: float, disconnected: asyncio.Event) -> bool:
        """Generate for ``seconds`` without sending; False (billed what was generated) if the caller left."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(disconnected.wait(), seconds)
        except TimeoutError:
            return True
        total = sum(tokens(a) for a in answers)
        call.output_tokens = min(total, int(TOKENS_PER_SECOND * (time.monotonic() - started)))
        call.ended = "disconnected"
        return False

    async def _json(self, call, answers, options, send, disconnected) -> None:
        if options.act == "slow":
            seconds = sum(tokens(a) for a in answers) / TOKENS_PER_SECOND
            if not await self._hold(call, answers, seconds, disconnected):
                return
        call.output_tokens = sum(tokens(a) for a in answers)
        completion = {
            "id": f"chatcmpl-{call.tag}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}
                for i, a in enumerate(answers)
            ],
        }
        if call.price_multiplier != 1.0:
            completion["service_tier"] = "priority"
        usage = _usage(call, options.usage)
        if usage is not None:
            completion["usage"] = usage
        data = json.dumps(completion).encode()
        if options.act == "big_json":
            data = data[:-1] + b', "padding": "' + b" " * BIG_BYTES + b'"}'
        if disconnected.is_set():  # the caller left while it was generated: billed all the same
            call.ended = "disconnected"
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if options.act == "drop":
            await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
            call.ended = "dropped"
            raise ConnectionAbortedError("the hostile upstream cuts its JSON answer")
        await send({"type": "http.response.body", "body": data})
        # Generated in full before it was sent: billed in full. An answer no client should read to the
        # end may have been cut by the caller after it left here: this side cannot tell.
        call.ended = "oversized" if options.act == "big_json" else "complete"

    async def _stream(self, call, body, answers, options, send, disconnected) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        base = {"id": f"chatcmpl-{call.tag}", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = call.model
        pieces = []  # (choice, text)
        for i, answer in enumerate(answers):
            words = answer.split(" ")
            for start in range(0, len(words), max(1, options.chunk)):
                text = " ".join(words[start : start + options.chunk])
                pieces.append((i, text if start == 0 else " " + text))
        sent: list[tuple[float, int]] = []  # (when, output tokens) of each content event sent
        completed = False

        async def event(payload: bytes) -> bool:
            if disconnected.is_set():
                return False
            await send({"type": "http.response.body", "body": payload, "more_body": True})
            return not disconnected.is_set()

        def chunk(delta: dict, index: int = 0, finish=None) -> bytes:
            choice = {"index": index, "delta": delta, "finish_reason": finish}
            return b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"

        alive = await event(chunk({"role": "assistant", "content": ""}))
        for number, (index, text) in enumerate(pieces):
            if not alive:
                break
            if options.act == "drop" and number >= options.drop:
                call.output_tokens, call.ended = sum(t for _, t in sent), "dropped"
                raise ConnectionAbortedError("the hostile upstream cuts its stream")
            if options.act == "big_event" and number == len(pieces) // 2:
                padding = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": None}]}
                big = json.dumps(padding).encode()[:-1] + b', "padding": "' + b" " * BIG_BYTES + b'"}'
                alive = await event(b"data: " + big + b"\n\n")
                if not alive:
                    break
            if options.delay and number:
                try:
                    await asyncio.wait_for(disconnected.wait(), options.delay)
                    alive = False
                    break
                except TimeoutError:
                    pass
            if await event(chunk({"content": text}, index)):
                sent.append((time.monotonic(), tokens(text)))
            else:
                alive = False
        if alive and options.act == "forever":
            while await event(b": keep-alive\n\n"):
                try:
                    await asyncio.wait_for(disconnected.wait(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    pass
            alive = False
        if alive:
            for index in range(len(answers)):
                alive = alive and await event(chunk({}, index, "stop"))
            usage = _usage(call, options.usage, output=sum(t for _, t in sent))
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if alive and wants_usage and usage is not None:
                alive = await event(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
            if alive:
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
                completed = True
        call.output_tokens = sum(t for _, t in sent)
        if not completed:
            call.ended = "disconnected"
            left = time.monotonic()
            call.tail_tokens = sum(t for when, t in sent if when >= left - TAIL_SECONDS)
        else:
            call.ended = "complete"

    def close(self) -> None:
        if self._counter is not None:
            self._counter.shutdown(wait=False, cancel_futures=True)


def _die_with_parent() -> None:
    """The counting process ends with the upstream, however the upstream ends (SIGKILL included): it
    is forked from uvicorn, whose SIGTERM handler it would otherwise keep, ignoring SIGTERM."""
    import ctypes
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the shutdown in main() still ends it
        pass


def _positive(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _usage(call: Billed, kind: str, output: int | None = None) -> dict | None:
    output = call.output_tokens if output is None else output
    if kind == "none":
        return None
    if kind == "low":
        return {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if kind == "high":
        return {
            "prompt_tokens": call.input_tokens,
            "completion_tokens": HIGH_USAGE_TOKENS,
            "total_tokens": call.input_tokens + HIGH_USAGE_TOKENS,
        }
    if kind == "garbage":
        return {"prompt_tokens": "many", "completion_tokens": -5, "total_tokens": None}
    usage = {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": output,
        "total_tokens": call.input_tokens + output,
    }
    if call.audio_output:
        usage["completion_tokens_details"] = {"audio_tokens": output, "text_tokens": 0}
    return usage


async def _watch_disconnect(receive, disconnected: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    disconnected.set()


async def _send_json(send, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = LedgerUpstream()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        backlog=2048,
        timeout_keep_alive=30,
    )
    app.close()


if __name__ == "__main__":
    main()

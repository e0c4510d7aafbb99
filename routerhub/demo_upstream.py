"""A local fake of an OpenAI-compatible API, for the demo (``make run``), the tests and benchmarks.

It serves ``POST /v1/chat/completions`` (JSON or streamed Server-Sent Events with
``stream_options.include_usage``) and ``GET /v1/models``, with token usage counted the way OpenAI
bills it (3 tokens of framing per message, plus 3). What it answers comes from a policy; how it
answers (latency, streaming pace, failures, a stream dropped half-way, no usage, a redirect) from a
:class:`Behaviour` per model. :func:`demo_answers` answers MMLU-Pro questions right or wrong as each
demo LLM did in the demo data, so routing through the gateway shows the data set's trade-offs. Asked
a judge prompt (routing/profiling/judge_prompts/), any demo model acts as a deterministic judge
(:func:`demo_judge`): a stand-in that reads the demo data's correctness, never the answer's merit.

    python -m routerhub.demo_upstream --data data/mmlu-pro --port 8001 --latency 0.3 --chunk-delay 0.02

In tests: ``with FakeUpstream(answer=..., behaviours={...}) as upstream: upstream.url``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

Answer = Callable[[str, str], str]  # (model, last user message) → answer text


@dataclass(frozen=True)
class Behaviour:
    latency_seconds: float = 0.0  # before the first byte (status line and headers)
    chunk_delay_seconds: float = 0.0  # between two streamed chunks
    fail_first: int = 0  # this many calls to the model fail first …
    fail_status: int = 500  # … with this status
    status: int | None = None  # every call fails with this status (and the body below)
    error_body: str | None = None
    drop_after_chunks: int | None = None  # a stream is cut (connection closed) after this many chunks
    omit_usage: bool = False  # never report usage (some providers do not, some fail to)
    redirect_to: str | None = None  # answer 307 to this URL


@dataclass
class Call:
    model: str
    body: dict
    headers: dict
    status: int = 200
    chunks_sent: int = 0
    ended: str = ""  # "complete", "dropped" (by the fake), "disconnected" (by the client)


def count_tokens(text: str) -> int:
    from registry.tokens import count_tokens as count

    return count([text])[0] if text else 0


def openai_prompt_tokens(messages: list) -> int:
    """What OpenAI bills for a chat: the messages' tokens, 3 per message of framing, and 3 more."""
    total = 3
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        total += 3 + count_tokens(content if isinstance(content, str) else "")
    return total


def _last_user_text(messages: list) -> str:
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def echo_answer(model: str, text: str) -> str:
    return f"{model} heard: {text}"


def demo_answers(directory: Path) -> Answer:
    """Right or wrong on each MMLU-Pro question as the named model was in the data set's outcomes."""
    from registry.data_format import read_routing_data

    data = read_routing_data(directory)
    by_id = {p.external_id: p for p in data.prompts}
    questions = {p.text.strip(): p for p in data.prompts}
    correct = {(prompt_id, model): score >= 0.5 for (prompt_id, model), (score, _) in data.outcomes.items()}

    judge = demo_judge(data, questions=questions, correct=correct)

    def answer(model: str, text: str) -> str:
        verdict = judge(text, answer)
        if verdict is not None:
            return verdict
        prompt = questions.get(text.strip())
        seed = _stable(f"{model}\0{text}")
        reasoning = " ".join(
            [
                "Let me work through this step by step.",
                *(f"Option {chr(65 + (seed + i) % 10)} does not fit every condition." for i in range(2 + seed % 5)),
            ]
        )
        if prompt is None or (prompt.external_id, model) not in correct or not prompt.answer:
            return (
                f"This is routerhub's demo upstream answering as {model}. It answers the MMLU-Pro questions "
                f"of the demo data as {model} did there; to any other prompt it answers with this note."
            )
        letter = prompt.answer
        if not correct[(prompt.external_id, model)]:
            options = [line[0] for line in by_id[prompt.external_id].text.split("\n")[1:] if line[1:3] == ". "]
            wrong = [o for o in options if o != letter] or ["A" if letter != "A" else "B"]
            letter = wrong[seed % len(wrong)]
        return f"{reasoning} The answer is ({letter})."

    return answer


_SECTION = re.compile(r"<(question|reference|answer|answer_a|answer_b)>\n(.*?)\n</\1>", re.DOTALL)
_LETTER = re.compile(r"(?i:answer\s+is)\s*:?\s*\(?\*{0,2}([A-Z])\b")
DEMO_JUDGE_NOTE = "Demo judge (a stand-in: it reads the demo data's correctness, not the answer's merit)."


def demo_judge(data, *, questions: dict, correct: dict) -> Callable[[str, Answer], str | None]:
    """``judge(text, answer) -> reply``, or None when ``text`` is not a judge prompt.

    An answer is correct when it is what a demo LLM answered to that question (``answer(model, question)``)
    and that LLM was right on it in the demo data; an answer no demo LLM gave is read for its "The answer is
    (X)" letter against the data's reference. Anything else — another question, no letter — it cannot judge.
    """
    models = sorted({model for _, model in data.outcomes})
    given: dict[str, dict[str, bool]] = {}  # question → {answer text: correct}

    def correctness(question: str, answer_text: str, answer: Answer) -> bool | None:
        prompt = questions.get(question.strip())
        if prompt is None or not prompt.answer:
            return None
        if question not in given:
            given[question] = {
                answer(model, question).strip(): correct[(prompt.external_id, model)]
                for model in models
                if (prompt.external_id, model) in correct
            }
        known = given[question].get(answer_text.strip())
        if known is not None:
            return known
        letters = _LETTER.findall(answer_text)
        return letters[-1] == prompt.answer if letters else None

    def judge(text: str, answer: Answer) -> str | None:
        sections = dict(_SECTION.findall(text))
        if "question" not in sections or ("Verdict:" not in text and "Score:" not in text):
            return None
        question = sections["question"]
        if "answer_a" in sections and "answer_b" in sections:
            a, b = (correctness(question, sections[k], answer) for k in ("answer_a", "answer_b"))
            verdict = "CANNOT JUDGE" if a is None or b is None else "TIE" if a == b else "A" if a else "B"
            return f"{DEMO_JUDGE_NOTE}\nVerdict: {verdict}"
        if "answer" not in sections:
            return None
        right = correctness(question, sections["answer"], answer)
        if "reference" in sections:
            verdict = "CANNOT JUDGE" if right is None else "CORRECT" if right else "INCORRECT"
            return f"{DEMO_JUDGE_NOTE}\nVerdict: {verdict}"
        score = "CANNOT JUDGE" if right is None else "9" if right else "2"
        return f"{DEMO_JUDGE_NOTE}\nScore: {score}"

    return judge


class ServedInThread:
    """An ASGI application served by uvicorn on 127.0.0.1 (``port``, or a free one) in a daemon thread of
    this process; ``options`` go to ``uvicorn.Config`` (no lifespan unless they say so)."""

    def __init__(self, app, *, name: str, port: int = 0, **options) -> None:
        import uvicorn

        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.name, self.port = name, port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **{"lifespan": "off", **options}))
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, *, timeout: float = 10) -> ServedInThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self, *, force: bool = False, timeout: float = 10) -> None:
        """Stop serving; ``force``: without waiting for connections still open."""
        self.server.should_exit = True
        self.server.force_exit = force
        self.thread.join(timeout=timeout)


async def _left_within(disconnected: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if the client leaves meanwhile: whether it left."""
    try:
        await asyncio.wait_for(disconnected.wait(), seconds)
    except TimeoutError:
        return False
    return True


class FakeUpstream:
    """An ASGI app (run by uvicorn in a thread, or by ``python -m routerhub.demo_upstream``)."""

    def __init__(
        self,
        *,
        answer: Answer = echo_answer,
        behaviour: Behaviour | None = None,
        behaviours: dict[str, Behaviour] | None = None,
        models: list[str] | None = None,
        record: bool = True,
    ) -> None:
        self.record = record  # keep every call in ``calls`` (tests); off for a long-running demo
        self.answer = answer
        self.behaviour = behaviour or Behaviour()
        self.behaviours = dict(behaviours or {})
        self.models = models or []
        self.calls: list[Call] = []
        self._counts: dict[str, int] = {}
        self._served: ServedInThread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "demo"} for m in self.models]
            return await _json(send, 200, {"object": "list", "data": data})
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return await _json(send, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
        except ValueError:
            return await _json(send, 400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        model = str(body.get("model"))
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        call = Call(model=model, body=body, headers=headers)
        if self.record:
            self.calls.append(call)
        number = self._counts[model] = self._counts.get(model, 0) + 1
        behaviour = self.behaviours.get(model, self.behaviour)
        disconnected = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, disconnected))
        try:
            await self._answer(send, body, model, behaviour, number, call, disconnected)
        finally:
            watcher.cancel()

    async def _answer(self, send, body, model, behaviour, number, call, disconnected):
        if behaviour.latency_seconds and await _left_within(disconnected, behaviour.latency_seconds):
            call.ended = "disconnected"
            return
        if behaviour.redirect_to:
            call.status = 307
            return await _json(send, 307, {"moved": behaviour.redirect_to}, {"location": behaviour.redirect_to})
        status = behaviour.status or (behaviour.fail_status if number <= behaviour.fail_first else 200)
        if status != 200:
            call.status, call.ended = status, "complete"
            error = behaviour.error_body or json.dumps({"error": {"message": f"fake failure {status}", "type": "fake"}})
            extra = {"retry-after": "0"} if status == 429 else {}
            return await _raw(send, status, error.encode(), "application/json", extra)
        messages = body.get("messages") or []
        text = self.answer(model, _last_user_text(messages))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        words = text.split(" ")
        if isinstance(max_tokens, int) and max_tokens > 0:
            while len(words) > 1 and count_tokens(" ".join(words)) > max_tokens:
                words = words[: max(1, len(words) * 3 // 4)]
            text = " ".join(words)
        usage = {"prompt_tokens": openai_prompt_tokens(messages), "completion_tokens": count_tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created, ident = int(time.time()), f"chatcmpl-fake-{number}"
        if not body.get("stream"):
            completion = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }
            if not behaviour.omit_usage:
                completion["usage"] = usage
            call.ended = "complete"
            return await _json(send, 200, completion)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        deltas = [{"role": "assistant", "content": ""}] + [
            {"content": word if i == 0 else " " + word} for i, word in enumerate(words)
        ]
        events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if wants_usage and not behaviour.omit_usage:
            events.append({**base, "choices": [], "usage": usage})
        for i, event in enumerate(events):
            if disconnected.is_set():
                call.ended = "disconnected"
                return
            if behaviour.drop_after_chunks is not None and i >= behaviour.drop_after_chunks:
                call.ended = "dropped"
                raise ConnectionAbortedError("the fake drops this stream")  # uvicorn closes the connection
            if i and behaviour.chunk_delay_seconds and await _left_within(disconnected, behaviour.chunk_delay_seconds):
                call.ended = "disconnected"
                return
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(event).encode() + b"\n\n",
                    "more_body": True,
                }
            )
            call.chunks_sent += 1
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        call.ended = "complete"

    # --- running it -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeUpstream:
        self._served = ServedInThread(self, name="fake-upstream", port=port, log_level="error", backlog=2048).start()
        self.port = self._served.port
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_behaviour(self, model: str, **changes) -> None:
        self.behaviours[model] = replace(self.behaviours.get(model, self.behaviour), **changes)


async def _watch_disconnect(receive, disconnected: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


async def _json(send, status: int, payload: dict, headers: dict | None = None) -> None:
    await _raw(send, status, json.dumps(payload).encode(), "application/json", headers or {})


async def _raw(send, status: int, data: bytes, content_type: str, headers: dict) -> None:
    extra = [(k.encode(), v.encode()) for k, v in headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": data})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a routing data set (answers as its outcomes say)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the first byte")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument(
        "--answer-words", type=int, default=None, help="answer every prompt with this many words (load tests)"
    )
    args = parser.parse_args(argv)
    import os

    import django
    import uvicorn

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    django.setup()  # the data reader validates names with the registry's rules (no database is used)
    answer, models = echo_answer, []
    if args.data is not None:
        from registry.data_format import find_file, read_models

        answer = demo_answers(args.data)
        models = [m.name for m in read_models(find_file(args.data, "models.csv"))]
    if args.answer_words is not None:
        fixed = " ".join(f"word{i}" for i in range(args.answer_words))
        answer = lambda model, text: fixed  # noqa: E731
    app = FakeUpstream(
        answer=answer,
        behaviour=Behaviour(latency_seconds=args.latency, chunk_delay_seconds=args.chunk_delay),
        models=models,
        record=False,
    )
    print(f"Demo upstream: http://{args.host}:{args.port}/v1 ({len(models)} models)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off", backlog=2048)


if __name__ == "__main__":
    main()

"""A deterministic fake of an OpenAI-compatible ``/v1/chat/completions`` server, for tests and benchmarks.

It runs in a background thread on 127.0.0.1 and answers from a policy: a function from the user
message to the reply. ``category_expert`` builds the policy used by the worker tests and
``benchmarks/profile_llm.py``: the right MMLU-Pro letter for one category, and for the others a
wrong letter, garbage text or a body that is not JSON at all. Failures can be injected: the first
N calls fail with 500 or 429, and calls can be held until the test lets them go (to kill a worker
while it is waiting on them).

    with FakeOpenAI(policy=category_expert(prompts, good={"math"})) as server:
        llm_register(name="fake-math", api_base=server.url, ...)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class RawReply:
    """A reply sent as it is (status, body), instead of a well-formed completion."""

    status: int
    body: str
    headers: dict = field(default_factory=dict)


Policy = Callable[[str], "str | RawReply"]
GARBAGE = "¯\\_(ツ)_/¯ I like turtles."


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def category_expert(prompts: Iterable[tuple[str, str, str]], *, good: set[str]) -> Policy:
    """Right on ``good`` categories; elsewhere a wrong letter, garbage, or a non-JSON body.

    ``prompts``: (text, answer letter, category). Unknown texts get garbage.
    """
    known = {text: (answer, category) for text, answer, category in prompts}

    def policy(text: str) -> str | RawReply:
        if text not in known:
            return GARBAGE
        answer, category = known[text]
        if category in good:
            return f"Let me think step by step. The answer is ({answer})."
        kind = _stable_hash(text) % 3
        if kind == 0:
            wrong = "A" if answer != "A" else "B"
            return f"The answer is ({wrong})."
        if kind == 1:
            return GARBAGE
        return RawReply(200, "<html>upstream returned something that is not JSON</html>")

    return policy


class FakeOpenAI:
    def __init__(
        self,
        *,
        policy: Policy,
        fail_first: int = 0,
        fail_status: int = 500,
        latency_seconds: float = 0.0,
        hold_after: int | None = None,
    ) -> None:
        self.policy = policy
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.latency_seconds = latency_seconds
        self.hold_after = hold_after  # calls after the first ``hold_after`` wait for ``release()``
        self.requests: list[dict] = []  # every call, failed ones included: {"model", "text", "status"}
        self.held = threading.Semaphore(0)  # released once per call that starts waiting
        self._gate = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, json.loads(self.rfile.read(length) or b"{}"))

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        self._gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def release(self) -> None:
        """Let held calls (and every later one) through."""
        self._gate.set()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        messages = body.get("messages") or []
        text = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        with self._lock:
            number = len(self.requests) + 1
            record = {"model": body.get("model"), "text": text, "status": 200}
            self.requests.append(record)
        if self.hold_after is not None and number > self.hold_after and not self._gate.is_set():
            self.held.release()
            self._gate.wait()
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        if number <= self.fail_first:
            record["status"] = self.fail_status
            headers = {"Retry-After": "0"} if self.fail_status == 429 else {}
            return self._send(
                handler, RawReply(self.fail_status, json.dumps({"error": {"message": "injected failure"}}), headers)
            )
        reply = self.policy(text)
        if isinstance(reply, RawReply):
            record["status"] = reply.status
            return self._send(handler, reply)
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(reply.split()),
                "total_tokens": prompt_words + len(reply.split()),
            },
        }
        self._send(handler, RawReply(200, json.dumps(completion), {"Content-Type": "application/json"}))

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: RawReply) -> None:
        data = reply.body.encode()
        try:
            handler.send_response(reply.status)
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a killed worker)

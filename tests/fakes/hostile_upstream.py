"""An OpenAI-compatible endpoint that answers as each test scripts it, byte by byte: keep-alive comments
forever, a body that never ends, a 50 MB event, usage that lies, a key cut across two chunks.

    async def forever(body, reply):
        await reply.start()
        while await reply.write(b": keep-alive\n\n"):
            await reply.wait(0.05)

    with HostileUpstream({"gpt-x": forever}) as upstream:
        LLM.objects.filter(name="gpt-x").update(api_base=upstream.url)

Each call is recorded (``calls``): the model asked for, the body, the bytes written and how it ended
("complete", or "disconnected" when the client went away first).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from routerhub.demo_upstream import ServedInThread


@dataclass
class Call:
    model: str
    body: dict
    headers: dict
    sent: int = 0  # bytes of the body written
    ended: str = ""


class Reply:
    def __init__(self, send, disconnected: asyncio.Event, call: Call) -> None:
        self._send, self.disconnected, self.call = send, disconnected, call

    async def start(self, status: int = 200, content_type: str = "text/event-stream", headers: dict | None = None):
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode()), *extra],
            }
        )

    async def write(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone."""
        if self.disconnected.is_set():
            return False
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception:  # the connection is gone
            self.disconnected.set()
            return False
        self.call.sent += len(data)
        await asyncio.sleep(0)  # let the disconnect watcher run
        return not self.disconnected.is_set()

    async def wait(self, seconds: float) -> bool:
        """Sleep; False if the client went away meanwhile."""
        try:
            await asyncio.wait_for(self.disconnected.wait(), seconds)
            return False
        except TimeoutError:
            return True

    async def json(self, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        await self.start(status, "application/json", {"content-length": str(len(data))})
        await self._send({"type": "http.response.body", "body": data})
        self.call.sent += len(data)

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


Script = Callable[[dict, Reply], Awaitable[None]]


def sse(payload) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"


def chunk(model: str, content: str | None = None, finish: str | None = None, **extra) -> dict:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


class HostileUpstream:
    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        self.scripts = dict(scripts or {})
        self.calls: list[Call] = []
        self.port: int | None = None
        self._served: ServedInThread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        call = Call(model=str(body.get("model")), body=body, headers=headers)
        self.calls.append(call)
        disconnected = asyncio.Event()

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        reply = Reply(send, disconnected, call)
        try:
            await self.scripts[call.model](body, reply)
            call.ended = "disconnected" if disconnected.is_set() else "complete"
        except Exception:
            call.ended = "disconnected"
        finally:
            watcher.cancel()

    def start(self) -> HostileUpstream:
        self._served = ServedInThread(self, name="hostile-upstream", log_level="critical").start()
        self.port = self._served.port
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop(force=True)

    def __enter__(self) -> HostileUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""The least a Python gateway can add on this machine: a bare proxy, the benchmark's reference floor.

An ASGI app, served by uvicorn exactly as routerhub is (same worker count, uvloop, httptools), that
forwards each request's body unchanged to the upstream over a kept-alive connection (the benchmarks'
minimal client, ``harness.Connection``) and returns the answer. No API key, no database, no routing,
no JSON parsing: whatever it adds to a call is what serving it from Python on these cores costs
before a gateway does any work. ``benchmarks/gateway_load.py`` starts it and measures it as the
target "bare proxy (floor)" beside routerhub, in the same run (non-streamed calls only: it reads a
whole answer before returning it).

    FLOOR_UPSTREAM_URL=http://127.0.0.1:PORT/v1/chat/completions \
        .venv/bin/uvicorn floor_proxy:app --app-dir benchmarks --port 8300
"""

from __future__ import annotations

import os

from harness import Connection

UPSTREAM_URL = os.environ["FLOOR_UPSTREAM_URL"]
_idle: list[Connection] = []  # kept-alive upstream connections of this worker, reused last in, first out


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    connection = _idle.pop() if _idle else Connection(UPSTREAM_URL)
    try:
        status, _, answer = await connection.request({"Authorization": "Bearer sk-fake"}, body)
    except Exception:  # noqa: BLE001 — any failure of the upstream is a 502 here, as in a gateway
        connection.close()
        status, answer = 502, b'{"error": {"message": "upstream failed"}}'
    else:
        _idle.append(connection)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})

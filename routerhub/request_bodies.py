"""Request bodies capped while they are read, on every path the web processes serve.

Django's ASGI handler reads a request's whole body into a temporary file (spilling to disk past
``FILE_UPLOAD_MAX_MEMORY_SIZE``) before anything looks at its size, and a chunked body announces no
size at all: the size checks further in (``routing/apis/middleware.py``, the gateway's view) come
after the server has taken in all of it, however large. This wraps the application's ``receive``:

- a ``Content-Length`` over the cap is answered 413 before the body is asked for (so a client that
  sent ``Expect: 100-continue`` is never told to go on);
- a body that grows past the cap while it is read (chunked, or longer than it said) stops being read
  there: the handler is told the client left, which ends its reading, and the 413 goes out instead;
- the 413 closes the connection (``Connection: close``): kept alive, the server would read and drop
  the rest of the body to reach the next request.

The cap is ``ROUTERHUB_GATEWAY_MAX_BODY_BYTES`` for the gateway (``/v1/``) and
``ROUTERHUB_MAX_REQUEST_BYTES`` everywhere else (the API, the admin, the dashboard, the login pages;
none takes file uploads). The 413 is in each API's own error shape: OpenAI's under ``/v1/``, the
API's ``{"error": {"code": "too_large", …}}`` under ``/api/``, plain text elsewhere.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse

from routerhub.middleware import GATEWAY_PREFIX
from routing.apis.errors import json_error
from routing.apis.middleware import API_PREFIX
from routing.gateway.errors import GatewayError


def body_limit(path: str) -> int:
    """The most bytes a request body to ``path`` may hold."""
    if path.startswith(GATEWAY_PREFIX):
        return settings.ROUTERHUB_GATEWAY_MAX_BODY_BYTES
    return settings.ROUTERHUB_MAX_REQUEST_BYTES


def declared_length(scope) -> int | None:
    """The request's ``Content-Length``, or None when it sends none (chunked) or one that is not a number
    (the HTTP server refuses those before they get here; the bytes read are counted either way)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def capped_bodies(app):
    """``app`` (an ASGI application) with every HTTP request body capped while it is read."""

    async def application(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        limit = body_limit(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            return await _send_too_large(scope["path"], f"{declared:,} bytes", limit, send)

        received = 0
        over = False
        started = False

        async def capped_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # what was read so far is dropped with the handler's body file
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            started = True
            await send(message)

        await app(scope, capped_receive, watched_send)
        if over and not started:
            await _send_too_large(scope["path"], f"over {limit:,} bytes", limit, send)

    return application


def too_large_response(path: str, size: str, limit: int) -> HttpResponse:
    message = f"The request body is {size}; at most {limit:,} are accepted."
    if path.startswith(GATEWAY_PREFIX):
        return GatewayError(413, message, code="request_too_large").response()
    if path.startswith(API_PREFIX):
        return json_error(413, message)
    return HttpResponse(f"413 Payload Too Large: {message}", status=413, content_type="text/plain; charset=utf-8")


async def _send_too_large(path: str, size: str, limit: int, send) -> None:
    response = too_large_response(path, size, limit)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers += [
        (b"content-length", str(len(response.content)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})

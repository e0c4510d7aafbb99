"""The body cap of routerhub/request_bodies.py at the ASGI level: how much of a body the application
asks for, and what it answers (tests/processes/test_request_bodies.py does the same over sockets)."""

from __future__ import annotations

import asyncio
import json

import pytest

from routerhub.request_bodies import capped_bodies

PIECE = 64 * 1024


class Client:
    """An ASGI server's side of one request: the body in pieces of 64 kB, what was asked for and answered."""

    def __init__(self, total: int) -> None:
        self.pieces = total // PIECE
        self.asked = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.asked += 1
        if self.asked > self.pieces:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"x" * PIECE, "more_body": self.asked < self.pieces}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])


def scope(path: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers)}


async def reads_the_whole_body(scope, receive, send):
    """An application that reads the body to its end (as Django's handlers do), then answers its size."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # as Django's handlers do: nothing more to answer
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def serve(client: Client, request_scope: dict) -> Client:
    asyncio.run(capped_bodies(reads_the_whole_body)(request_scope, client.receive, client.send))
    return client


@pytest.mark.parametrize(
    ("path", "cap_setting", "shape"),
    [
        ("/v1/chat/completions", "ROUTERHUB_GATEWAY_MAX_BODY_BYTES", "openai"),
        ("/api/v1/route", "ROUTERHUB_MAX_REQUEST_BYTES", "api"),
        ("/admin/login/", "ROUTERHUB_MAX_REQUEST_BYTES", "text"),
    ],
)
def test_a_body_is_read_up_to_its_cap_and_no_further(settings, path, cap_setting, shape):
    setattr(settings, cap_setting, 10 * PIECE)
    client = serve(Client(80 * PIECE), scope(path))  # 5 MB, chunked: no Content-Length
    assert client.asked == 11  # the piece that went past the cap is the last one asked for
    assert client.status == 413 and client.headers[b"connection"] == b"close"
    assert client.headers[b"content-length"] == str(len(client.body)).encode()
    message = f"The request body is over {10 * PIECE:,} bytes; at most {10 * PIECE:,} are accepted."
    if shape == "openai":
        assert json.loads(client.body)["error"] == {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    elif shape == "api":
        assert json.loads(client.body) == {"error": {"code": "too_large", "message": message}}
    else:
        assert client.headers[b"content-type"].startswith(b"text/plain") and message in client.body.decode()


def test_a_content_length_over_the_cap_is_answered_without_asking_for_the_body(settings):
    settings.ROUTERHUB_MAX_REQUEST_BYTES = 1000
    client = serve(Client(80 * PIECE), scope("/api/v1/route", (b"content-length", b"5242880")))
    assert client.asked == 0
    assert client.status == 413
    assert json.loads(client.body)["error"]["message"] == (
        "The request body is 5,242,880 bytes; at most 1,000 are accepted."
    )


def test_the_bytes_read_count_whatever_the_content_length_said(settings):
    """A server that delivered more than was announced: the cap holds on what arrives."""
    settings.ROUTERHUB_MAX_REQUEST_BYTES = 10 * PIECE
    client = serve(Client(80 * PIECE), scope("/dashboard/", (b"content-length", b"100")))
    assert client.asked == 11 and client.status == 413


def test_a_body_within_the_cap_reaches_the_application_whole(settings):
    settings.ROUTERHUB_MAX_REQUEST_BYTES = 10 * PIECE
    client = serve(Client(10 * PIECE), scope("/api/v1/route"))
    assert client.status == 200 and client.body == str(10 * PIECE).encode()
    assert client.asked == 10


def test_other_connections_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], await receive()))

    async def receive():
        return {"type": "lifespan.startup"}

    asyncio.run(capped_bodies(app)({"type": "lifespan"}, receive, None))
    assert seen == [("lifespan", {"type": "lifespan.startup"})]

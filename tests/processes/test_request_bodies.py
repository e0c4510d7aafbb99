"""Request bodies are capped while they are read, on every path of the web processes as `make run`
starts them (scripts/web.sh: uvicorn with httptools): a body over the cap — chunked with no size, or
announced larger than the cap — gets 413 in the path's own error shape, and the server stops reading
and closes the connection rather than taking in the rest."""

from __future__ import annotations

import json
import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.web import serving_web

pytestmark = [pytest.mark.slow]

FIVE_MB = 5 * 1024 * 1024
PIECE = 64 * 1024
API_CAP = 1024 * 1024  # ROUTERHUB_MAX_REQUEST_BYTES's default
GATEWAY_CAP = 4 * 1024 * 1024  # ROUTERHUB_GATEWAY_MAX_BODY_BYTES's default
BEARER = "Authorization: Bearer rh_never-looked-at\r\n"  # the cap comes before authentication

# (path, extra header lines, the cap, the error's shape)
PATHS = [
    ("/v1/chat/completions", BEARER, GATEWAY_CAP, "openai"),
    ("/api/v1/route", BEARER, API_CAP, "api"),  # the API key handler (routerhub/handlers.py)
    ("/api/v1/route", "", API_CAP, "api"),  # Django's handler (staff sessions)
    ("/admin/login/", "", API_CAP, "text"),
    ("/login/", "", API_CAP, "text"),
    ("/", "", API_CAP, "text"),
]


@pytest.fixture(scope="module")
def web_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """scripts/web.sh on a free port, one for the module: the bodies refused here never reach a view."""
    from django.db import connection

    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    log_path = tmp_path_factory.mktemp("web") / "web.log"
    with serving_web(database=database, log_path=log_path, ROUTERHUB_DB_POOL_MAX_SIZE="2") as url:
        yield url


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIECE)
    return sock


def head(method: str, path: str, extra: str, framing: str) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: testserver\r\nContent-Type: application/json\r\n{extra}{framing}\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of the answer"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def send_until_answered(sock: socket.socket, pieces, *, pause: float = 0.01) -> tuple[int, bool]:
    """Send ``pieces`` one by one, looking for an answer before each: (bytes sent, answered before the end).

    A send the server refuses (it answered and closed the connection between two looks) counts as
    answered: the answer is already on its way, ahead of the reset."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], pause)
        if readable:
            return sent, True
        try:
            sock.sendall(piece)
        except (ConnectionResetError, BrokenPipeError):
            return sent, True
        sent += len(piece)
    return sent, False


def stops_reading(sock: socket.socket, pieces) -> bool:
    """Whether the server has closed the connection: sending the rest of the body fails, or it reads as closed."""
    try:
        for piece in pieces:
            sock.sendall(piece)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and sock.recv(65536) == b"":
                return True
    except OSError:  # reset or broken pipe: the server closed without reading on
        return True
    return False


def chunked(total: int):
    payload = b"x" * PIECE
    for _ in range(total // PIECE):
        yield b"%x\r\n%s\r\n" % (len(payload), payload)
    yield b"0\r\n\r\n"


def raw(total: int):
    for _ in range(total // PIECE):
        yield b"x" * PIECE


def assert_too_large(answer: Answer, cap: int, shape: str) -> None:
    assert answer.status == 413, answer
    assert answer.headers.get("connection") == "close"
    if shape == "openai":
        error = json.loads(answer.body)["error"]
        assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
        assert f"at most {cap:,} are accepted" in error["message"]
    elif shape == "api":
        error = json.loads(answer.body)["error"]
        assert error["code"] == "too_large" and f"at most {cap:,} are accepted" in error["message"]
    else:
        assert answer.headers["content-type"].startswith("text/plain")
        assert f"at most {cap:,} are accepted" in answer.body.decode()


@pytest.mark.parametrize(("path", "extra", "cap", "shape"), PATHS)
def test_a_chunked_body_over_the_cap_is_refused_while_it_is_sent(web_server, path, extra, cap, shape):
    pieces = chunked(FIVE_MB)
    with connect(web_server) as sock:
        sock.sendall(head("POST", path, extra, "Transfer-Encoding: chunked\r\n"))
        sent, answered = send_until_answered(sock, pieces)
        assert answered, f"no answer until the whole {FIVE_MB:,}-byte body was sent"
        assert cap < sent < cap + 2 * 1024 * 1024, sent  # read up to the cap (what buffers held besides)
        assert_too_large(read_answer(sock), cap, shape)
        assert stops_reading(sock, pieces), "the server read the rest of the body"


@pytest.mark.parametrize(("path", "extra", "cap", "shape"), PATHS)
def test_a_content_length_over_the_cap_is_refused_before_the_body_is_sent(web_server, path, extra, cap, shape):
    with connect(web_server) as sock:
        sock.sendall(head("POST", path, extra, f"Content-Length: {FIVE_MB}\r\nExpect: 100-continue\r\n"))
        started = time.monotonic()
        # Nothing of the body sent: a server waiting for it would time out, one asking for it would
        # answer "100 Continue" first.
        answer = read_answer(sock)
        assert time.monotonic() - started < 5
        assert_too_large(answer, cap, shape)
        assert stops_reading(sock, raw(FIVE_MB))


def test_a_body_longer_than_its_content_length_is_not_read_past_it(web_server):
    """The server frames the body by what was announced: what follows is not taken for more body but
    for a next request, which is refused as malformed, and the connection closed."""
    with connect(web_server) as sock:
        sock.sendall(head("POST", "/v1/chat/completions", BEARER, "Content-Length: 2\r\n") + b"{}")
        pieces = raw(FIVE_MB)
        sent, answered = send_until_answered(sock, pieces)
        assert answered and sent < 2 * 1024 * 1024, sent
        assert 400 <= read_answer(sock).status < 500
        assert stops_reading(sock, pieces)


def test_a_chunked_body_that_also_announces_a_length_is_refused_unread(web_server):
    """Transfer-Encoding and Content-Length together (request smuggling's form) are refused as they arrive."""
    with connect(web_server) as sock:
        sock.sendall(head("POST", "/api/v1/route", BEARER, "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n"))
        pieces = chunked(FIVE_MB)
        sent, answered = send_until_answered(sock, pieces)
        assert answered and sent < 2 * 1024 * 1024, sent
        assert 400 <= read_answer(sock).status < 500
        assert stops_reading(sock, pieces)


@pytest.mark.django_db(transaction=True)
def test_bodies_within_the_cap_are_read_whole(web_server, fitted, tenant_and_key):
    """Chunked or not, a body under the cap reaches the view (here a prompt of ~100 kB to route, counted whole)."""
    headers = {"Authorization": f"Bearer {tenant_and_key[1]}", "Content-Type": "application/json"}
    body = json.dumps({"prompt": "What is 2+2? " + " ".join(f"w{i}" for i in range(15_000))}).encode()

    def pieces():
        for start in range(0, len(body), PIECE):
            yield body[start : start + PIECE]

    for content in (body, pieces()):  # bytes: Content-Length; a generator: chunked
        routed = httpx.post(web_server + "/api/v1/route", content=content, headers=headers, timeout=30)
        assert routed.status_code == 200, routed.text
        assert routed.json()["input_tokens"] > 10_000

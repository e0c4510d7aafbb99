"""A fake embedder service: an OpenAI-compatible ``POST /v1/embeddings`` in a thread of the test process.

It embeds with the deterministic hashing embedder (or any function of the texts), so a test knows the
vectors to expect, and it can misbehave on demand: answer late, with vectors of another width or of
another model, with an error status, with another vector for each text, or echo the request's key.

    with FakeEmbeddings(model="fake-minilm") as server:
        RemoteEmbedder(url=server.url, model="fake-minilm").embed_one("hello")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def hashing_vectors(texts: Sequence[str]) -> np.ndarray:
    from registry.embedders import HashingEmbedder

    return HashingEmbedder().embed(list(texts))


class FakeEmbeddings:
    def __init__(self, *, model: str = "fake-minilm", embed: Callable[[Sequence[str]], np.ndarray] = hashing_vectors):
        self.model = model
        #: The model named in answers; None: the one each request asked for.
        self.answer_model: str | None = model
        self.embed = embed
        self.delay = 0.0
        self.dimensions: int | None = None  # None: the vectors' own width; else cut or padded to it
        self.status = 200
        self.body: str | None = None  # sent as it is instead of the embeddings
        self.shuffle = False  # data in reverse order, each with its index
        self.requests: list[dict] = []  # {"body": …, "authorization": …} of every request received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-embeddings", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeEmbeddings:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict) -> tuple[int, str]:
        if self.body is not None:
            return self.status, self.body
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = np.asarray(self.embed(texts), dtype=np.float64)
        if self.dimensions is not None:
            vectors = np.resize(vectors, (len(texts), self.dimensions))
        data = [{"object": "embedding", "index": i, "embedding": vector.tolist()} for i, vector in enumerate(vectors)]
        if self.shuffle:
            data.reverse()
        model = self.answer_model if self.answer_model is not None else body.get("model")
        answer = {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return self.status, json.dumps(answer)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                )
                if fake.delay:
                    time.sleep(fake.delay)
                status, text = fake.answer(body) if self.path == "/v1/embeddings" else (404, '{"error": "not found"}')
                payload = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        return Handler

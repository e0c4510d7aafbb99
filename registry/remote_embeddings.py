"""The client of an embedder service: an OpenAI-compatible ``POST {url}/embeddings``, as
text-embeddings-inference, Infinity, vLLM, OpenAI and other hosted APIs serve it.

Its answers are untrusted: a vector is used only when the answer holds one finite, non-zero vector of
the expected width per text, in order, made by the model asked for. Anything else — a timeout, a
refused connection, an error status, an unusable answer — is an :class:`EmbedderUnavailable` naming
the embedder and what went wrong, never a vector.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np

logger = logging.getLogger(__name__)

#: Texts sent in one call: text-embeddings-inference refuses more by default (max_client_batch_size).
MAX_TEXTS_PER_CALL = 32
#: Largest answer read (32 vectors of 384 floats take ~0.3 MB as JSON).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: After a timeout or a failed connection, calls fail at once for this long instead of each waiting
#: for the timeout: the web threads that embed also serve every other call of their process.
PAUSE_AFTER_FAILURE_SECONDS = 5.0
#: Characters of an error answer kept in the log.
LOGGED_BODY_CHARS = 300


class EmbedderUnavailable(RuntimeError):
    """The embedder could not embed. ``reason`` may be shown to API clients (no address, no body);
    ``detail`` adds where and what was answered, for the operator's log and start-up messages."""

    retry_after_seconds = int(PAUSE_AFTER_FAILURE_SECONDS)

    def __init__(self, embedder: str, reason: str, detail: str = "") -> None:
        self.embedder, self.reason, self.detail = embedder, reason, detail or reason
        super().__init__(f"The embedder {embedder} is unavailable: {reason}.")


def shown_url(url: str) -> str:
    """The address without user name, password or query, which may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def endpoint_of(url: str) -> str:
    """``…/v1`` (a base URL as OpenAI clients take it) → ``…/v1/embeddings``; a full endpoint stays."""
    url = url.rstrip("/")
    return url if url.endswith("/embeddings") else url + "/embeddings"


class EmbeddingsClient:
    """One process's connection pool to the embedder service (thread-safe)."""

    def __init__(self, *, name: str, url: str, model: str, api_key: str, timeout: float, dimensions: int) -> None:
        import httpx

        self.name, self.model, self.dimensions, self.timeout = name, model, dimensions, timeout
        self.endpoint = endpoint_of(url)
        self.where = shown_url(self.endpoint)
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # No proxy or .netrc from the environment, no redirects: the request goes where it was configured.
        self._client = httpx.Client(
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=httpx.HTTPTransport(retries=1),
        )
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._pause_reason: EmbedderUnavailable | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts) × dimensions] float32 rows, as the service computed them (not normalised here)."""
        if len(texts) > MAX_TEXTS_PER_CALL:
            raise ValueError(f"at most {MAX_TEXTS_PER_CALL} texts per call")
        paused = self._paused()
        if paused is not None:
            raise paused
        import httpx

        body = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        try:
            with self._client.stream("POST", self.endpoint, json=body) as response:
                raw = self._read(response)
                status = response.status_code
        except httpx.TimeoutException:
            raise self._pause(
                f"no answer within {self.timeout:g} s", f"{self.where}: no answer within {self.timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise self._pause(
                "cannot connect", f"{self.where}: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        if status != 200:
            text = self._scrub(raw[:LOGGED_BODY_CHARS].decode("utf-8", "replace"))
            raise self._failed(f"it answered HTTP {status}", f"{self.where} answered HTTP {status}: {text}")
        return self._vectors(raw, len(texts))

    def _read(self, response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise self._failed("its answer is too large", f"{self.where}: answer over {MAX_ANSWER_BYTES:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _vectors(self, raw: bytes, count: int) -> np.ndarray:
        try:
            answer = json.loads(raw)
        except ValueError:
            raise self._unusable("it is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise self._unusable('it has no "data" list')
        answered_model = answer.get("model")
        if isinstance(answered_model, str) and answered_model != self.model:
            raise self._unusable(f"it was made by model {answered_model!r}, not {self.model!r}")
        items = answer["data"]
        if len(items) != count or not all(isinstance(item, dict) for item in items):
            raise self._unusable(f"{len(items)} embeddings for {count} texts")
        indices = [item.get("index") for item in items]
        if all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            if sorted(indices) != list(range(count)):
                raise self._unusable(f"indices {indices} for {count} texts")
            items = sorted(items, key=lambda item: item["index"])
        out = np.empty((count, self.dimensions), dtype=np.float32)
        for row, item in enumerate(items):
            embedding = item.get("embedding")
            if not isinstance(embedding, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in embedding
            ):
                raise self._unusable("an embedding is not a list of numbers")
            if len(embedding) != self.dimensions:
                raise self._unusable(f"{len(embedding)}-dimensional vectors; routerhub stores {self.dimensions}")
            vector = np.asarray(embedding, dtype=np.float32)
            if not np.all(np.isfinite(vector)) or not np.any(vector):
                raise self._unusable("a vector is zero or not finite")
            out[row] = vector
        return out

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[key]") if self._api_key else text

    def _unusable(self, what: str) -> EmbedderUnavailable:
        return self._failed(f"its answer is unusable: {what}", f"{self.where} answered unusably: {what}")

    def _failed(self, reason: str, detail: str) -> EmbedderUnavailable:
        logger.warning("embedder %s: %s", self.name, detail)
        return EmbedderUnavailable(self.name, reason, detail)

    def _pause(self, reason: str, detail: str) -> EmbedderUnavailable:
        error = self._failed(reason, detail)
        with self._lock:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            self._pause_reason = error
        return error

    def _paused(self) -> EmbedderUnavailable | None:
        with self._lock:
            if time.monotonic() >= self._paused_until or self._pause_reason is None:
                return None
            last = self._pause_reason
        return EmbedderUnavailable(
            self.name,
            f"{last.reason} (not tried again for {PAUSE_AFTER_FAILURE_SECONDS:g} s after a failure)",
            last.detail,
        )

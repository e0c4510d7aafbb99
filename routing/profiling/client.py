"""A small client for OpenAI-compatible ``/chat/completions`` endpoints, used to profile LLMs.

It calls through ``routing/upstream/http.py`` — the gateway's client too: pooled connections,
separate connect and read timeouts, no redirects, the address rules of ``routing/upstream/addresses.py``
— and adds the profiling pass's retry policy. Failures are sorted by what the caller should do:

- ``TransientProviderError`` — timeouts, connection errors, HTTP 408/409/429/5xx. Retried here with
  exponential backoff and jitter (honouring ``Retry-After``); if they persist, the profiling task
  retries later and resumes where it stopped.
- ``ProviderConfigurationError`` — HTTP 401/403/404, a redirect, a refused address: a wrong key or
  URL. Every further call would fail the same way, so the job stops at once.
- ``PromptRejected`` — HTTP 400/413/422 for one prompt (too long, refused by a filter). That prompt
  gets no outcome; the others go on.

A 200 answer that is not the expected JSON is *not* an error: it is the LLM's (garbage) answer,
graded like any other and recorded as incorrect. Upstream bodies quoted in errors are truncated and
never contain the API key. An answer is read within ``http.MAX_ANSWER_BYTES`` (more: a configuration
error — the endpoint is not an LLM that stops) and before ``ROUTERHUB_UPSTREAM_DEADLINE_SECONDS``
(a timeout, retried like any other).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import httpx
from django.conf import settings

from routing.upstream.addresses import UpstreamRefused
from routing.upstream.credentials import CredentialError, llm_api_key
from routing.upstream.http import (
    CONFIGURATION_STATUSES,
    MAX_ANSWER_BYTES,
    MAX_ERROR_BYTES,
    REDACTED,
    BadAnswer,
    Timeouts,
    auth_headers,
    chat_completions_url,
    read_bounded,
    redact,
    sync_client,
    transient,
)
from routing.upstream.streams import answer_text


class ProviderError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """The provider failed in a way that may pass: try again later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ProviderConfigurationError(ProviderError):
    """The provider refuses every call (bad key, URL or model): fix the LLM's settings."""


class PromptRejected(ProviderError):
    """The provider refused this one prompt."""


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float  # of the successful attempt only, not of retries and backoff


@dataclass
class ChatClient:
    """Calls one model at one ``api_base``; safe to use from several threads at once."""

    api_base: str
    model: str
    api_key: str | None = None
    system_prompt: str | None = None
    max_tokens: int = 512
    timeout_seconds: float = 60.0
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    @property
    def url(self) -> str:
        return chat_completions_url(self.api_base)

    def complete(self, prompt_text: str) -> Completion:
        """One answer, after up to ``max_attempts`` tries on transient failures."""
        messages = [{"role": "user", "content": prompt_text}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.complete_chat(messages)

    def complete_chat(self, messages: list[dict], **options) -> Completion:
        """The answer to a whole conversation (``options``, such as ``temperature``, replace the client's
        own), after up to ``max_attempts`` tries on transient failures."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(messages, options)
            except TransientProviderError as exc:
                if attempt == self.max_attempts:
                    raise
                self.sleep(self._backoff(attempt, exc))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, exc: TransientProviderError) -> float:
        if exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff_seconds)
        # Full jitter (AWS architecture blog): spreads retries of concurrent threads apart.
        return random.uniform(0, min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1)))

    def _attempt(self, messages: list[dict], options: dict) -> Completion:
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens, **options}
        timeouts = Timeouts(connect=min(10.0, self.timeout_seconds), read=self.timeout_seconds)
        started = time.monotonic()
        deadline = started + settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS
        try:
            with sync_client().stream(
                "POST", self.url, json=body, headers=auth_headers(self.api_key), timeout=timeouts.httpx()
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    raw = read_bounded(response, MAX_ANSWER_BYTES, deadline=deadline)
                else:
                    raw = _read_at_most(response, MAX_ERROR_BYTES, deadline)
        except UpstreamRefused as exc:
            raise ProviderConfigurationError(str(exc)) from None
        except httpx.TimeoutException as exc:
            raise TransientProviderError(f"timed out after {self.timeout_seconds:g} s: {exc!r}") from None
        except (httpx.TransportError, ConnectionError) as exc:
            raise TransientProviderError(f"cannot connect to {self.url}: {exc!r}") from None
        except BadAnswer as exc:
            raise ProviderConfigurationError(f"{self.url} sent {exc}: is it an OpenAI-compatible API?") from None
        latency_ms = (time.monotonic() - started) * 1000
        text = raw.decode("utf-8", "replace")
        quoted = redact(text, self.api_key, limit=300)
        if transient(status):
            raise TransientProviderError(
                f"HTTP {status} from {self.url}: {quoted}",
                status=status,
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in CONFIGURATION_STATUSES or 300 <= status < 400:
            what = "a redirect (never followed)" if status < 400 else "check api_base, api_model and the API key"
            raise ProviderConfigurationError(f"HTTP {status} from {self.url} ({what}): {quoted}", status=status)
        if status >= 400:
            raise PromptRejected(f"HTTP {status}: {quoted}", status=status)
        completion = _parse_completion(text, latency_ms)
        if self.api_key and self.api_key in completion.text:  # an endpoint echoing the key: never stored
            completion = replace(completion, text=completion.text.replace(self.api_key, REDACTED))
        return completion


def _read_at_most(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The first ``limit`` bytes of an error answer (the rest is not read), before ``deadline``."""
    chunks, size = [], 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:limit]


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _parse_completion(raw: str, latency_ms: float) -> Completion:
    """The answer text and token usage; a malformed body becomes the answer text itself."""
    try:
        payload = json.loads(raw)
        message = payload["choices"][0]["message"]
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif message.get("tool_calls"):  # the tool calls as the gateway reads a routed answer's text
            text = answer_text(message)
        else:
            text = json.dumps(content)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return Completion(text=raw[:2000], input_tokens=None, output_tokens=None, latency_ms=latency_ms)
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    return Completion(
        text=text,
        input_tokens=_non_negative_int(usage.get("prompt_tokens")),
        output_tokens=_non_negative_int(usage.get("completion_tokens")),
        latency_ms=latency_ms,
    )


def _non_negative_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def complete_all(
    client: ChatClient,
    prompts: Iterable[tuple[int, str]],
    *,
    concurrency: int,
    may_start: Callable[[], bool] = lambda: True,
    idle_seconds: float | None = None,
    on_idle: Callable[[], None] = lambda: None,
) -> Iterator[tuple[int, Completion | PromptRejected]]:
    """Answer ``(prompt_id, text)`` pairs with at most ``concurrency`` calls in flight.

    Yields ``(prompt_id, Completion | PromptRejected)`` as calls finish, in completion order.
    ``may_start()`` is asked before each new call (a cost cap, for instance); once it says no,
    the calls in flight finish and nothing more starts. A transient or configuration error that
    outlives the client's retries stops everything and is raised after the calls in flight finish,
    so their answers are yielded (and stored) first. ``on_idle()`` is called whenever no call
    finished for ``idle_seconds`` (the caller stores what it holds and shows it is alive).
    """
    pending = iter(prompts)
    in_flight: dict[Future, int] = {}
    failure: ProviderError | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="profile") as pool:

        def fill() -> None:
            while failure is None and len(in_flight) < concurrency and may_start():
                item = next(pending, None)
                if item is None:
                    return
                prompt_id, text = item
                in_flight[pool.submit(client.complete, text)] = prompt_id

        fill()
        while in_flight:
            done, _ = wait(in_flight, timeout=idle_seconds, return_when=FIRST_COMPLETED)
            if not done:
                on_idle()
                continue
            for future in done:
                prompt_id = in_flight.pop(future)
                try:
                    yield prompt_id, future.result()
                except PromptRejected as rejected:
                    yield prompt_id, rejected
                except ProviderError as exc:
                    failure = failure or exc
            fill()
    if failure is not None:
        raise failure


def job_api_key(llm) -> str | None:
    """The LLM's API key (its encrypted field or a ROUTERHUB_LLM_KEY_… variable) for a job's calls; a key
    that cannot be had is a configuration error, which stops the job instead of being retried."""
    try:
        return llm_api_key(llm)
    except CredentialError as exc:
        raise ProviderConfigurationError(str(exc)) from None

"""Load benchmark of the gateway (``/v1/chat/completions``): the overhead it adds to an LLM call, how
many streams it holds, and the same workload through LiteLLM's proxy — all in one invocation.

    make bench-gateway                                          # ~8 minutes, writes benchmarks/results/gateway_load.md
    nice -n 10 .venv/bin/python benchmarks/gateway_load.py --out benchmarks/results/gateway_load.md
    .venv/bin/python benchmarks/gateway_load.py --seconds 4 --concurrency 1,50 --stream-steps 100 --no-litellm

Needs the dev database with the MMLU-Pro data set imported and a fitted, active router (what
``make run`` leaves; or ``manage.py import_routing_data data/mmlu-pro --name mmlu-pro`` then
``manage.py fit_router --dataset mmlu-pro --no-tuning``): ``routerhub-auto`` routes with it.

What it starts, all on loopback and all stopped at the end:

- a fake OpenAI-compatible upstream, in its own process (this file, ``--serve-upstream``): a plain
  asyncio HTTP/1.1 server answering every chat completion after a fixed 1 s (``--latency``), or, for
  ``stream: true``, 50 chunks spread over 2 s (``--chunks``, ``--stream-seconds``) followed by a
  usage-only chunk and ``[DONE]``. It is deliberately minimal, so that it adds (almost) nothing of its
  own to what is measured;
- routerhub served as ``make run`` serves it (``scripts/web.sh``: uvicorn, ``--workers`` workers, the
  database connection pool), with the per-key rate limit off (one key sends everything);
- a bare Python proxy (``benchmarks/floor_proxy.py``, ``--no-floor`` leaves it out): uvicorn as routerhub
  serves it, forwarding each body unchanged to the fake upstream, with no key, database or routing —
  the floor: what any gateway written in Python adds on these cores before it does any work;
- LiteLLM's proxy (``litellm[proxy]`` from PyPI, pinned, installed on first use into
  ``benchmarks/.venv-litellm``, git-ignored) with the same fake upstream as its one model, no routing,
  no database, a master key, one worker (``--litellm-workers``; its multi-worker mode did not start here).

While it runs, every LLM of the database points at the fake upstream (``routerhub-auto`` may choose
any of them); their endpoints are put back afterwards — do not run it against a database that serves
real traffic. It creates a throw-away tenant with a large budget and deletes it, with its decisions,
at the end.

Measured (closed loop: each client sends its next request when the previous one is answered, each on
its own keep-alive connection — a minimal asyncio HTTP/1.1 client, see :class:`Connection` for why
not httpx):

1. overhead: at 1, 50 and 200 concurrent clients, the latency of a non-streamed call made directly to
   the fake upstream, through routerhub with an LLM's name, through routerhub with ``routerhub-auto``
   (a repeated prompt, whose embedding comes from the cache, and a new prompt each time, which is
   embedded), and through LiteLLM; the overhead at a percentile is that percentile of the latency
   through the gateway minus the same percentile of the direct latency at the same concurrency. The
   server's own split comes from routerhub's ``Server-Timing`` header (embed, route, budget, prepare).
   Each run's clients first call for ``--warm-up`` seconds unmeasured: their first wave, all at once,
   opens every connection (client to gateway, gateway to upstream) and is not what a call in flow costs;
2. streams: 100, 250, 500, 750, 1000 concurrent streams (``--stream-steps``), directly, through
   routerhub (an LLM's name) and through LiteLLM; a stream is an error unless it is answered 200 and
   delivers all its chunks and ``[DONE]``. Time to the first chunk and the whole stream's duration are
   reported too;
3. the CPU time each side used (gateway processes, PostgreSQL, the fake upstream, this client), so a
   figure can be told apart from the machine being busy. The machine is shared: the load average is
   recorded with every run;
4. with ``--metrics-off`` and ``--tracing``, what metrics and traces cost: this checkout served a second
   time with ``ROUTERHUB_METRICS=0``, and a third time with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a
   null OTLP/HTTP collector (this file, ``--serve-collector``: it decodes and counts the spans, keeps
   nothing), each routerhub target measured through each right after this checkout's. With
   ``--rounds N`` the overhead runs are repeated N times, the order of the targets reversed every other
   round, and the report gives, per variant, the median and the spread over the rounds of each round's
   ratio (switched on ÷ switched off) of the gateway's CPU per request, the latency p50 and the
   requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import Connection, free_port, machine, publish, server_timing, stop

PROJECT_DIR = Path(__file__).resolve().parents[1]
LITELLM_VENV = PROJECT_DIR / "benchmarks" / ".venv-litellm"
# Pinned, so two runs compare the same proxy. 1.107.0 was a compromised release (pulled from PyPI);
# Newer ones pin litellm-proxy, litellm-proxy-extras or litellm-enterprise versions that the package index
# here does not serve (their [proxy] extra cannot be installed): 1.106.12 is the newest whose extra installs
# (checked 2026-12), and it was published before the compromised one;
# any pin must be a version published cleanly — change it only after checking the project's advisories.
LITELLM_VERSION = "1.106.12"
LITELLM_MODEL = "bench-model"
LITELLM_KEY = "sk-bench-master-key"
# A proxy that only forwards (benchmarks/floor_proxy.py): what serving a call from Python costs at all.
FLOOR = "bare proxy (floor)"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each overhead run (default 10)")
    parser.add_argument(
        "--min-requests", type=int, default=20, help="an overhead run goes on until it has at least this many answers"
    )
    parser.add_argument("--concurrency", default="1,50,200", help="concurrent clients of the overhead runs")
    parser.add_argument(
        "--warm-up",
        type=float,
        default=3.0,
        help="seconds of unmeasured calls by the same clients before each overhead run (default 3)",
    )
    parser.add_argument("--stream-steps", default="100,250,500,750,1000", help="concurrent streams, stepped up")
    parser.add_argument("--stream-rounds", type=int, default=1, help="streams each client opens, one after the other")
    parser.add_argument(
        "--give-up",
        type=float,
        default=5.0,
        help="a target's streams are not stepped up further once their median took this many times the "
        "stream's length, or had errors (default 5)",
    )
    parser.add_argument("--workers", type=int, default=2, help="routerhub's web workers (default 2, as make run)")
    parser.add_argument("--latency", type=float, default=1.0, help="the fake upstream's latency, non-streamed (s)")
    parser.add_argument("--chunks", type=int, default=50, help="chunks of a streamed answer")
    parser.add_argument("--stream-seconds", type=float, default=2.0, help="how long a streamed answer takes (s)")
    parser.add_argument(
        "--litellm-workers",
        type=int,
        default=1,
        help="LiteLLM's workers (default 1: with --num_workers 2 its uvicorn supervisor's workers never "
        "answered within 300 s here, at LiteLLM 1.106.12 on Python 3.11)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument(
        "--no-floor", action="store_true", help="leave out the bare Python proxy (benchmarks/floor_proxy.py)"
    )
    parser.add_argument("--targets", default="", help="only these targets (comma-separated names of the report)")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also serve the checkout PATH (its scripts/web.sh, same database) and measure each routerhub target "
        "through it right after this checkout's, named '<target> [NAME]' (set DJANGO_SECRET_KEY: every checkout "
        "must decrypt the benchmark LLM's key)",
    )
    parser.add_argument(
        "--metrics-off",
        action="store_true",
        help="also serve this checkout with ROUTERHUB_METRICS=0 and measure each routerhub target through it, "
        "named '<target> [metrics off]'",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="also serve this checkout with traces sent to a null OTLP collector and measure each routerhub "
        "target through it, named '<target> [tracing]'",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the overhead runs this many times, the targets' order reversed every other round (default 1)",
    )
    parser.add_argument(
        "--shadow-share",
        type=float,
        default=None,
        metavar="SHARE",
        help="also measure each routerhub target as a tenant whose gateway calls are shadowed at SHARE, right after "
        "the same target unshadowed, named '<target> [shadow on]' (the offers go to CELERY_BROKER_URL, else to an "
        "embedded Redis started here; no worker runs: the evaluations wait in the queue)",
    )
    parser.add_argument(
        "--shadow-comparison",
        choices=("fixed", "best"),
        default="fixed",
        help="the shadowed tenant's comparison LLM: one of the benchmark's own (fixed, the default), or none named, "
        "so that routing's choice at λ = 0 is the comparison (best)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-collector", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the fake upstream (its own process) -----------------------------------------------------------


class FakeUpstream:
    """Just enough HTTP/1.1 for an OpenAI client: keep-alive, Content-Length bodies, chunked streams.

    Written on bare asyncio streams rather than an ASGI server so that the upstream's own cost per
    request and per chunk stays small next to what the gateways add (each chunk is one write)."""

    def __init__(self, *, latency: float, chunks: int, stream_seconds: float) -> None:
        self.latency, self.chunks, self.interval = latency, chunks, stream_seconds / chunks

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                if method == "POST" and path.endswith("/chat/completions"):
                    payload = json.loads(body or b"{}")
                    if payload.get("stream"):
                        await self._stream(writer, payload)
                    else:
                        await asyncio.sleep(self.latency)
                        self._json(writer, 200, _completion(payload))
                elif method == "GET" and path.endswith("/models"):
                    self._json(writer, 200, {"object": "list", "data": [{"id": LITELLM_MODEL, "object": "model"}]})
                else:
                    self._json(writer, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _json(writer, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    async def _stream(self, writer, payload: dict) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        model = payload.get("model", "")
        for i in range(self.chunks):
            # Absolute times, so the stream takes --stream-seconds however late each wake-up is.
            await asyncio.sleep(max(0.0, started + i * self.interval - loop.time()))
            delta = {"role": "assistant", "content": "word "} if i == 0 else {"content": "word "}
            _chunk(writer, {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip
            await writer.drain()
        usage = {"prompt_tokens": _prompt_tokens(payload), "completion_tokens": self.chunks}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        _chunk(writer, {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})  # fmt: skip
        _chunk(writer, {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model,
                        "choices": [], "usage": usage})  # fmt: skip
        data = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))


def _chunk(writer, payload: dict) -> None:
    data = b"data: " + json.dumps(payload).encode() + b"\n\n"
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _prompt_tokens(payload: dict) -> int:
    text = " ".join(str(m.get("content", "")) for m in payload.get("messages") or [] if isinstance(m, dict))
    return 3 + len(text) // 4


def _completion(payload: dict) -> dict:
    usage = {"prompt_tokens": _prompt_tokens(payload), "completion_tokens": 12}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A fixed answer of about twelve tokens, for the benchmark.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def serve_upstream(port: int, args: argparse.Namespace) -> None:
    import uvloop

    upstream = FakeUpstream(latency=args.latency, chunks=args.chunks, stream_seconds=args.stream_seconds)

    async def main() -> None:
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def serve_collector(port: int) -> None:
    """A null OTLP/HTTP collector: every export to ``/v1/traces`` decoded (as a collector must) and its
    spans counted, then dropped; ``GET /count`` answers ``{"exports": n, "spans": n}``."""
    import gzip

    import uvloop
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts = {"exports": 0, "spans": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                if request_line.startswith("POST") and " /v1/traces " in request_line:
                    if headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    export = ExportTraceServiceRequest()
                    export.ParseFromString(body)
                    counts["exports"] += 1
                    counts["spans"] += sum(
                        len(scope.spans) for resource in export.resource_spans for scope in resource.scope_spans
                    )
                    answer, kind = b"", "application/x-protobuf"  # an empty ExportTraceServiceResponse
                else:
                    answer, kind = json.dumps(counts).encode(), "application/json"
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# --- processes ------------------------------------------------------------------------------------


def start(
    command: list[str], *, env: dict, log: Path, ready_url: str, timeout: float = 180, own_session: bool = True
) -> subprocess.Popen:
    """``command`` in a process group of its own (stopped with its children by ``harness.stop``), and in a
    session of its own unless ``own_session`` is false — Linux's scheduler (autogroup) shares a busy CPU
    between sessions, so each session gets a share however many processes it runs."""
    import httpx

    process = subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=own_session,
        process_group=None if own_session else 0,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(ready_url, timeout=5).status_code < 500:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(process)
    raise RuntimeError(f"{command[0]} did not answer {ready_url} in {timeout:.0f} s; see {log}")


def ensure_litellm(version: str = LITELLM_VERSION) -> Path:
    """LiteLLM's proxy in a venv of its own (its dependencies must not touch the project's .venv)."""
    executable = LITELLM_VENV / "bin" / "litellm"
    stamp = LITELLM_VENV / f".installed-litellm-{version}"
    if stamp.exists() and executable.exists():
        return executable
    python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    print(f"Installing litellm[proxy]=={version} into {LITELLM_VENV.relative_to(PROJECT_DIR)} ...", flush=True)
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"litellm[proxy]=={version}"], check=True)
    stamp.touch()
    return executable


def litellm_config(path: Path, upstream_url: str) -> None:
    # JSON is YAML: no YAML writer needed. One model at the fake upstream; no routing, retries,
    # database or callbacks — the least LiteLLM does per request.
    path.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": LITELLM_MODEL,
                        "litellm_params": {
                            "model": f"openai/{LITELLM_MODEL}",
                            "api_base": upstream_url,
                            "api_key": "sk-fake",
                        },
                    }
                ],
                "litellm_settings": {"num_retries": 0, "request_timeout": 120, "telemetry": False},
                "general_settings": {"master_key": LITELLM_KEY},
            },
            indent=1,
        )
    )


# --- CPU accounting -------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by groups of processes (each with its children) between two readings."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.last = self.read()

    @staticmethod
    def _tree_seconds(pid: int) -> float:
        import psutil

        total = 0.0
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def read(self) -> dict[str, float]:
        usage = os.times()
        readings = {name: sum(self._tree_seconds(pid) for pid in pids) for name, pids in self.groups.items()}
        readings["client"] = usage.user + usage.system
        return readings

    def since_last(self) -> dict[str, float]:
        now = self.read()
        spent = {name: now[name] - self.last.get(name, 0.0) for name in now}
        self.last = now
        return spent


def postgres_pids() -> list[int]:
    """The embedded PostgreSQL serving this checkout (its postmaster; backends are its children)."""
    import psutil
    from django.db import connection

    data_dir = str(connection.settings_dict.get("DATA_DIR") or "")
    pids = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "postgres" and "-D" in cmdline and (not data_dir or data_dir in cmdline):
            pids.append(process.pid)
    return pids


# --- the client -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str  # …/chat/completions
    key: str
    model: str
    prompt: str  # "fixed" (one prompt, again and again) or "new" (a new prompt every request)
    gateway: str  # "direct", "routerhub" or "litellm": whose CPU counts


@dataclass
class Run:
    target: str
    clients: int
    round: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    server: dict[str, list[float]] = field(default_factory=dict)
    embed_sources: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    load: str = ""

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def failed(self) -> int:
        return len(self.errors)


class Prompts:
    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.sent = 0

    def next(self, kind: str) -> str:
        if kind == "fixed":
            return self.texts[0]
        # A nonce in front: every text (and so its embedding's cache key) is new.
        self.sent += 1
        return f"[{uuid.uuid4().hex[:8]}] {self.texts[self.sent % len(self.texts)]}"


def _body(target: Target, prompts: Prompts, *, stream: bool) -> dict:
    body = {"model": target.model, "messages": [{"role": "user", "content": prompts.next(target.prompt)}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def overhead_run(target: Target, prompts: Prompts, *, clients: int, seconds: float, min_requests: int) -> Run:
    """``clients`` concurrent clients, back to back, for ``seconds`` (and at least ``min_requests``)."""
    run = Run(target=target.name, clients=clients)
    headers = {"Authorization": f"Bearer {target.key}"}
    began = time.perf_counter()
    deadline = began + seconds

    async def one_client() -> None:
        connection = Connection(target.url)
        while time.perf_counter() < deadline or run.answered + run.failed < min_requests:
            body = json.dumps(_body(target, prompts, stream=False)).encode()
            sent = time.perf_counter()
            try:
                status, response_headers, data = await connection.request(headers, body)
            except Exception as exc:  # noqa: BLE001 — every failure is counted, whatever it is
                run.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            elapsed = (time.perf_counter() - sent) * 1e3
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status != 200:
                run.errors.append(f"HTTP {status}: {data[:200]!r}")
                continue
            run.latencies_ms.append(elapsed)
            for metric, (duration, description) in server_timing(response_headers.get("server-timing", "")).items():
                run.server.setdefault(metric, []).append(duration)
                if metric == "embed":
                    run.embed_sources[description] = run.embed_sources.get(description, 0) + 1
        connection.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    run.seconds = time.perf_counter() - began
    return run


async def stream_run(target: Target, prompts: Prompts, *, clients: int, rounds: int, chunks: int) -> Run:
    """``clients`` concurrent streams, ``rounds`` each one after the other."""
    run = Run(target=target.name, clients=clients)
    headers = {"Authorization": f"Bearer {target.key}"}
    began = time.perf_counter()

    async def one_stream(connection: Connection) -> None:
        body = json.dumps(_body(target, prompts, stream=True)).encode()
        sent = time.perf_counter()
        first = []
        try:
            status, _, received = await connection.request(
                headers, body, on_first_data=lambda: first.append(time.perf_counter())
            )
        except Exception as exc:  # noqa: BLE001
            run.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        run.statuses[status] = run.statuses.get(status, 0) + 1
        content_chunks = received.count(b'"content"')
        if status != 200:
            run.errors.append(f"HTTP {status}: {received[:200]!r}")
        elif b"data: [DONE]" not in received or content_chunks < chunks or b'"error"' in received:
            run.errors.append(f"incomplete stream: {content_chunks} chunks, tail {received[-120:]!r}")
        else:
            run.latencies_ms.append((time.perf_counter() - sent) * 1e3)
            run.ttft_ms.append((first[0] - sent) * 1e3 if first else float("nan"))

    async def one_client() -> None:
        connection = Connection(target.url)
        for _ in range(rounds):
            await one_stream(connection)
        connection.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    run.seconds = time.perf_counter() - began
    return run


# --- data -----------------------------------------------------------------------------------------


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    # The benchmark's LLM lives at the loopback fake upstream, which LLM endpoints may reach only when listed.
    os.environ["ROUTERHUB_UPSTREAM_ALLOWED_HOSTS"] = "127.0.0.1"
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()


# One run at a time per database: a run points the LLMs at its own fake upstream and puts back the
# endpoints it found, so a second run would save the first one's and leave them behind.
RUN_LOCK = 0x6777_6C6F  # pg_advisory_lock key, "gwlo"


def hold_run_lock() -> None:
    """Hold this database's benchmark lock for the whole run (the session's connection keeps it), or
    exit saying that another run holds it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK])
        if not cursor.fetchone()[0]:
            sys.exit("Another gateway benchmark is running on this database; run one at a time.")


SYNTHETIC_PROMPTS = [
    "What is the derivative of x**3 + 2x with respect to x?",
    "Name the process by which plants turn light into chemical energy.",
    "Which treaty ended the Thirty Years' War?",
]


def routing_prompts() -> list[str] | None:
    """Short MMLU-Pro questions (without their options) of the active state's test split; None
    without an active routing state (then only the LLM-name targets run)."""
    from registry.models import Prompt
    from routing.exceptions import NoActiveRoutingState
    from routing.selectors.state import routing_state_active

    try:
        state = routing_state_active()
    except NoActiveRoutingState:
        return None
    texts = (
        Prompt.objects.filter(prompt_set=state.prompt_set, split="test").order_by("id").values_list("text", flat=True)
    )
    return [t.split("\nA. ")[0][:400] for t in texts[:2000]] or None


@dataclass
class BenchData:
    tenant: object
    key: str
    llm: object  # the LLM called by name: the benchmark's own, deleted afterwards
    endpoints: list[tuple[int, str, str]]  # (llm id, api_base, api_model) of the others, before the run


def bench_data(upstream_url: str, *, routed: bool) -> BenchData:
    """A tenant with a budget no run can spend, an LLM of the benchmark's own at the fake upstream
    (with a key, as a real one has: it is decrypted on every call), and — for ``routerhub-auto`` —
    every other LLM answering at the fake upstream too."""
    from django.db.models import F
    from django.utils import timezone

    from registry.models import LLM
    from registry.services import llm_register
    from routing.services.tenancy import api_key_create, tenant_create

    tag = uuid.uuid4().hex[:6]
    tenant = tenant_create(name=f"bench-gateway-{tag}", budget_usd="10000000")
    key = api_key_create(tenant=tenant, name="gateway benchmark").secret
    llm = llm_register(
        name=f"bench-gateway-{tag}",
        api_base=upstream_url,
        api_model=LITELLM_MODEL,
        api_key="sk-fake",
        usd_per_mtok_in=1.0,
        usd_per_mtok_out=2.0,
    )
    endpoints = []
    if routed:
        others = LLM.objects.exclude(id=llm.id)
        endpoints = list(others.values_list("id", "api_base", "api_model"))
        others.update(api_base=upstream_url, api_model=F("name"), updated_at=timezone.now())
    return BenchData(tenant=tenant, key=key, llm=llm, endpoints=endpoints)


SHADOW_ON = " [shadow on]"


def shadow_tenant(
    data: BenchData, upstream_url: str, share: float, *, fixed_comparison: bool = True
) -> tuple[object, str, object]:
    """A second tenant like the first, with a ``share`` of its gateway calls shadowed: compared with an LLM of
    the benchmark's own at the fake upstream (or, without ``fixed_comparison``, with routing's choice at λ = 0)
    and judged by the benchmark's LLM, paid from a shadow budget of its own that no run can spend. Returns
    (tenant, key, comparison LLM)."""
    from decimal import Decimal

    from registry.services import llm_register
    from routing.models import ShadowBudget
    from routing.services.tenancy import api_key_create, tenant_create

    comparison = llm_register(
        name=f"{data.llm.name}-comparison",
        api_base=upstream_url,
        api_model=LITELLM_MODEL,
        api_key="sk-fake",
        usd_per_mtok_in=10.0,
        usd_per_mtok_out=30.0,
    )
    tenant = tenant_create(name=f"{data.tenant.name}-shadow", budget_usd="10000000")
    tenant.shadow_share, tenant.shadow_judge_llm = share, data.llm
    tenant.shadow_comparison_llm = comparison if fixed_comparison else None
    tenant.save()
    ShadowBudget.objects.create(tenant=tenant, limit_usd=Decimal(1_000_000))
    return tenant, api_key_create(tenant=tenant, name="gateway benchmark").secret, comparison


def restore_shadow(tenant, comparison) -> dict:
    """Delete the shadow tenant and what it left; returns how many evaluations each status holds."""
    from django.db.models import Count

    from routing.models import BudgetPeriod, Decision, ShadowBudget, ShadowEvaluation

    rows = ShadowEvaluation.objects.filter(tenant=tenant)
    counts = dict(rows.values_list("status").annotate(n=Count("pk")))
    rows.delete()
    ShadowBudget.objects.filter(tenant=tenant).delete()
    Decision.objects.filter(tenant=tenant).delete()
    BudgetPeriod.objects.filter(tenant=tenant).delete()
    tenant.delete()
    comparison.delete()
    return counts


def start_broker(logs: Path) -> tuple[subprocess.Popen, str]:
    """An embedded Redis, as ``make run`` starts one, on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "routerhub.embedded", "redis", str(logs / "redis"), str(port)],
        cwd=PROJECT_DIR, stdout=(logs / "redis.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = subprocess.run(
        [sys.executable, "-m", "routerhub.embedded", "redis-url", str(port)],
        cwd=PROJECT_DIR, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return process, url


def restore(data: BenchData) -> None:
    from registry.models import LLM
    from routing.models import BudgetPeriod, Decision

    for llm_id, api_base, api_model in data.endpoints:
        LLM.objects.filter(id=llm_id).update(api_base=api_base, api_model=api_model)
    Decision.objects.filter(tenant=data.tenant).delete()
    BudgetPeriod.objects.filter(tenant=data.tenant).delete()
    data.tenant.delete()
    data.llm.delete()


# --- report ---------------------------------------------------------------------------------------


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def metrics_dir(logs: Path, name: str) -> Path:
    folder = logs / f"prometheus-{name.replace(' ', '-')}"
    folder.mkdir(mode=0o700)
    return folder


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def f1(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"


def _cpu_ms_per_request(run: Run) -> float:
    """The gateway's CPU milliseconds per answered request of a run (NaN when nothing was answered)."""
    return run.cpu.get(_gateway_of(run), 0.0) * 1e3 / run.answered if run.answered else float("nan")


def _gateway_of(run: Run) -> str:
    """Whose processes' CPU is the gateway's in this run ("direct": none)."""
    target = run.target.removesuffix(SHADOW_ON)  # the same server as the target unshadowed
    if target.startswith("routerhub"):
        return f"routerhub {target[:-1].rsplit(' [', 1)[1]}" if target.endswith("]") else "routerhub"
    return {"litellm": "litellm", FLOOR: "floor"}.get(run.target, "none")


def overhead_table(runs: list[Run], concurrency: list[int]) -> list[str]:
    lines = [
        "| clients | target | answered | errors | latency p50 / p99 ms | **overhead p50 / p99 ms** | "
        "server split p50 (queue / auth / embed / route / budget / prepare / finish) ms | embeddings | CPU ms per request "
        "(gateway / PostgreSQL / upstream / client) | load avg |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    rounds = max((r.round for r in runs), default=0) + 1
    for clients in concurrency:
        level = [r for r in runs if r.clients == clients]
        for run in level:
            direct = next((r for r in level if r.target == "direct" and r.round == run.round), None)
            p50, p99 = pct(run.latencies_ms, 50), pct(run.latencies_ms, 99)
            if direct is None or run is direct:
                overhead = "—"
            else:
                overhead = f"**{p50 - pct(direct.latencies_ms, 50):+.1f} / {p99 - pct(direct.latencies_ms, 99):+.1f}**"
            split = " / ".join(
                f1(pct(run.server.get(m, []), 50))
                for m in ("queue", "auth", "embed", "route", "budget", "prepare", "finish")
            )
            split = split if run.server else "—"
            sources = ", ".join(f"{v} {k}" for k, v in sorted(run.embed_sources.items())) or "—"
            n = max(run.answered, 1)
            cpu = run.cpu
            cpu_text = " / ".join(
                f"{cpu.get(name, 0) / n * 1e3:.1f}" for name in (_gateway_of(run), "postgres", "upstream", "client")
            )
            name = f"{run.target} · round {run.round + 1}" if rounds > 1 else run.target
            lines.append(
                f"| {clients} | {name} | {run.answered} | {run.failed} | {f1(p50)} / {f1(p99)} | {overhead} | "
                f"{split} | {sources} | {cpu_text} | {run.load} |"
            )
    return lines


@dataclass
class Variant:
    """Another web server measured against this checkout's: ``on`` names which side has the feature on."""

    name: str
    path: Path
    env: dict[str, str]
    on: str  # "variant": its runs are "on" (tracing, another checkout); "base": this checkout's are (metrics)


def shadow_table(runs: list[Run], concurrency: list[int], share: float) -> list[str]:
    """Per round, each server's target as the shadowed tenant against the same target unshadowed: the
    answered call's p50 and p95 on − off, and the gateway's CPU per request on − off (what an offer costs
    the web processes, with every call shadowed); medians of the rounds, with their minimum–maximum."""
    import statistics

    def spread(values: list[float], digits: int) -> str:
        values = [v for v in values if v == v]
        if not values:
            return "—"
        return f"{statistics.median(values):+.{digits}f} ({min(values):+.{digits}f} to {max(values):+.{digits}f})"

    def shadowed_name(target: str) -> str:
        if target.endswith("]"):
            head, tail = target.rsplit(" [", 1)
            return f"{head}{SHADOW_ON} [{tail}"
        return target + SHADOW_ON

    lines = [
        "| clients | target | rounds | p50 on − off ms | p95 on − off ms | gateway CPU ms/req off → on (medians) "
        "| **CPU per shadowed call ms** |",
        "| ---: | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for clients in concurrency:
        level = [r for r in runs if r.clients == clients]
        names = sorted({r.target for r in level if r.target.startswith("routerhub") and SHADOW_ON not in r.target})
        for name in names:
            pairs = [
                (on, off)
                for off in level
                if off.target == name and off.answered
                for on in level
                if on.target == shadowed_name(name) and on.round == off.round and on.answered
            ]
            if not pairs:
                continue
            lines.append(
                f"| {clients} | {name} | {len(pairs)} | "
                f"{spread([pct(on.latencies_ms, 50) - pct(off.latencies_ms, 50) for on, off in pairs], 1)} | "
                f"{spread([pct(on.latencies_ms, 95) - pct(off.latencies_ms, 95) for on, off in pairs], 1)} | "
                f"{statistics.median(_cpu_ms_per_request(off) for _, off in pairs):.2f} → "
                f"{statistics.median(_cpu_ms_per_request(on) for on, _ in pairs):.2f} | "
                f"**{spread([(_cpu_ms_per_request(on) - _cpu_ms_per_request(off)) / share for on, off in pairs], 2)}** |"
            )
    return lines


def variant_table(runs: list[Run], variants: list[Variant], concurrency: list[int]) -> list[str]:
    """Per round, each variant's run against this checkout's run of the same target: the ratio on ÷ off."""
    import statistics

    def spread(values: list[float]) -> str:
        values = [v for v in values if v == v]
        if not values:
            return "—"
        return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"

    lines = [
        "| clients | target | on ÷ off | rounds | gateway CPU ms/req off → on (medians) | **CPU per request on ÷ off** "
        "| latency p50 on ÷ off | overhead p50 ms off → on (medians) | req/s on ÷ off |",
        "| ---: | --- | --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for clients in concurrency:
        level = [r for r in runs if r.clients == clients]
        bases = sorted({r.target for r in level if r.target.startswith("routerhub") and not r.target.endswith("]")})
        for base in bases:
            for variant in variants:
                pairs = []
                for mine in (r for r in level if r.target == base):
                    other = next(
                        (r for r in level if r.target == f"{base} [{variant.name}]" and r.round == mine.round), None
                    )
                    direct = next((r for r in level if r.target == "direct" and r.round == mine.round), None)
                    if other is None or not (mine.answered and other.answered):
                        continue
                    on, off = (other, mine) if variant.on == "variant" else (mine, other)
                    pairs.append((on, off, direct))
                if not pairs:
                    continue
                label = (
                    f"[{variant.name}] ÷ this checkout"
                    if variant.on == "variant"
                    else f"this checkout ÷ [{variant.name}]"
                )

                def overhead(run: Run, direct: Run | None) -> float:
                    return pct(run.latencies_ms, 50) - pct(direct.latencies_ms, 50) if direct else float("nan")

                cpu_off = statistics.median(_cpu_ms_per_request(off) for _, off, _ in pairs)
                cpu_on = statistics.median(_cpu_ms_per_request(on) for on, _, _ in pairs)
                over_off = statistics.median(overhead(off, d) for _, off, d in pairs)
                over_on = statistics.median(overhead(on, d) for on, _, d in pairs)
                lines.append(
                    f"| {clients} | {base} | {label} | {len(pairs)} | {cpu_off:.2f} → {cpu_on:.2f} | "
                    f"**{spread([_cpu_ms_per_request(on) / _cpu_ms_per_request(off) for on, off, _ in pairs])}** | "
                    f"{spread([pct(on.latencies_ms, 50) / pct(off.latencies_ms, 50) for on, off, _ in pairs])} | "
                    f"{over_off:+.1f} → {over_on:+.1f} | "
                    f"{spread([(on.answered / on.seconds) / (off.answered / off.seconds) for on, off, _ in pairs])} |"
                )
    return lines


def stream_table(runs: list[Run]) -> list[str]:
    lines = [
        "| streams | target | complete | errors | first chunk p50 / p99 ms | whole stream p50 / p99 ms | "
        "CPU s (gateway / PostgreSQL / upstream / client) | load avg | first error |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for run in runs:
        cpu = run.cpu
        first_error = run.errors[0].replace("|", "\\|")[:120] if run.errors else ""
        lines.append(
            f"| {run.clients} | {run.target} | {run.answered} | {run.failed} | {f1(pct(run.ttft_ms, 50))} / "
            f"{f1(pct(run.ttft_ms, 99))} | {f1(pct(run.latencies_ms, 50))} / {f1(pct(run.latencies_ms, 99))} | "
            + " / ".join(f"{cpu.get(name, 0):.1f}" for name in (_gateway_of(run), "postgres", "upstream", "client"))
            + f" | {run.load} | {first_error} |"
        )
    return lines


def summary(runs: list[Run], streams: list[Run], concurrency: list[int], stream_seconds: float) -> list[str]:
    lines = []
    for clients in concurrency:
        level = {r.target: r for r in runs if r.clients == clients}
        direct = level.get("direct")
        if direct is None:
            continue

        def over(name: str, q: float, level=level, direct=direct) -> float:
            run = level.get(name)
            return pct(run.latencies_ms, q) - pct(direct.latencies_ms, q) if run and run.latencies_ms else float("nan")

        rh50, rh99 = over("routerhub (LLM name)", 50), over("routerhub (LLM name)", 99)
        text = f"- {clients} clients: routerhub with an LLM's name adds {rh50:+.1f} ms p50, {rh99:+.1f} ms p99"
        if "litellm" in level:
            ll50, ll99 = over("litellm", 50), over("litellm", 99)
            ratio = rh50 / ll50 if ll50 and ll50 == ll50 and ll50 > 0 else float("nan")
            text += f"; LiteLLM adds {ll50:+.1f} ms p50, {ll99:+.1f} ms p99 (routerhub / LiteLLM at p50: {ratio:.2f})"
        if FLOOR in level:
            text += (
                f"; a bare Python proxy (the floor) adds {over(FLOOR, 50):+.1f} ms p50, {over(FLOOR, 99):+.1f} ms p99"
            )
        if "routerhub-auto (cached prompt)" in level:
            auto_fixed, auto_new = over("routerhub-auto (cached prompt)", 50), over("routerhub-auto (new prompt)", 50)
            text += f"; routerhub-auto adds {auto_fixed:+.1f} ms p50 with a cached prompt, {auto_new:+.1f} ms with a new one"
        lines.append(text + ".")
        for name in [t for t in level if t + SHADOW_ON in level]:
            on = level[name + SHADOW_ON]
            d50 = pct(on.latencies_ms, 50) - pct(level[name].latencies_ms, 50)
            d99 = pct(on.latencies_ms, 99) - pct(level[name].latencies_ms, 99)
            lines.append(
                f"- {clients} clients, {name}: shadow evaluation on − off: {d50:+.1f} ms p50, {d99:+.1f} ms p99 "
                f"({on.answered} and {level[name].answered} answers)."
            )
    for name in sorted({r.target for r in streams}):
        runs = [r for r in streams if r.target == name]
        clean = [r for r in runs if not r.errors and r.answered]
        failing = [r.clients for r in runs if r.errors]
        best = max(clean, key=lambda r: r.clients) if clean else None
        held = f"{best.clients} (median stream {pct(best.latencies_ms, 50) / 1e3:.1f} s" if best else "none"
        lines.append(
            f"- streams, {name}: most concurrent streams with no error: {held}"
            + (f" for a {stream_seconds:g} s answer)" if best else "")
            + (f"; errors at {', '.join(map(str, failing))}" if failing else "")
            + "."
        )
    return lines


# --- main -----------------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args)
        return
    if args.serve_collector:
        serve_collector(args.serve_collector)
        return
    import uvloop

    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))  # stopped either way, it cleans up
    setup_django()
    hold_run_lock()
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    steps = [int(s) for s in args.stream_steps.split(",") if s]
    load_before = loadavg()
    litellm = None if args.no_litellm else ensure_litellm()
    texts = routing_prompts()
    prompts = Prompts(texts or SYNTHETIC_PROMPTS)
    logs = Path(tempfile.mkdtemp(prefix="routerhub-gateway-bench-"))
    python = sys.executable
    upstream_port, routerhub_port, litellm_port, floor_port = free_port(), free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTERHUB_PORT", "ROUTERHUB_HOST"))}
    variants = [
        Variant(name, Path(path).resolve(), {}, "variant")
        for name, path in (entry.partition("=")[::2] for entry in args.also)
    ]
    if args.metrics_off:
        variants.append(Variant("metrics off", PROJECT_DIR, {"ROUTERHUB_METRICS": "0"}, "base"))
    if args.tracing:
        variants.append(Variant("tracing", PROJECT_DIR, {}, "variant"))
    for variant in variants:
        variant.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(logs, variant.name))
    processes: dict[str, subprocess.Popen] = {}
    data = None
    shadowed = None
    shadow_counts: dict = {}
    runs: list[Run] = []
    streams: list[Run] = []
    spans: dict | None = None
    try:
        processes["upstream"] = start(
            [python, __file__, "--serve-upstream", str(upstream_port), "--latency", str(args.latency),
             "--chunks", str(args.chunks), "--stream-seconds", str(args.stream_seconds)],
            env=base_env, log=logs / "upstream.log", ready_url=f"{upstream_url}/models",
        )  # fmt: skip
        data = bench_data(upstream_url, routed=texts is not None)
        if args.shadow_share is not None:
            shadowed = shadow_tenant(
                data, upstream_url, args.shadow_share, fixed_comparison=args.shadow_comparison == "fixed"
            )
            if not (os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")):
                processes["redis"], base_env["CELERY_BROKER_URL"] = start_broker(logs)
        routerhub_env = {
            **base_env,
            # Each server of this checkout its own metrics folder (scripts/web.sh would empty the one
            # they share under .run/ as each starts).
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(logs, "routerhub")),
            "ROUTERHUB_PORT": str(routerhub_port),
            "WEB_CONCURRENCY": str(args.workers),
            "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS": "127.0.0.1",
            # One key sends every request: the per-key limit (6,000/min) would cap what is measured.
            "ROUTERHUB_THROTTLE_API_KEY": "",
        }
        processes["routerhub"] = start(
            [str(PROJECT_DIR / "scripts" / "web.sh")], env=routerhub_env, log=logs / "routerhub.log",
            ready_url=f"http://127.0.0.1:{routerhub_port}/v1/models",  # 401 once it serves
        )  # fmt: skip
        routerhub_url = f"http://127.0.0.1:{routerhub_port}/v1/chat/completions"
        routerhub_targets = [
            Target("routerhub (LLM name)", routerhub_url, data.key, data.llm.name, "fixed", "routerhub")
        ]
        if texts is not None:
            routerhub_targets += [
                Target(
                    "routerhub-auto (cached prompt)", routerhub_url, data.key, "routerhub-auto", "fixed", "routerhub"
                ),
                Target("routerhub-auto (new prompt)", routerhub_url, data.key, "routerhub-auto", "new", "routerhub"),
            ]
        else:
            print("No active routing state: routerhub-auto is left out (see the docstring).", flush=True)
        if shadowed is not None:  # each target beside the same target as the shadowed tenant, in turn first
            routerhub_targets = [
                twin
                for index, target in enumerate(routerhub_targets)
                for twin in (target, replace(target, name=target.name + SHADOW_ON, key=shadowed[1]))[:: (-1) ** index]
            ]
        targets = [Target("direct", f"{upstream_url}/chat/completions", "sk-fake", LITELLM_MODEL, "fixed", "direct")]
        for variant in variants:
            if variant.name == "tracing":
                collector_port = free_port()
                collector_url = f"http://127.0.0.1:{collector_port}"
                processes["collector"] = start(
                    [python, __file__, "--serve-collector", str(collector_port)], env=base_env,
                    log=logs / "collector.log", ready_url=f"{collector_url}/count",
                )  # fmt: skip
                variant.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector_url, OTEL_SERVICE_NAME="routerhub-bench")
        also_ports = {variant.name: free_port() for variant in variants}
        for variant in variants:
            port = also_ports[variant.name]
            processes[f"routerhub {variant.name}"] = start(
                [str(variant.path / "scripts" / "web.sh")],
                env={**routerhub_env, **variant.env, "ROUTERHUB_PORT": str(port)},
                log=logs / f"routerhub-{variant.name}.log", ready_url=f"http://127.0.0.1:{port}/v1/models",
            )  # fmt: skip
        for target in routerhub_targets:
            targets.append(target)
            for name, port in also_ports.items():
                url = target.url.replace(f":{routerhub_port}/", f":{port}/")
                targets.append(replace(target, name=f"{target.name} [{name}]", url=url, gateway=f"routerhub {name}"))
        if not args.no_floor:
            floor_url = f"http://127.0.0.1:{floor_port}/v1/chat/completions"
            processes["floor"] = start(
                [str(PROJECT_DIR / ".venv" / "bin" / "uvicorn"), "floor_proxy:app", "--app-dir", str(PROJECT_DIR / "benchmarks"),
                 "--host", "127.0.0.1", "--port", str(floor_port), "--workers", str(args.workers), "--loop", "uvloop",
                 "--http", "httptools", "--lifespan", "off", "--no-access-log"],
                env={**base_env, "FLOOR_UPSTREAM_URL": f"{upstream_url}/chat/completions"}, log=logs / "floor.log",
                ready_url=floor_url,
            )  # fmt: skip
            targets.append(
                Target(FLOOR, floor_url, "sk-fake", LITELLM_MODEL, "fixed", "floor")
            )  # fmt: skip
        if litellm:
            config = logs / "litellm.yaml"
            litellm_config(config, upstream_url)
            litellm_env = {
                **base_env,
                # No fetch of the model price map from the internet at start (this machine has none).
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "DISABLE_ADMIN_UI": "True",
            }
            processes["litellm"] = start(
                [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(litellm_port),
                 "--num_workers", str(args.litellm_workers)],
                env=litellm_env, log=logs / "litellm.log", ready_url=f"http://127.0.0.1:{litellm_port}/health/liveliness",
            )  # fmt: skip
            targets.append(
                Target("litellm", f"http://127.0.0.1:{litellm_port}/v1/chat/completions", LITELLM_KEY, LITELLM_MODEL, "fixed", "litellm")
            )  # fmt: skip
        if args.targets:
            wanted = set(args.targets.split(","))
            targets = [t for t in targets if t.name.split(" [")[0] in wanted or t.name == "direct"]
        groups = {name: [p.pid] for name, p in processes.items()}
        groups["postgres"] = postgres_pids()
        meter = CpuMeter(groups)

        async def measure() -> None:
            # Warm-up: every worker loads the embedder and the router, connections open, caches fill.
            for target in targets:
                await overhead_run(target, prompts, clients=4 * args.workers, seconds=2, min_requests=8)
            for clients in concurrency:
                for index in range(args.rounds):
                    # Every other round backwards: the machine's load, which drifts, falls on all alike.
                    for target in targets if index % 2 == 0 else targets[::-1]:
                        # The same clients first, unmeasured: each run measures calls in flow, not the
                        # connections (client to server, server to upstream) that its first wave opens.
                        await overhead_run(target, prompts, clients=clients, seconds=args.warm_up, min_requests=0)
                        meter.since_last()
                        run = await overhead_run(
                            target, prompts, clients=clients, seconds=args.seconds, min_requests=args.min_requests
                        )
                        run.cpu, run.load, run.round = meter.since_last(), loadavg(), index
                        runs.append(run)
                        print(overhead_table([run], [clients])[-1], flush=True)
            stream_targets = [
                t
                for t in targets
                if t.prompt == "fixed" and not t.name.startswith("routerhub-auto") and t.name != FLOOR
            ]
            saturated: set[str] = set()
            for clients in steps:
                for target in stream_targets:
                    if target.name in saturated:
                        continue
                    meter.since_last()
                    run = await stream_run(
                        target, prompts, clients=clients, rounds=args.stream_rounds, chunks=args.chunks
                    )
                    run.cpu, run.load = meter.since_last(), loadavg()
                    streams.append(run)
                    print(stream_table([run])[-1], flush=True)
                    # Streams that take --give-up times their length are queueing, not streaming:
                    # more of them would only take minutes to say so again.
                    if run.errors or pct(run.latencies_ms, 50) > args.give_up * args.stream_seconds * 1e3:
                        saturated.add(target.name)

        uvloop.run(measure())
        if "collector" in processes:
            import httpx

            spans = httpx.get(f"{collector_url}/count", timeout=5).json()
    finally:
        # Clean up whatever stopped the run: a second Ctrl-C must not leave servers running or the
        # LLMs pointing at a fake upstream that is gone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in processes.values():
            stop(process)
        if shadowed is not None:
            shadow_counts = restore_shadow(shadowed[0], shadowed[2])
        if data is not None:
            restore(data)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    command = ".venv/bin/python benchmarks/gateway_load.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            "# Gateway load benchmark",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}; load average before the run {load_before}, after {loadavg()}.  ",
            f"routerhub: `scripts/web.sh` (uvicorn, {args.workers} workers, database pool); "
            + (
                f"LiteLLM {LITELLM_VERSION} (`litellm --num_workers {args.litellm_workers}`, master key, no database); "
                if litellm
                else ""
            )
            + f"fake upstream: {args.latency:g} s per answer, streams of {args.chunks} chunks over "
            f"{args.stream_seconds:g} s; client, servers, PostgreSQL and upstream share the machine's cores. "
            "routerhub-auto: "
            + ("routed by the active routing state" if texts else "left out (no active routing state)")
            + ".",
            "",
            "## Summary" + (" (the first round)" if args.rounds > 1 else ""),
            "",
            *summary([r for r in runs if r.round == 0], streams, concurrency, args.stream_seconds),
            *(
                [
                    f"- shadow evaluation: the shadowed tenant's calls were offered at a share of {args.shadow_share:g} "
                    f"(comparison LLM: {'one named' if args.shadow_comparison == 'fixed' else 'routing at λ = 0'}); "
                    "evaluations left, by status (no worker ran): "
                    + (", ".join(f"{status} {n}" for status, n in sorted(shadow_counts.items())) or "none")
                    + "."
                ]
                if args.shadow_share is not None
                else []
            ),
            "",
            *(
                [
                    "## Shadow evaluation on − off",
                    "",
                    f"Each round's run of a target as the shadowed tenant (share {args.shadow_share:g}) against the "
                    "same target and server unshadowed in the same round: the medians of the rounds' differences, "
                    "with their minimum and maximum. CPU per shadowed call = the difference in the gateway's CPU per "
                    "request (the web processes' user + system time over the run ÷ answers) ÷ the share.",
                    "",
                    *shadow_table(runs, concurrency, args.shadow_share),
                    "",
                ]
                if args.shadow_share
                else []
            ),
            *(
                [
                    "## Switched on against off" if args.metrics_off or args.tracing else "## Other checkouts",
                    "",
                    f"Each round's run of a variant against this checkout's run of the same target in the same round "
                    f"({args.rounds} rounds, the order reversed every other round): the median of the rounds' "
                    "ratios on ÷ off, with their minimum–maximum. `metrics off`: this checkout served again with "
                    "`ROUTERHUB_METRICS=0` (so this checkout's runs are the ones with metrics on); `tracing`: served "
                    "again with `OTEL_EXPORTER_OTLP_ENDPOINT` at a null collector in its own process (it decodes and "
                    "counts the spans; its CPU is not the gateway's). Gateway CPU = the web processes' user + system "
                    "time over the run ÷ answers.",
                    "",
                    *variant_table(runs, variants, concurrency),
                    "",
                    *(
                        [
                            f"The collector received {spans['spans']:,} spans in {spans['exports']:,} exports "
                            f"for {sum(r.answered for r in runs if r.target.endswith('[tracing]')):,} answered "
                            "measured calls through the traced server (warm-up calls send spans too)."
                        ]
                        if spans
                        else []
                    ),
                    "",
                ]
                if variants
                else []
            ),
            "## Overhead per request (non-streamed)",
            "",
            f"Each run: {args.seconds:g} s (at least {args.min_requests} answers) of closed-loop clients, after "
            f"{args.warm_up:g} s of unmeasured calls by the same clients (their first wave opens the connections). "
            "Overhead = the percentile's latency minus the same percentile of `direct` at the same concurrency. "
            "Server split from routerhub's `Server-Timing`: queue (waiting for a thread of the gateway's pool), auth "
            "(API key, rate limit), embed (the prompt's embedding or a cache hit), route (prediction, λ, selection), "
            "budget (admission against the budget lease, or a reservation of its own), prepare (arrival to the upstream call, all of the above), "
            "finish (metering after the answer).",
            "",
            *overhead_table(runs, concurrency),
            "",
            "## Concurrent streams",
            "",
            f"Each client opens {args.stream_rounds} stream(s) one after the other; a stream counts as complete "
            f"when it is answered 200 with all {args.chunks} chunks and `[DONE]`. A target is not stepped up "
            f"after a step with errors or whose median stream took more than {args.give_up:g} × "
            f"{args.stream_seconds:g} s.",
            "",
            *stream_table(streams),
            "",
        ]
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()

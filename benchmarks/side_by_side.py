"""The route API of checkouts in one run, measured in alternating slices: what a change costs or saves.

    nice -n 10 .venv/bin/python benchmarks/side_by_side.py --old ../main --new plain=. --slices 6 --seconds 2

Every checkout (``--old``, and one or more ``--new name=path``) must use the same database (the same ``ROUTERHUB_PGDATA``, or ``DATABASE_URL``) with a
fitted router, as ``api_load.py`` needs. Each checkout's web server is started as ``make run`` starts it
(``scripts/web.sh``, from that checkout) on a port of its own, all are warmed up, and then every scenario
runs in rounds, each checkout once per round, the order reversed every other round — so that the load of a
shared machine, which drifts over minutes, falls on all alike. Only one server is under load at a time.

Per scenario and checkout it reports the median over the rounds of requests/s, client p50 latency, the
server's ``app`` and ``budget`` p50 (``Server-Timing``), and the CPU milliseconds per request of the web
processes and of PostgreSQL; and, for each new checkout, the median, minimum and maximum over the rounds
of new ÷ old.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
from api_load import delete_tenants, load, prompts, repeated, setup_django, start_server, tenant_with_key, unique
from gateway_load import CpuMeter, postgres_pids
from harness import free_port, machine, publish, stop

FIGURES = ("req/s", "client p50 ms", "app p50 ms", "budget p50 ms", "web CPU ms/req", "PostgreSQL CPU ms/req")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the checkout measured as before")
    parser.add_argument(
        "--new", action="append", required=True, metavar="NAME=PATH", help="a checkout measured against --old"
    )
    parser.add_argument("--slices", type=int, default=6, help="rounds per scenario (default 6)")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each checkout's slice (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients of the load scenarios")
    parser.add_argument("--embedder", default="minilm-onnx-int8", help="ROUTERHUB_EMBEDDER of both servers")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    return parser.parse_args()


def figures(run, cpu: dict[str, float]) -> dict[str, float]:
    served = max(1, len(run.latencies_ms))
    return {
        "req/s": len(run.statuses) / run.seconds,
        "client p50 ms": float(np.percentile(run.latencies_ms, 50)),
        "app p50 ms": float(np.percentile(run.server["app"], 50)),
        "budget p50 ms": float(np.percentile(run.server["budget"], 50)),
        "web CPU ms/req": cpu["web"] * 1e3 / served,
        "PostgreSQL CPU ms/req": cpu["postgres"] * 1e3 / served,
    }


def main() -> None:
    args = parse_args()
    setup_django()
    short, _ = prompts()
    tag = uuid.uuid4().hex[:6]
    tenant, key = tenant_with_key(f"bench-sbs-{tag}", "10000000")
    many = [tenant_with_key(f"bench-sbs-{tag}-{i}", "10000000") for i in range(10)]
    scenarios = [
        ("short, repeated prompt", repeated(short[0]), key, 1),
        ("short, repeated prompt", repeated(short[0]), key, args.clients),
        ("short, repeated prompt, 10 tenants", repeated(short[0]), [k for _, k in many], args.clients),
        ("short, new prompt", unique(short), key, args.clients),
    ]
    sides = {"old": args.old.resolve()}
    for new in args.new:
        name, _, path = new.partition("=")
        sides[name] = Path(path).resolve()
    servers, ports = {}, {}
    try:
        for side, checkout in sides.items():
            ports[side] = free_port()
            log = Path(tempfile.mkdtemp(prefix="routerhub-sbs-")) / f"{side}.log"
            servers[side] = start_server("uvicorn", ports[side], 2, 1, 1, log, args.embedder, project_dir=checkout)
        meters = {side: CpuMeter({"web": [servers[side].pid], "postgres": postgres_pids()}) for side in sides}
        for side in sides:  # every worker loads the embedder and the router; the pacing λ is computed once
            for _ in range(3):
                load(ports[side], key, unique(short), name="warm-up", clients=4, seconds=2)
            load(ports[side], key, repeated(short[0]), name="warm-up", clients=4, seconds=1)
        results = {}
        for name, body, keys, clients in scenarios:
            measured = {side: [] for side in sides}
            for index in range(args.slices):
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for side in order:
                    meters[side].since_last()
                    run = load(ports[side], keys, body, name=name, clients=clients, seconds=args.seconds)
                    measured[side].append(figures(run, meters[side].since_last()))
            results[(name, clients)] = measured
            print(f"{name} × {clients}: done", flush=True)
    finally:
        for server in servers.values():
            stop(server)
        delete_tenants([tenant, *(t for t, _ in many)])
    news = [side for side in sides if side != "old"]
    lines = [
        "| scenario | clients | figure | old | " + " | ".join(f"{n} (÷ old: median, min–max)" for n in news) + " |",
        "| --- | ---: | --- | ---: |" + " ---: |" * len(news),
    ]
    for (name, clients), measured in results.items():
        for figure in FIGURES:
            old = [m[figure] for m in measured["old"]]
            cells = []
            for side in news:
                new = [m[figure] for m in measured[side]]
                ratios = [n / o for n, o in zip(new, old, strict=True) if o]
                cells.append(
                    f"{statistics.median(new):.2f} ({statistics.median(ratios):.2f}, "
                    f"{min(ratios):.2f}–{max(ratios):.2f})"
                )
            lines.append(
                f"| {name} | {clients} | {figure} | {statistics.median(old):.2f} | " + " | ".join(cells) + " |"
            )
    command = " ".join([".venv/bin/python benchmarks/side_by_side.py", *sys.argv[1:]])
    publish(
        "\n".join(
            [
                "# Route API, two checkouts side by side",
                "",
                f"Command: `{command}`  ",
                f"Machine: {machine()}; each checkout 2 uvicorn workers (scripts/web.sh of its checkout), embedder "
                f"`{args.embedder}`; {args.slices} rounds of {args.seconds:g} s per checkout and scenario.",
                "",
                *lines,
                "",
            ]
        ),
        args.out,
    )


if __name__ == "__main__":
    main()

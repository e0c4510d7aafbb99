"""CPU time of one gateway call's metric observations, in-process, in multiprocess mode (as the web
workers run them): what ``ROUTERHUB_METRICS=0`` saves per call, apart from the noise of a load test.

    .venv/bin/python benchmarks/metrics_cost.py

It observes what a routed gateway call that was answered observes (``routing/request_log.py``,
``routing/gateway/calls.py``, ``routing/services/``: the embedding's cache level, the tenant's budget
and λ, one upstream attempt, time to first token, tokens and spend, the request with eight
Server-Timing stages), into a fresh ``PROMETHEUS_MULTIPROC_DIR``, and prints the median and the
spread over 7 repeats of the process CPU time per call.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="routerhub-metrics-cost-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing import metrics  # noqa: E402 — after the folder is set: prometheus_client reads it at import

STAGES = {"queue": 0.2, "auth": 0.4, "embed": 0.1, "route": 0.6, "budget": 0.5, "prepare": 2.0, "upstream": 200.0}
ATTEMPTS = [{"llm": "gpt-4o", "outcome": "ok", "status": 200}]


def one_call() -> None:
    metrics.observe_embedding("memory")
    metrics.observe_budget(tenant="acme", remaining_usd=12.5, lam=0.3)
    metrics.observe_attempts(ATTEMPTS)
    metrics.observe_time_to_first_token(llm="gpt-4o", ms=200.0)
    metrics.observe_metered(tenant="acme", llm="gpt-4o", cost_usd=0.0001, input_tokens=30, output_tokens=12)
    metrics.observe_request(
        endpoint="gateway:chat-completions", status=200, model="routerhub-auto", stages={**STAGES, "total": 205.0}
    )


def main() -> None:
    one_call()  # the label sets' values exist: what every later call finds
    calls = 20_000
    timer = timeit.Timer(one_call, timer=time.process_time)
    runs = [timer.timeit(number=calls) / calls * 1e6 for _ in range(7)]
    print(
        f"one gateway call's metric observations (multiprocess mode): {statistics.median(runs):.1f} µs of CPU "
        f"(median of 7 × {calls:,} calls; min {min(runs):.1f}, max {max(runs):.1f})"
    )


if __name__ == "__main__":
    main()

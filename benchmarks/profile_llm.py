"""How long does a newly registered LLM take to become routable? Measured against the fake server.

    .venv/bin/python benchmarks/profile_llm.py                      # real worker, real Redis, 0 ms calls
    .venv/bin/python benchmarks/profile_llm.py --latency-ms 500     # an API answering in 0.5 s
    .venv/bin/python benchmarks/profile_llm.py --in-process         # the service alone, no Celery

It works in a database of its own on the same PostgreSQL server (``routerhub_bench`` by default),
so the demo database is never touched: the first run migrates it, imports data/mmlu-pro with the
hashing embedder (embeddings do not enter the profiling time: Ψ uses the stored ones) and fits a
UniRoute K-means state; later runs reuse them. Then it starts the fake OpenAI-compatible server
(right on math questions only, garbage elsewhere), registers a new LLM pointing at it, queues its
profiling exactly as the admin does, and times the job until the LLM is in the active router.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database", default="routerhub_bench", help="database on the configured server (created if missing)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the fake server's answer time per call")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="calls in flight (default: routing.profiling.services.CONCURRENCY, 8)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the profiling service here instead of through a Celery worker"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark LLM (default: delete it afterwards)")
    return parser.parse_args()


def setup_django(database: str) -> None:
    os.environ["DATABASE_NAME"] = database
    os.environ.setdefault("ROUTERHUB_EMBEDDER", "hashing")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    _ensure_database(database)
    import django

    django.setup()


def _ensure_database(name: str) -> None:
    """Create the benchmark database next to the configured one (settings only create their own)."""
    from routerhub.embedded import _ensure_database as ensure
    from routerhub.embedded import database_from_url, embedded_data_dir, start_embedded_postgres

    if os.environ.get("DATABASE_URL"):
        import psycopg

        server = database_from_url(os.environ["DATABASE_URL"])
        with psycopg.connect(
            host=server["HOST"],
            port=server["PORT"] or None,
            user=server["USER"],
            password=server["PASSWORD"],
            dbname=server["NAME"],
            autocommit=True,
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    else:
        settings = start_embedded_postgres(embedded_data_dir(os.environ.get("ROUTERHUB_PGDATA", "")))
        ensure(settings["HOST"], name)


def prepare_state(say) -> None:
    from django.core.management import call_command

    from registry.importing import dataset_import
    from registry.models import PromptSet
    from routing.models import RoutingState
    from routing.services.state import routing_state_fit

    call_command("migrate", verbosity=0)
    if not PromptSet.objects.filter(name="mmlu-pro").exists():
        started = time.monotonic()
        dataset_import(directory=PROJECT_DIR / "data" / "mmlu-pro", name="mmlu-pro", say=lambda _: None)
        say(f"imported data/mmlu-pro in {time.monotonic() - started:.0f} s")
    if not RoutingState.objects.filter(is_active=True).exists():
        started = time.monotonic()
        routing_state_fit(
            prompt_set=PromptSet.objects.get(name="mmlu-pro"), strategy="uniroute_kmeans", params={"n_clusters": 10}
        )
        say(f"fitted a UniRoute K-means state in {time.monotonic() - started:.0f} s")


def main() -> None:
    args = parse_args()
    setup_django(args.database)
    say = print
    prepare_state(say)

    from registry.models import LLM, Prompt
    from registry.services import llm_register
    from routing.caches import reset_all
    from routing.models import Job
    from routing.selectors.routers import active_router
    from routing.selectors.state import routing_state_active
    from routing.services import jobs
    from routing.services.profiling import ProfilingOptions, llm_profile_run
    from tests.fakes.fake_openai import FakeOpenAI, category_expert

    state = routing_state_active()
    prompts = Prompt.objects.filter(id__in=state.validation_prompt_ids).values_list("text", "answer", "category")
    math_share = sum(1 for _, _, c in prompts if c == "math") / len(state.validation_prompt_ids)
    arguments = {"concurrency": args.concurrency} if args.concurrency else {}
    name = f"bench-fake-{int(time.time())}"
    worker = redis = None
    with FakeOpenAI(policy=category_expert(prompts, good={"math"}), latency_seconds=args.latency_ms / 1000) as server:
        if not args.in_process:
            worker, redis = start_worker_and_broker(args.database)
        llm = llm_register(
            name=name, api_base=server.url, api_model="fake-1", usd_per_mtok_in=0.1, usd_per_mtok_out=0.2
        )
        try:
            started = time.monotonic()
            if args.in_process:
                _, report = llm_profile_run(llm=llm, options=ProfilingOptions.from_arguments(arguments))
                result, attempts = report.as_dict(), 1
            else:
                job, _ = jobs.llm_profile_enqueue(llm=llm, arguments=arguments)
                job = wait_for(job.id)
                if job.status != Job.Status.SUCCEEDED:
                    raise SystemExit(f"profiling failed: {job.error}\n{worker.log()[-3000:]}")
                result, attempts = job.result, job.attempts
            reset_all()
            while name not in active_router(max_age_seconds=0).llm_index():
                time.sleep(0.01)
            elapsed = time.monotonic() - started
        finally:
            if worker is not None:
                stop_worker_and_broker(worker, redis)
            if not args.keep:
                LLM.objects.filter(id=llm.id).delete()

    n = result["answered"]
    concurrency = arguments.get("concurrency") or ProfilingOptions.from_arguments(None).concurrency
    print(
        f"\nProfiled a new LLM on {len(state.validation_prompt_ids):,} MMLU-Pro validation prompts "
        f"({'in-process' if args.in_process else 'Celery worker on Redis'}, fake server {args.latency_ms:g} ms/call, "
        f"{concurrency} calls in flight):\n"
        f"  routable after {elapsed:.1f} s  ({n / elapsed:.0f} prompts/s; {attempts} attempt(s), {len(server.requests):,} calls)\n"
        f"  accuracy {result['correct'] / max(n, 1):.3f} (expected {math_share:.3f}: right on math only), "
        f"cost ${result['cost_usd']:.4f}, no refit (state v{state.version})"
    )


def start_worker_and_broker(database: str):
    from django.db import connection

    from routerhub.celery import app
    from tests.processes.workers import point_producer_at, start_redis, start_worker

    directory = Path(tempfile.mkdtemp(prefix="routerhub-bench-"))
    if os.environ.get("REDIS_URL"):
        redis, url = None, os.environ["REDIS_URL"]
    else:
        redis, url = start_redis(directory)
    worker = start_worker(
        broker_url=url, database_name=connection.settings_dict["NAME"], log_path=directory / "worker.log"
    )
    point_producer_at(app, broker_url=url, queue=worker.queue)
    return worker, redis


def stop_worker_and_broker(worker, redis) -> None:
    from tests.processes.workers import stop_process

    worker.stop()
    if redis is not None:
        stop_process(redis)


def wait_for(job_id: int, timeout: float = 3600):
    from routing.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(id=job_id)
        if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
            return job
        time.sleep(0.02)
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


if __name__ == "__main__":
    main()

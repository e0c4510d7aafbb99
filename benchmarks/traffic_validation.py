"""A validation set built from logged traffic: how long, how many calls, what it costs, how well it routes.

    .venv/bin/python benchmarks/traffic_validation.py                      # 20,000 logged calls → 1,000 prompts, 5 LLMs
    .venv/bin/python benchmarks/traffic_validation.py --logged 2000 --size 200   # a quick run

The "logged traffic" is real MMLU-Pro questions (data/mmlu-pro): every question of the train and
validation splits once, the rest of the ``--logged`` calls repeats of them drawn at random (real
traffic repeats itself); the test split is kept out of it, to measure routing on. It is written as the
gateway logs a tenant's calls (a metered decision and its ``GatewayExchange``).

Then, with the commands a user runs:

1. ``build_validation_set --from-gateway-logs --size 1000`` — redaction, near-duplicates, stratified sample;
2. ``profile_validation_set --yes`` then ``--yes --activate`` — the five LLMs answer through the demo upstream
   (``routerhub.demo_upstream.demo_answers``: right or wrong as each LLM was in the data), the demo
   judge grades every answer (a stand-in that reads the data's correctness), and a routing state
   profiled on the set is fitted and activated;

and compares the routing area on the test split (normalised cost, ``routing.strategies.curves.area``)
of that state with the state profiled on the data set's own validation split (the LLMs' recorded
outcomes), both UniRoute K-means with the same clusters.

It works in a database of its own (``routerhub_bench_traffic``) on the configured server, with the
hashing embedder (MiniLM would add the embedding of ~8,400 distinct prompts, which a deployment has
already done at route time: the builder reuses route-time embeddings from the shared cache).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from io import StringIO
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

LLMS = (
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "Meta-Llama-3_1-8B-Instruct",
    "Mistral-7B-Instruct-v0.2",
)
JUDGE = "demo-judge"
JUDGE_PRICES = (0.15, 0.60)  # USD per 1M tokens in / out: a small commercial LLM's list price, 2024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="routerhub_bench_traffic")
    parser.add_argument("--logged", type=int, default=20_000, help="logged gateway calls")
    parser.add_argument("--size", type=int, default=1000, help="prompts in the validation set")
    parser.add_argument("--n-clusters", type=int, default=10)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("ROUTERHUB_UPSTREAM_ALLOWED_HOSTS", "127.0.0.1")
    from benchmarks.profile_llm import setup_django

    setup_django(args.database)

    def say(message: str) -> None:
        print(message, flush=True)

    import numpy as np
    from django.core.management import call_command
    from django.db.models import F

    from registry.importing import dataset_import
    from registry.models import LLM, Prompt, PromptSet
    from registry.services import llm_register
    from routerhub.demo_upstream import FakeUpstream, demo_answers
    from routing.models import Decision, GatewayExchange, Job, JudgeVerdict, RoutingState, Tenant
    from routing.selectors.curves import held_out
    from routing.selectors.routers import load_router
    from routing.services.state import routing_state_fit
    from routing.services.validation_sets import validation_set_estimate
    from routing.strategies.curves import area, deferral_curve
    from tests.fixtures.traffic import log_traffic

    call_command("migrate", verbosity=0)
    if not PromptSet.objects.filter(name="mmlu-pro").exists():
        started = time.monotonic()
        dataset_import(directory=PROJECT_DIR / "data" / "mmlu-pro", name="mmlu-pro", say=lambda _: None)
        say(f"imported data/mmlu-pro in {time.monotonic() - started:.0f} s")
    dataset = PromptSet.objects.get(name="mmlu-pro")

    # A clean slate for each run: the traffic, the sets built from it, their outcomes and states.
    RoutingState.objects.update(is_active=False)
    Job.objects.all().delete()
    RoutingState.objects.all().delete()
    JudgeVerdict.objects.all().delete()
    PromptSet.objects.filter(role=PromptSet.Role.VALIDATION, name__startswith="bench-traffic").delete()
    GatewayExchange.objects.all().delete()
    Decision.objects.all().delete()
    Tenant.objects.filter(name="bench").delete()
    LLM.objects.filter(name=JUDGE).delete()

    LLM.objects.exclude(name__in=LLMS).update(is_active=False)
    LLM.objects.filter(name__in=LLMS).update(is_active=True, api_base="", api_model="")
    started = time.monotonic()
    baseline = routing_state_fit(
        prompt_set=dataset, strategy="uniroute_kmeans", params={"n_clusters": args.n_clusters}, tune=False
    )
    say(
        f"baseline state v{baseline.version} (the data set's validation split) fitted in {time.monotonic() - started:.1f} s"
    )

    tenant = Tenant.objects.create(name="bench", budget_usd=1000, log_gateway_text=True)
    pool = list(
        Prompt.objects.filter(prompt_set=dataset)
        .exclude(split=Prompt.Split.TEST)
        .order_by("id")
        .values_list("text", flat=True)
    )
    rng = random.Random(0)
    traffic = pool + [rng.choice(pool) for _ in range(max(0, args.logged - len(pool)))]
    rng.shuffle(traffic)
    traffic = traffic[: args.logged]
    started = time.monotonic()
    cheapest = LLM.objects.get(name="gemini-1.5-flash-002")
    for start in range(0, len(traffic), 5000):
        log_traffic(tenant=tenant, texts=traffic[start : start + 5000], llm=cheapest)
    say(
        f"logged {len(traffic):,} gateway calls ({len(set(traffic)):,} distinct questions) in {time.monotonic() - started:.1f} s"
    )

    started = time.monotonic()
    answer = demo_answers(PROJECT_DIR / "data" / "mmlu-pro")
    with FakeUpstream(answer=answer, record=False) as upstream:
        say(f"demo upstream ready in {time.monotonic() - started:.1f} s")
        LLM.objects.filter(name__in=LLMS).update(api_base=upstream.url, api_model=F("name"))
        llm_register(
            name=JUDGE,
            api_base=upstream.url,
            api_model=JUDGE,
            usd_per_mtok_in=JUDGE_PRICES[0],
            usd_per_mtok_out=JUDGE_PRICES[1],
            is_active=False,  # it grades; it is not routed
        )
        name = f"bench-traffic-{args.size}"
        build_command = (
            f"build_validation_set --from-gateway-logs --tenant bench --size {args.size} --name {name} --judge {JUDGE}"
        )
        out = StringIO()
        started = time.monotonic()
        call_command(*build_command.split(), stdout=out)
        build_seconds = time.monotonic() - started
        say(f"$ python manage.py {build_command}\n{out.getvalue()}({build_seconds:.1f} s)")

        # The job in two runs, as a user may: the answers and verdicts, then (nothing left to ask) the
        # routing state profiled on the set, so that the two are timed apart.
        estimate = validation_set_estimate(prompt_set=PromptSet.objects.get(name=name))
        profile_command = f"profile_validation_set {name} --yes"
        out = StringIO()
        started = time.monotonic()
        call_command(*profile_command.split(), stdout=out)
        profile_seconds = time.monotonic() - started
        say(f"$ python manage.py {profile_command}\n{out.getvalue()}({profile_seconds:.1f} s)")
        activate_command = f"profile_validation_set {name} --yes --activate"
        out = StringIO()
        started = time.monotonic()
        call_command(*activate_command.split(), stdout=out)
        activate_seconds = time.monotonic() - started
        say(f"$ python manage.py {activate_command}\n{out.getvalue()}({activate_seconds:.1f} s)")

    job = Job.objects.filter(kind=Job.Kind.PROFILE_VALIDATION_SET).order_by("created_at").first()
    traffic_state = RoutingState.objects.get(is_active=True)
    prompt_set = PromptSet.objects.get(name=name)
    build = prompt_set.metadata["build"]
    result = job.result

    rows = []
    for label, state in (("data set's validation split", baseline), (f"traffic set {name}", traffic_state)):
        figures = held_out(load_router(state.id))
        curve = deferral_curve(figures.losses, figures.costs_usd, figures.correctness)
        zero = deferral_curve(
            np.tile(figures.zero_losses, (figures.prompt_count, 1)), figures.costs_usd, figures.correctness
        )
        rows.append((label, state, figures.prompt_count, area(curve), area(zero)))

    from routing.redaction import configured_redactor

    redact = configured_redactor()
    questions = list(Prompt.objects.filter(prompt_set=dataset).values_list("text", flat=True))
    changed = sum(redact(text) != text for text in questions)
    per_llm = {r["llm"]: r for r in result["llms"]}
    print("\n## Results\n")
    print("| step | wall time | calls | cost (USD) |\n| --- | --- | --- | --- |")
    print(f"| build: {build['logged_calls']:,} logged → {build['chosen']:,} prompts | {build_seconds:.1f} s | — | — |")
    answers = sum(r["asked"] for r in result["llms"])
    judge_calls = result["calls"] - answers
    print(
        f"| profile {len(per_llm)} LLMs, judged | {profile_seconds:.1f} s | {answers:,} answers + "
        f"{judge_calls:,} judge calls ({sum(r['judge_cached'] for r in result['llms']):,} verdicts from the cache) | "
        f"{result['cost_usd']:.4f} (estimated {estimate.total_usd:.4f}) |"
    )
    second = Job.objects.filter(kind=Job.Kind.PROFILE_VALIDATION_SET).order_by("created_at").last().result
    print(
        f"| fit and activate the state profiled on the set | {activate_seconds:.1f} s | {second['calls']:,} "
        f"(what the first run left without an outcome) | {second['cost_usd']:.4f} |"
    )
    print(
        f"\nbuild: {build['exact_repeats']:,} exact repeats, {build['near_duplicates']:,} near-duplicates "
        f"(cosine ≥ {build['duplicate_cosine']}), {build['redacted']:,} prompts changed by redaction; "
        f"{build['clusters_covered']} of {build['clusters_reached']} clusters covered; "
        f"{build['embedded']:,} prompts embedded"
    )
    print(f"the redactor changes {changed:,} of the {len(questions):,} MMLU-Pro questions")
    print(
        "judged outcomes per LLM: "
        + ", ".join(f"{n} {r['answered']:,} (no verdict {r['no_verdict']})" for n, r in per_llm.items())
    )
    print(
        "\n| validation set | state | test prompts | area (router) | area (zero-router) |\n| --- | --- | --- | --- | --- |"
    )
    for label, state, count, router_area, zero_area in rows:
        print(f"| {label} | v{state.version} | {count:,} | {router_area:.4f} | {zero_area:.4f} |")


if __name__ == "__main__":
    main()

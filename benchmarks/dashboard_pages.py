"""Server time of every dashboard page with a million decisions in the database.

    .venv/bin/python benchmarks/dashboard_pages.py                        # 1,000,000 decisions, 20 views a page
    .venv/bin/python benchmarks/dashboard_pages.py --decisions 100000 --repeat 10 --out /tmp/dash.md
    .venv/bin/python benchmarks/dashboard_pages.py --keep                 # leave the data for a look in a browser

It needs the dev database with a fitted router (``manage.py import_routing_data data/mmlu-pro --name
mmlu-pro`` then ``manage.py fit_router --dataset mmlu-pro``). It creates five throw-away tenants
(``bench-dash-*``), a staff user and a tenant user, and seeds the decisions in one SQL statement
(``generate_series``) spread over the last 30 days and the active state's LLMs: 20 % with feedback,
1 % routed to the cheapest LLM after the budget ran out, plus refused requests per day. It then runs
the hourly roll-up once (timed) and renders every page through Django's test client in this process
— URL routing, middleware, selectors, SQL and templates, no network — ``--repeat`` times after two
warm-up views, and prints the median and 90th percentile per page. Everything it created is deleted
at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
TENANTS = 5
PREFIX = "bench-dash-"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000, help="decisions to seed (default 1,000,000)")
    parser.add_argument("--days", type=int, default=30, help="spread them over this many days up to now")
    parser.add_argument("--repeat", type=int, default=20, help="measured views per page (after 2 warm-up views)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded tenants, users and decisions")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    return parser.parse_args()


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()


def seed(decisions: int, days: int) -> dict:
    """Tenants, users and ``decisions`` decision rows; returns what the page list needs."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from routing.models import BudgetPeriod, TenantMembership
    from routing.selectors.budgets import period_bounds
    from routing.selectors.routers import active_router
    from routing.services.tenancy import tenant_create

    router = active_router()
    cleanup()
    now = timezone.now()
    tenants = [
        tenant_create(name=f"{PREFIX}{i}", budget_usd=Decimal("100000"), budget_period="month") for i in range(TENANTS)
    ]
    # One budget period per tenant and calendar month the decisions fall in.
    starts = sorted({period_bounds("month", now - timezone.timedelta(days=d))[0] for d in range(days + 1)})
    for tenant in tenants:
        for start in starts:
            _, end = period_bounds("month", start)
            BudgetPeriod.objects.create(
                tenant=tenant, period="month", starts_at=start, ends_at=end, limit_usd=Decimal("100000")
            )
    llm_ids = [llm.id for llm in router.llms]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH rows AS (
                SELECT g,
                       (%(tenants)s::bigint[])[1 + g %% %(n_tenants)s] AS tenant_id,
                       -- a skewed LLM mix: a few LLMs take most requests, as under real λs
                       (%(llms)s::bigint[])[1 + floor(%(n_llms)s * power(random(), 2))::int] AS llm_id,
                       %(now)s - (random() * %(days)s) * interval '1 day' AS created_at,
                       random() AS r
                FROM generate_series(1, %(count)s) AS g
            ), ordered AS (
                -- in time order, as the service appends them: a day's rows sit together on disk
                SELECT * FROM rows ORDER BY created_at
            )
            INSERT INTO routing_decision (
                id, tenant_id, created_at, routed_text, prompt_tokens, llm_id, state_id, state_version, strategy,
                cluster, lambda_used, lambda_reason, predicted_quality, estimated_cost_usd, budget_period_id,
                reserved_usd, overage_usd, alternatives, request, reported_cost_usd, quality_score, feedback_at
            )
            SELECT gen_random_uuid(), rows.tenant_id, rows.created_at, 'benchmark prompt ' || rows.g, 120, rows.llm_id,
                   %(state)s, %(version)s, %(strategy)s, (rows.g %% 10),
                   CASE WHEN rows.r < 0.01 THEN NULL ELSE 50 + 2000 * random() END,
                   CASE WHEN rows.r < 0.01 THEN 'budget_exhausted' WHEN rows.r < 0.2 THEN 'explicit' ELSE 'budget_pacing' END,
                   0.4 + 0.5 * random(), (0.00002 + 0.002 * random())::numeric(20, 10), p.id,
                   CASE WHEN rows.r < 0.01 THEN 0 ELSE (0.00002 + 0.002 * random())::numeric(20, 10) END,
                   CASE WHEN rows.r < 0.01 THEN 0.0001 ELSE 0 END,
                   '[]'::jsonb, '{}'::jsonb,
                   CASE WHEN rows.r > 0.8 THEN (0.00002 + 0.002 * random())::numeric(20, 10) END,
                   CASE WHEN rows.r > 0.8 THEN random() END,
                   CASE WHEN rows.r > 0.8 THEN rows.created_at + interval '1 minute' END
            FROM ordered AS rows JOIN routing_budgetperiod p
              ON p.tenant_id = rows.tenant_id AND p.starts_at <= rows.created_at AND rows.created_at < p.ends_at
            ORDER BY rows.created_at
            """,
            {
                "tenants": [t.id for t in tenants],
                "n_tenants": len(tenants),
                "llms": llm_ids,
                "n_llms": len(llm_ids),
                "now": now,
                "days": days,
                "count": decisions,
                "state": router.state_id,
                "version": router.version,
                "strategy": router.strategy_name,
            },
        )
        cursor.execute(
            "UPDATE routing_budgetperiod p SET spent_usd = s.spent, overage_usd = s.overage, requests = s.n "
            "FROM (SELECT budget_period_id, sum(reserved_usd) AS spent, sum(overage_usd) AS overage, count(*) AS n "
            "FROM routing_decision WHERE tenant_id = ANY(%s) GROUP BY budget_period_id) s WHERE s.budget_period_id = p.id",
            [[t.id for t in tenants]],
        )
        cursor.execute(
            "INSERT INTO routing_rejectionday (day, tenant_id, rejected) "
            "SELECT d::date, t, floor(random() * 40)::int FROM generate_series(%s::date, %s::date, interval '1 day') d, "
            "unnest(%s::bigint[]) t",
            [(now - timezone.timedelta(days=days)).date(), now.date(), [t.id for t in tenants]],
        )
    seeded_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_decision")
    user_model = get_user_model()
    staff = user_model.objects.create_user(f"{PREFIX}staff", password="bench-pass-1", is_staff=True)
    member = user_model.objects.create_user(f"{PREFIX}viewer", password="bench-pass-1")
    TenantMembership.objects.create(user=member, tenant=tenants[0])
    return {"staff": staff, "member": member, "tenants": tenants, "seed_seconds": seeded_seconds, "router": router}


def cleanup() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from routing.models import Tenant

    ids = list(Tenant.objects.filter(name__startswith=PREFIX).values_list("id", flat=True))
    if ids:
        with connection.cursor() as cursor:
            # SQL, not the ORM's cascade: it would load a million rows into Python to delete them.
            cursor.execute("DELETE FROM routing_decision WHERE tenant_id = ANY(%s)", [ids])
        Tenant.objects.filter(id__in=ids).delete()
    get_user_model().objects.filter(username__startswith=PREFIX).delete()


def pages(data: dict) -> list[tuple[str, str, str, dict | None]]:
    """(label, who, path, JSON body for a POST) of every page measured."""
    from django.db.models import Count

    from evaluation.models import EvaluationRun
    from routing.models import Decision

    router = data["router"]
    busiest = (
        Decision.objects.filter(tenant__in=data["tenants"][:1])
        .values("llm_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("llm_id", flat=True)
        .first()
    )
    quiet_llm = router.llms[-1].id
    decision = (
        Decision.objects.filter(tenant=data["tenants"][0]).order_by("-created_at").values_list("id", flat=True)[0]
    )
    found = [
        ("Overview (every tenant)", "staff", "/", None),
        ("Overview (one tenant)", "tenant", "/", None),
        ("Router", "staff", "/router/", None),
        ("LLMs", "staff", "/llms/", None),
        ("LLM page (busiest LLM)", "staff", f"/llms/{busiest}/", None),
        ("Decisions (newest)", "staff", "/decisions/", None),
        ("Decisions of one tenant", "tenant", "/decisions/", None),
        ("Decisions of the least used LLM", "staff", f"/decisions/?llm={quiet_llm}", None),
        ("Decisions with feedback", "staff", "/decisions/?status=with_feedback", None),
        ("Decisions: budget fallbacks", "staff", "/decisions/?status=budget_fallback", None),
        ("Decision page", "tenant", f"/decisions/{decision}/", None),
        ("Evaluation runs", "staff", "/evaluations/", None),
        ("Try it (page)", "staff", "/try/", None),
        ("Try it (slider: POST /try/rank)", "staff", "/try/rank", {"prompt": "What is 2 + 2?", "lambda": 500.0}),
    ]
    run = EvaluationRun.objects.order_by("-created_at").values_list("id", flat=True).first()
    if run is not None:
        found.insert(12, ("Evaluation run", "staff", f"/evaluations/{run}/", None))
    return found


def measure(data: dict, repeat: int) -> list[tuple[str, str, float, float]]:
    import json

    from django.test import Client

    clients = {"staff": Client(), "tenant": Client()}
    clients["staff"].force_login(data["staff"])
    clients["tenant"].force_login(data["member"])
    results = []
    for label, who, path, body in pages(data):
        client = clients[who]
        times = []
        for i in range(repeat + 2):
            started = time.perf_counter()
            if body is None:
                response = client.get(path)
            else:
                response = client.post(path, json.dumps(body), content_type="application/json")
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
            if i >= 2:  # the first views fill per-process caches (router, curves, cluster map)
                times.append(1000 * elapsed)
        p50 = statistics.median(times)
        p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
        results.append((label, path, p50, p90))
        print(f"  {label:<36} p50 {p50:7.1f} ms   p90 {p90:7.1f} ms", flush=True)
    return results


def main() -> None:
    args = parse_args()
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from routing.models import Decision, UsageRollup
    from routing.services.usage import usage_rollup_due

    print(f"Seeding {args.decisions:,} decisions over {args.days} days ...", flush=True)
    data = seed(args.decisions, args.days)
    total = Decision.objects.count()
    print(f"  seeded in {data['seed_seconds']:.1f} s; {total:,} decisions in the database", flush=True)
    # The seeded days may have been rolled up before (without these decisions): roll them all up.
    UsageRollup.objects.filter(day__gte=(timezone.now() - timezone.timedelta(days=args.days + 1)).date()).delete()
    started = time.perf_counter()
    rolled = usage_rollup_due()
    rollup_seconds = time.perf_counter() - started
    print(f"  roll-up of {len(rolled)} closed days: {rollup_seconds:.1f} s", flush=True)
    try:
        print(f"Rendering each page {args.repeat} times (after 2 warm-up views) ...", flush=True)
        results = measure(data, args.repeat)
    finally:
        if not args.keep:
            cleanup()
    report = [
        f"Dashboard pages with {total:,} decisions in the database (`{' '.join(['benchmarks/dashboard_pages.py', *sys.argv[1:]])}`)",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PostgreSQL {connection.cursor().connection.info.server_version}, embedder {settings.ROUTERHUB_EMBEDDER}. "
        f"Seeding took {data['seed_seconds']:.0f} s, the first roll-up of {len(rolled)} closed days {rollup_seconds:.1f} s.",
        "Server time per view (Django test client in-process: routing, middleware, SQL, templates), "
        f"median and 90th percentile of {args.repeat} views after 2 warm-up views:",
        "",
        "| page | path | p50 ms | p90 ms |",
        "| --- | --- | ---: | ---: |",
        *[f"| {label} | `{path}` | {p50:.1f} | {p90:.1f} |" for label, path, p50, p90 in results],
    ]
    print("\n" + "\n".join(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()

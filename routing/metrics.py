"""Prometheus metrics of the web and worker processes (``/metrics``: ``routing/apis/metrics.py``).

With ``PROMETHEUS_MULTIPROC_DIR`` set (``scripts/web.sh``, ``scripts/run.sh``) every uvicorn worker and
Celery process writes its values to files there, and a scrape of any web process adds them all up.
Labels hold only bounded sets: endpoints are URL patterns (never paths), models and LLMs are names the
router resolved (never what a client typed), tenants are capped (``tenant_label``), and no prompt,
answer or key ever becomes a label. With ``ROUTERHUB_METRICS`` off nothing is counted: every
``observe_*`` returns at once, and ``/metrics`` answers 404.
"""

from __future__ import annotations

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

# Seconds: the gateway's own stages are milliseconds, an upstream's answer up to minutes.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The stages a request's Server-Timing may name (/v1/ and /api/v1/route), and "total" (arrival to
# the last byte sent), measured by the handler.
STAGES = frozenset({"queue", "auth", "embed", "route", "budget", "prepare", "upstream", "app", "total"})
OTHER = "other"

requests = Counter(
    "routerhub_requests",
    "Requests answered, by endpoint, HTTP status and model asked for.",
    ["endpoint", "status", "model"],
)
stage_seconds = Histogram(
    "routerhub_stage_seconds", "Time of each Server-Timing stage of a request.", ["endpoint", "stage"], buckets=_SECONDS
)
time_to_first_token = Histogram(
    "routerhub_time_to_first_token_seconds",
    "Gateway calls: arrival to the first byte of the LLM's answer.",
    ["llm"],
    buckets=_SECONDS,
)
upstream_attempts = Counter(
    "routerhub_upstream_attempts", "Calls to upstream LLMs, by LLM and outcome.", ["llm", "outcome"]
)
upstream_fallbacks = Counter(
    "routerhub_upstream_fallbacks", "Attempts that failed and were followed by another LLM's.", ["llm"]
)
tokens = Counter("routerhub_tokens", "Tokens metered by the gateway.", ["tenant", "llm", "kind"])
spend = Counter("routerhub_spend_usd", "What the gateway's calls cost, USD.", ["tenant", "llm"])
rate_limited = Counter("routerhub_rate_limited", "Requests refused by a rate limit (429).", ["endpoint"])
jobs = Counter("routerhub_jobs", "Celery tasks run, by kind and outcome.", ["kind", "outcome"])
# Gauges a request sets: across processes a scrape shows the value the latest request saw.
budget_remaining = Gauge(
    "routerhub_budget_remaining_usd",
    "What the tenant's budget period had left when its latest call was routed, USD.",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
lambda_used = Gauge(
    "routerhub_lambda",
    "The cost weight λ of the tenant's latest routed call.",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
budget_leases = Counter(
    "routerhub_budget_leases",
    "Budget leases granted (or topped up) to a process, returned by it, and swept when expired.",
    ["event"],
)
embedding_cache = Counter(
    "routerhub_embedding_cache",
    "Prompt embeddings by where they came from: process cache, shared cache, or computed (miss).",
    ["level"],
)
EMBEDDING_LEVELS = {"memory": "process", "shared": "shared", "": "miss"}


def enabled() -> bool:
    # A process without Django settings (a script that only writes metrics) counts.
    return settings.ROUTERHUB_METRICS if settings.configured else True


def multiprocess_dir() -> str | None:
    return settings.PROMETHEUS_MULTIPROC_DIR or None


def exposition() -> bytes:
    """The text every scrape gets: all processes' values when they share a folder, else this one's."""
    if folder := multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def attempt_outcome(attempt: dict) -> str:
    """An attempt's outcome folded to a bounded word: HTTP statuses by class, except 408 and 429."""
    outcome = str(attempt.get("outcome") or "unknown")
    if outcome.startswith("http_"):
        status = attempt.get("status")
        if status in (408, 429):
            return f"http_{status}"
        return f"http_{int(status) // 100}xx" if isinstance(status, int) else "http_error"
    return outcome


def observe_attempts(attempts: list[dict]) -> None:
    if not enabled():
        return
    for index, attempt in enumerate(attempts):
        llm = str(attempt.get("llm") or OTHER)
        upstream_attempts.labels(llm=llm, outcome=attempt_outcome(attempt)).inc()
        if index + 1 < len(attempts):
            upstream_fallbacks.labels(llm=llm).inc()


def observe_time_to_first_token(*, llm: str, ms: float) -> None:
    if enabled():
        time_to_first_token.labels(llm=llm).observe(ms / 1e3)


def observe_metered(*, tenant: str, llm: str, cost_usd, input_tokens: int | None, output_tokens: int | None) -> None:
    if not enabled():
        return
    spend.labels(tenant=tenant, llm=llm).inc(float(cost_usd))
    if input_tokens:
        tokens.labels(tenant=tenant, llm=llm, kind="input").inc(input_tokens)
    if output_tokens:
        tokens.labels(tenant=tenant, llm=llm, kind="output").inc(output_tokens)


def observe_request(*, endpoint: str, status: int, model: str, stages: dict[str, float]) -> None:
    if not enabled():
        return
    requests.labels(endpoint=endpoint, status=str(status), model=model).inc()
    if status == 429:
        rate_limited.labels(endpoint=endpoint).inc()
    for stage, ms in stages.items():
        if stage in STAGES:
            stage_seconds.labels(endpoint=endpoint, stage=stage).observe(ms / 1e3)


def observe_job(*, task_name: str, state: str) -> None:
    if not enabled():
        return
    jobs.labels(kind=task_name.rpartition(".")[2], outcome=state.lower()).inc()


def observe_budget(*, tenant: str, remaining_usd, lam: float | None) -> None:
    if not enabled():
        return
    budget_remaining.labels(tenant=tenant).set(float(remaining_usd))
    if lam is not None:
        lambda_used.labels(tenant=tenant).set(float(lam))


def observe_embedding(source: str) -> None:
    """``source`` as ``services/embeddings.embed_cached`` names it: "memory", "shared" or "" (computed)."""
    if not enabled():
        return
    embedding_cache.labels(level=EMBEDDING_LEVELS.get(source, OTHER)).inc()


def observe_leases(event: str, count: int = 1) -> None:
    """``event``: "granted", "returned" or "swept"."""
    if enabled():
        budget_leases.labels(event=event).inc(count)

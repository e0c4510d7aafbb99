"""routerhub settings: one module, driven by environment variables declared in routerhub/config.py
(docs/configuration.md lists them)."""

from __future__ import annotations

from pathlib import Path

from routerhub import config
from routerhub.config import get as env
from routerhub.embedded import (
    database_from_url,
    development_secret_key,
    embedded_data_dir,
    embedded_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Every ROUTERHUB_* variable of routerhub/config.py becomes the setting of the same name, read and
# checked there (a value out of bounds stops the process, naming the variable).
globals().update(config.django_settings())

# --- Production or development ---------------------------------------------------------------------
# DJANGO_DEBUG=0 is production (docker-compose.yml and the Dockerfile set it): the secret key, the
# allowed hosts and the keys that encrypt stored LLM API keys must come from the environment, there
# is no fallback, and HTTPS settings default to on. With DJANGO_DEBUG unset (make run, the tests,
# manage.py in a checkout) or 1, development defaults apply: the checkout's own secret key (made on
# first use, kept in .run/secret-key, 0600) and local host names only.
PRODUCTION = env("DJANGO_DEBUG") is False
DEBUG = bool(env("DJANGO_DEBUG"))
if PRODUCTION:
    SECRET_KEY = config.required("DJANGO_SECRET_KEY", "a long random string, e.g. from `openssl rand -base64 48`")
    ALLOWED_HOSTS = config.required("DJANGO_ALLOWED_HOSTS", "the host names clients use, comma-separated")
    # Stored LLM API keys are encrypted with these, never with a key derived from SECRET_KEY.
    config.required(
        "ROUTERHUB_ENCRYPTION_KEYS",
        "Fernet keys encrypting stored LLM API keys, newest first, e.g. from "
        '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`',
    )
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY") or development_secret_key()
    ALLOWED_HOSTS = env("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("DJANGO_CSRF_TRUSTED_ORIGINS")


def _on_in_production(name: str) -> bool:
    value = env(name)
    return PRODUCTION if value is None else value


# HTTPS (production defaults on; behind a TLS proxy set DJANGO_SECURE_PROXY_SSL_HEADER, e.g.
# "HTTP_X_FORWARDED_PROTO,https"). The health check stays reachable over plain HTTP for load balancers.
SECURE_SSL_REDIRECT = _on_in_production("DJANGO_SECURE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
SESSION_COOKIE_SECURE = _on_in_production("DJANGO_SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = _on_in_production("DJANGO_CSRF_COOKIE_SECURE")
SECURE_HSTS_SECONDS = env("DJANGO_SECURE_HSTS_SECONDS")
if SECURE_HSTS_SECONDS is None:
    SECURE_HSTS_SECONDS = 365 * 86400 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _on_in_production("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env("DJANGO_SECURE_HSTS_PRELOAD")
if env("DJANGO_SECURE_PROXY_SSL_HEADER"):
    _header, _, _value = env("DJANGO_SECURE_PROXY_SSL_HEADER").partition(",")
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
if env("DATABASE_URL"):
    DATABASES = {"default": database_from_url(env("DATABASE_URL"))}
else:
    DATABASES = {"default": embedded_database(embedded_data_dir(env("ROUTERHUB_PGDATA")))}
if env("DATABASE_NAME"):
    # Points a process at another database on the same server, e.g. a Celery worker started by the
    # tests at pytest-django's test database (test_routerhub).
    DATABASES["default"]["NAME"] = env("DATABASE_NAME")
DATABASES["default"]["CONN_MAX_AGE"] = env("DATABASE_CONN_MAX_AGE")
if env("ROUTERHUB_DB_POOL"):
    # The ASGI web processes (routerhub/asgi.py turns this on): Django runs each synchronous view in
    # a new thread, and connections belong to threads, so without a pool every /api/ request would
    # open a new database connection. Pooled connections go back after each request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env("ROUTERHUB_DB_POOL_MAX_SIZE"),
        "timeout": 10,
    }
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("TEST", {})["NAME"] = env("DATABASE_TEST_NAME")
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
if env("ROUTERHUB_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("ROUTERHUB_CACHE_URL"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API -------------------------------------------------------------------------------------
# Django's own cap of a form body, kept equal to the API's (over it: 413 under /api/, 400 elsewhere).
DATA_UPLOAD_MAX_MEMORY_SIZE = env("ROUTERHUB_MAX_REQUEST_BYTES")
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
CELERY_BROKER_URL = env("CELERY_BROKER_URL") or env("REDIS_URL") or "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = None  # results and progress live in Postgres (Job rows), not in the broker
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env("CELERY_TASK_ALWAYS_EAGER")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# With acks_late, Redis hands an unacknowledged task to another worker after this long: it must
# outlast the longest task time limit (profiling: 1 h, routing/tasks.py), or a slow job runs twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL")},
    "loggers": {
        "routerhub": {"level": "INFO"},
        "registry": {"level": "INFO"},
        "routing": {"level": "INFO"},
        # one JSON line per API-key call (routing/request_log.py); ROUTERHUB_REQUEST_LOG=0 silences it
        "routerhub.requests": {"level": "INFO" if env("ROUTERHUB_REQUEST_LOG") else "WARNING"},
    },
}

"""Start-up checks: a mistyped setting or a database without pgvector fails loudly."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register()
def embedder_is_known(app_configs, **kwargs):
    from registry.embedders import EMBEDDERS

    if settings.ROUTERHUB_EMBEDDER not in EMBEDDERS:
        return [
            Error(
                f"ROUTERHUB_EMBEDDER={settings.ROUTERHUB_EMBEDDER!r} is not a known embedder.",
                hint=f"Use one of: {', '.join(sorted(EMBEDDERS))}.",
                id="registry.E001",
            )
        ]
    return []


# Prompts, shared cache rows and routing states record the embedder's name in 100 characters.
EMBEDDER_NAME_MAX_LENGTH = 100


@register()
def embedder_packages_are_installed(app_configs, **kwargs):
    from registry.embedders import EMBEDDERS, TORCH_EXTRA, missing_packages

    embedder = EMBEDDERS.get(settings.ROUTERHUB_EMBEDDER)
    missing = missing_packages(embedder) if embedder else []
    if not missing:
        return []
    return [
        Error(
            f"ROUTERHUB_EMBEDDER={settings.ROUTERHUB_EMBEDDER!r} needs {', '.join(missing)}, which is not installed.",
            hint=f"pip install -r {TORCH_EXTRA} (make run installs only requirements.txt, which runs the ONNX embedders).",
            id="registry.E003",
        )
    ]


@register()
def remote_embedder_is_configured(app_configs, **kwargs):
    from urllib.parse import urlsplit

    if settings.ROUTERHUB_EMBEDDER != "remote":
        return []
    problems = []
    url = urlsplit(settings.ROUTERHUB_EMBEDDER_URL)
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(
            Error(
                f"ROUTERHUB_EMBEDDER_URL={settings.ROUTERHUB_EMBEDDER_URL!r} is not an http(s) URL.",
                hint="The embedder service's OpenAI-compatible base URL, e.g. http://embedder:8080/v1.",
                id="registry.E004",
            )
        )
    model = settings.ROUTERHUB_EMBEDDER_MODEL
    if not model.strip() or len(f"remote:{model}") > EMBEDDER_NAME_MAX_LENGTH:
        problems.append(
            Error(
                f"ROUTERHUB_EMBEDDER_MODEL={model!r} must name the model the service serves, in at most "
                f"{EMBEDDER_NAME_MAX_LENGTH - len('remote:')} characters.",
                hint="The model name sent with each request and the one the service answers with, "
                "e.g. sentence-transformers/all-MiniLM-L6-v2.",
                id="registry.E005",
            )
        )
    if not settings.ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS > 0:
        problems.append(
            Error(
                f"ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS={settings.ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS!r} must be positive.",
                id="registry.E006",
            )
        )
    return problems


@register(Tags.database)
def database_has_pgvector(app_configs, databases=None, **kwargs):
    from registry.selectors import database_missing_vector_extension

    problems = []
    for alias in databases or []:
        message = database_missing_vector_extension(alias)
        if message:
            problems.append(
                Error(
                    message,
                    hint="Install pgvector (https://github.com/pgvector/pgvector) or use the embedded default by unsetting DATABASE_URL.",
                    id="registry.E002",
                )
            )
    return problems

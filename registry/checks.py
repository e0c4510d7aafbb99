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

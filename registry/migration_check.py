"""A clear error, instead of a traceback about a missing table, for commands run before ``migrate``."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def unapplied_migrations(database: str = DEFAULT_DB_ALIAS) -> list[str]:
    connection = connections[database]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def require_migrated(database: str = DEFAULT_DB_ALIAS) -> None:
    """Raise CommandError naming the first unapplied migrations, if any."""
    missing = unapplied_migrations(database)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CommandError(
            f"The database is not set up: {len(missing)} migration(s) not applied ({shown}). "
            "Run `python manage.py migrate` first."
        )

"""Database constraints shared by the apps' models."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


def valid_choice(field: str, choices: type[models.Choices]) -> models.CheckConstraint:
    """A CHECK that ``field`` holds one of ``choices``: rows written with raw SQL or bulk updates,
    which skip form validation, cannot hold a value the code does not know."""
    return models.CheckConstraint(
        name=f"%(app_label)s_%(class)s_{field}_valid",
        condition=Q(**{f"{field}__in": [c.value for c in choices]}),
    )

"""Reads from the registry (HackSoft-style selectors): keyword-only, no writes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import connections

from registry.models import LLM, Outcome, Prompt, PromptSet


def database_missing_vector_extension(alias: str = "default") -> str | None:
    """A message naming the missing extension, or None when pgvector can be used."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
    if row is None:
        settings_dict = connection.settings_dict
        return (
            f"PostgreSQL database {settings_dict['NAME']!r} at {settings_dict['HOST'] or 'localhost'} does not have the "
            "'vector' extension (pgvector) available; routerhub stores prompt embeddings with it."
        )
    return None


def llm_by_name(*, name: str) -> LLM | None:
    return LLM.objects.filter(name=name).first()


def llm_names(*, ids) -> dict[int, str]:
    """LLM id → name, for the ids given."""
    return dict(LLM.objects.filter(id__in=list(ids)).values_list("id", "name"))


def llm_choices():
    """Every LLM, with only what a choice field shows (a lazy queryset)."""
    return LLM.objects.only("id", "name")


def prompt_set_by_name(*, name: str) -> PromptSet | None:
    return PromptSet.objects.filter(name=name).first()


def prompt_set_get(*, name: str) -> PromptSet:
    try:
        return PromptSet.objects.get(name=name)
    except PromptSet.DoesNotExist:
        known = ", ".join(PromptSet.objects.values_list("name", flat=True)) or "none imported yet"
        raise PromptSet.DoesNotExist(f"no prompt set named {name!r} (known: {known})") from None


def prompt_embeddings(*, prompt_ids: Sequence[int]) -> np.ndarray:
    """Embeddings [len(prompt_ids), D] in the order given; fails if any prompt is not embedded."""
    by_id = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "embedding"))
    missing = [pid for pid in prompt_ids if by_id.get(pid) is None]
    if missing:
        raise ValueError(f"{len(missing)} prompt(s) have no embedding yet (e.g. id {missing[0]}); re-run the import")
    return np.stack([np.asarray(by_id[pid], dtype=np.float32) for pid in prompt_ids])


def outcome_matrix(*, prompt_ids: Sequence[int], llm_ids: Sequence[int]) -> np.ndarray:
    """Scores [prompts × LLMs] with NaN where an LLM has no outcome on a prompt."""
    matrix = np.full((len(prompt_ids), len(llm_ids)), np.nan, dtype=np.float32)
    row_of = {pid: i for i, pid in enumerate(prompt_ids)}
    col_of = {lid: j for j, lid in enumerate(llm_ids)}
    rows = Outcome.objects.filter(llm_id__in=llm_ids, prompt_id__in=prompt_ids).values_list(
        "prompt_id", "llm_id", "score"
    )
    for prompt_id, llm_id, score in rows.iterator(chunk_size=20_000):
        matrix[row_of[prompt_id], col_of[llm_id]] = score
    return matrix


def nearest_prompts(
    *, embedding: np.ndarray, prompt_set_id: int | None = None, split: str | None = None, k: int = 10
) -> list[tuple[int, float]]:
    """(prompt id, cosine distance) of the k nearest embedded prompts, via the HNSW index.

    pgvector's iterative index scan keeps searching when filters (set, split) or dead index entries
    leave fewer than k rows among the first candidates, so a filtered query still returns k rows.
    """
    from django.db import transaction
    from pgvector.django import CosineDistance

    prompts = Prompt.objects.exclude(embedding__isnull=True)
    if prompt_set_id is not None:
        prompts = prompts.filter(prompt_set_id=prompt_set_id)
    if split:
        prompts = prompts.filter(split=split)
    nearest = prompts.annotate(distance=CosineDistance("embedding", embedding)).order_by("distance")[:k]
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(40, min(int(k), 1000))])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        return [(p.id, float(p.distance)) for p in nearest.only("id")]

"""Importing a routing data set (prompts, models, outcomes) into the registry.

A service: the ``import_routing_data`` command only parses arguments and prints. The whole set is
read and validated first, prompts that need it are embedded next, and only then is everything
written in one transaction — a bad row or a crash leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from registry.data_format import RoutingData, read_routing_data
from registry.embedders import Embedder, get_embedder, text_sha256
from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.tokens import count_tokens

Say = Callable[[str], None]

# Fractions of a whole data set given to the train and validation splits; the rest is test
# (60/10/30, the protocol of METHODS.md).
TRAIN_FRACTION, VALIDATION_FRACTION = 0.6, 0.1


@dataclass
class ImportSummary:
    prompt_set: str
    prompts: int = 0
    prompts_created: int = 0
    prompts_updated: int = 0
    prompts_embedded: int = 0
    llms: int = 0
    llms_created: int = 0
    llms_updated: int = 0
    outcomes: int = 0
    outcomes_created: int = 0
    outcomes_updated: int = 0
    # Registered LLMs whose values differ from the file's and were kept (no --update-llms): one line each.
    llm_differences: list[str] = field(default_factory=list)
    cost_basis: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changes(self) -> int:
        return (
            self.prompts_created
            + self.prompts_updated
            + self.prompts_embedded
            + self.llms_created
            + self.llms_updated
            + self.outcomes_created
            + self.outcomes_updated
        )


def split_of(external_id: str) -> str:
    """A stable 60/10/30 split from a hash of the id, so re-imports never move a prompt."""
    bucket = int.from_bytes(hashlib.sha256(external_id.encode()).digest()[:8], "big") / 2**64
    if bucket < TRAIN_FRACTION:
        return Prompt.Split.TRAIN
    if bucket < TRAIN_FRACTION + VALIDATION_FRACTION:
        return Prompt.Split.VALIDATION
    return Prompt.Split.TEST


class Progress:
    """Prints ``label: done/total (pct) elapsed, ~eta`` at most every few seconds."""

    def __init__(self, say: Say, label: str, every_seconds: float = 15.0) -> None:
        self.say, self.label, self.every = say, label, every_seconds
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        self.say(
            f"  {self.label}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%) {elapsed:.0f} s elapsed, ~{eta:.0f} s left"
        )


def dataset_import(
    *,
    directory: Path,
    name: str,
    role: str = PromptSet.Role.DATASET,
    embedder: Embedder | None = None,
    update_llms: bool = False,
    say: Say = print,
) -> ImportSummary:
    """Import (or re-import) a data set. LLMs already registered keep their prices, provider and
    metadata unless ``update_llms``: a data file must not silently reprice (or unprice) an LLM that
    staff configured; the differences are reported in ``summary.llm_differences`` instead."""
    started = time.monotonic()
    embedder = embedder or get_embedder()
    directory = Path(directory)
    say(f"Reading {directory} ...")
    data = read_routing_data(directory)
    say(
        f"  {len(data.prompts):,} prompts, {len(data.models):,} models, {len(data.outcomes):,} outcomes: all rows valid"
    )

    summary = ImportSummary(
        prompt_set=name, prompts=len(data.prompts), llms=len(data.models), outcomes=len(data.outcomes)
    )
    existing_set = PromptSet.objects.filter(name=name).first()
    existing = (
        {p.external_id: p for p in Prompt.objects.filter(prompt_set=existing_set).defer("embedding")}
        if existing_set
        else {}
    )
    embeddings = _embed_new_or_changed(data, existing, embedder, say, summary)

    with transaction.atomic():
        prompt_set = _upsert_prompt_set(name=name, role=role, directory=directory, data=data)
        prompt_ids = _upsert_prompts(prompt_set, data, existing, embeddings, embedder, role, summary)
        llm_ids = _upsert_llms(data, summary, update_llms=update_llms)
        _upsert_outcomes(data, prompt_ids, llm_ids, say, summary)
    summary.cost_basis = _describe_cost_basis(data, prompt_set)
    summary.seconds = time.monotonic() - started
    return summary


def _embed_new_or_changed(
    data: RoutingData, existing: dict, embedder: Embedder, say: Say, summary: ImportSummary
) -> dict:
    """Embed prompts that are new, whose text changed, or that another embedder produced."""
    todo = []
    for row in data.prompts:
        old = existing.get(row.external_id)
        if old is None or old.text_sha256 != text_sha256(row.text) or old.embedder != embedder.name:
            todo.append(row)
    if not todo:
        say("  embeddings: all up to date")
        return {}
    say(f"Embedding {len(todo):,} prompts with {embedder.name} ...")
    vectors = embedder.embed(
        [row.text for row in todo],
        batch_size=settings.ROUTERHUB_EMBED_BATCH_SIZE,
        progress=Progress(say, "embedded"),
    )
    summary.prompts_embedded = len(todo)
    return {row.external_id: vector for row, vector in zip(todo, vectors)}


def _upsert_prompt_set(*, name: str, role: str, directory: Path, data: RoutingData) -> PromptSet:
    token_counts = count_tokens([row.text for row in data.prompts])
    metadata = {
        "mean_prompt_tokens": round(sum(token_counts) / len(token_counts), 1),
        "files": data.files,
    }
    prompt_set, created = PromptSet.objects.get_or_create(
        name=name, defaults={"role": role, "source": str(directory), "metadata": metadata}
    )
    if not created and (
        prompt_set.role != role or prompt_set.metadata.get("mean_prompt_tokens") != metadata["mean_prompt_tokens"]
    ):
        prompt_set.role = role
        prompt_set.source = str(directory)
        prompt_set.metadata = {**prompt_set.metadata, **metadata}
        prompt_set.save()
    return prompt_set


def _upsert_prompts(prompt_set, data, existing, embeddings, embedder, role, summary) -> dict[str, int]:
    to_create, to_update = [], []
    values_changed = 0  # prompts re-embedded only because the embedder changed count as "embedded"
    for row in data.prompts:
        split = split_of(row.external_id) if role == PromptSet.Role.DATASET else role
        values = {
            "text": row.text,
            "category": row.category,
            "answer": row.answer,
            "metadata": row.metadata,
            "split": split,
            "text_sha256": text_sha256(row.text),
        }
        vector = embeddings.get(row.external_id)
        old = existing.get(row.external_id)
        if old is None:
            to_create.append(
                Prompt(
                    prompt_set=prompt_set,
                    external_id=row.external_id,
                    embedding=vector,
                    embedder=embedder.name,
                    **values,
                )
            )
            continue
        changed = any(getattr(old, key) != value for key, value in values.items())
        values_changed += changed
        if changed or vector is not None:
            for key, value in values.items():
                setattr(old, key, value)
            if vector is not None:
                old.embedding, old.embedder = vector, embedder.name
            to_update.append(old)
    Prompt.objects.bulk_create(to_create, batch_size=1000)
    if to_update:
        fields = [
            "text",
            "category",
            "answer",
            "metadata",
            "split",
            "text_sha256",
            "embedding",
            "embedder",
            "updated_at",
        ]
        now = timezone.now()
        for prompt in to_update:
            prompt.updated_at = now
        # Only prompts that got a new vector carry one; the others were loaded without it.
        with_vectors = [p for p in to_update if p.external_id in embeddings]
        without = [p for p in to_update if p.external_id not in embeddings]
        Prompt.objects.bulk_update(with_vectors, fields, batch_size=1000)
        Prompt.objects.bulk_update(without, [f for f in fields if f not in ("embedding", "embedder")], batch_size=1000)
    summary.prompts_created = len(to_create)
    summary.prompts_updated = values_changed
    return dict(Prompt.objects.filter(prompt_set=prompt_set).values_list("external_id", "id"))


def _upsert_llms(data: RoutingData, summary: ImportSummary, *, update_llms: bool) -> dict[str, int]:
    existing = {llm.name: llm for llm in LLM.objects.filter(name__in=[m.name for m in data.models])}
    for model in data.models:
        llm = existing.get(model.name)
        if llm is None:
            llm = LLM(name=model.name, provider=model.provider, metadata=model.metadata, **model.prices)
            llm.full_clean()
            llm.save()
            summary.llms_created += 1
            existing[model.name] = llm
            continue
        differences = _llm_differences(llm, model)
        if not differences:
            continue
        if not update_llms:
            summary.llm_differences.append(f"{model.name}: " + "; ".join(differences))
            continue
        for key, value in model.prices.items():
            setattr(llm, key, value)
        if model.provider:
            llm.provider = model.provider
        # Metadata is merged, never replaced: keys set by staff (an API key reference, notes) stay.
        llm.metadata = {**llm.metadata, **model.metadata}
        llm.full_clean()
        llm.save()
        summary.llms_updated += 1
    return {name: llm.id for name, llm in existing.items()}


def _llm_differences(llm: LLM, model) -> list[str]:
    """What importing ``model`` would change on the registered ``llm``, e.g. ``usd_per_mtok_in 2.5 → none``."""

    def shown(value) -> str:
        return "none" if value is None or value == "" else repr(value) if isinstance(value, str) else f"{value:g}"

    differences = [
        f"{key} {shown(getattr(llm, key))} → {shown(value)}"
        for key, value in model.prices.items()
        if getattr(llm, key) != value
    ]
    if model.provider and model.provider != llm.provider:
        differences.append(f"provider {shown(llm.provider)} → {shown(model.provider)}")
    differences += [
        f"metadata.{key} {shown(llm.metadata.get(key))} → {shown(value)}"
        for key, value in model.metadata.items()
        if llm.metadata.get(key) != value
    ]
    return differences


def _upsert_outcomes(
    data: RoutingData, prompt_ids: dict[str, int], llm_ids: dict[str, int], say: Say, summary: ImportSummary
) -> None:
    current = {
        (llm_id, prompt_id): (outcome_id, score, cost)
        for outcome_id, llm_id, prompt_id, score, cost in Outcome.objects.filter(
            prompt_id__in=prompt_ids.values(), llm_id__in=llm_ids.values()
        )
        .values_list("id", "llm_id", "prompt_id", "score", "cost_usd")
        .iterator(chunk_size=50_000)
    }
    new_rows, changed = [], []
    for (external_id, model), (score, cost) in data.outcomes.items():
        key = (llm_ids[model], prompt_ids[external_id])
        old = current.get(key)
        if old is None:
            new_rows.append((key[0], key[1], score, cost))
        elif old[1] != score or old[2] != cost:
            changed.append(
                Outcome(
                    id=old[0], score=score, cost_usd=cost, source=Outcome.Source.IMPORTED, updated_at=timezone.now()
                )
            )
    if new_rows:
        say(f"Writing {len(new_rows):,} new outcomes ...")
        _copy_outcomes(new_rows)
    if changed:
        Outcome.objects.bulk_update(changed, ["score", "cost_usd", "source", "updated_at"], batch_size=2000)
    summary.outcomes_created, summary.outcomes_updated = len(new_rows), len(changed)


def _copy_outcomes(rows: list[tuple]) -> None:
    """Bulk insert with COPY: ~20× faster than INSERT for the 347k outcomes of MMLU-Pro."""
    now = timezone.now()
    columns = "llm_id, prompt_id, score, cost_usd, source, response_text, created_at, updated_at"
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Outcome._meta.db_table} ({columns}) FROM STDIN") as copy:
            for llm_id, prompt_id, score, cost in rows:
                copy.write_row((llm_id, prompt_id, score, cost, Outcome.Source.IMPORTED, "", now, now))


def _describe_cost_basis(data: RoutingData, prompt_set: PromptSet) -> list[str]:
    with_row_cost = sum(1 for _, cost in data.outcomes.values() if cost is not None)
    per_query = [m.name for m in data.models if m.prices.get("usd_per_query") is not None]
    per_token = [
        m.name
        for m in data.models
        if m.name not in per_query
        and (m.prices.get("usd_per_mtok_in") is not None or m.prices.get("usd_per_mtok_out") is not None)
    ]
    unpriced = [m.name for m in data.models if m.name not in per_query and m.name not in per_token]
    lines = []
    if with_row_cost:
        lines.append(f"row cost_usd for {with_row_cost:,} of {len(data.outcomes):,} outcomes (used first)")
    if per_query:
        lines.append(f"per-query price (usd_per_query_mean) for {len(per_query)} LLMs")
    if per_token:
        lines.append(
            f"per-token prices for {len(per_token)} LLMs: per-query cost = mean prompt tokens "
            f"({prompt_set.metadata['mean_prompt_tokens']:g}) × input price + "
            f"{settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS} expected output tokens × output price"
        )
    if unpriced:
        lines.append(
            f"no price for {len(unpriced)} LLMs ({', '.join(unpriced[:5])}{'…' if len(unpriced) > 5 else ''}): use --cost params"
        )
    return lines

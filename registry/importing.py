"""Importing a routing data set (prompts, models, outcomes) into the registry.

A service: the ``import_routing_data`` command only parses arguments and prints. The whole set is
read and validated first, prompts that need it are embedded next, and only then is everything
written in one transaction — a bad row or a crash leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from registry.data_format import RoutingData, read_routing_data
from registry.embedders import Embedder, get_embedder, l2_normalise, text_sha256
from registry.embedding_files import (
    MIN_SAMPLE_COSINE,
    EmbeddingFileError,
    fingerprint_differences,
    read_embedding_file,
    read_fingerprint,
    sample_cosines,
    text_hash,
)
from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.tokens import count_tokens

# Prompts embedded per call when a data set is imported.
EMBED_BATCH_SIZE = 64

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
    embeddings_from_file: int = 0
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
            + self.embeddings_from_file
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

    def __init__(self, say: Say, label: str, every_seconds: float = 5.0) -> None:
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


class Phase:
    """``with Phase(say, "Writing prompts"):`` prints the label, then how long the phase took."""

    def __init__(self, say: Say, label: str) -> None:
        self.say, self.label = say, label

    def __enter__(self) -> Phase:
        self.started = time.monotonic()
        self.say(f"{self.label} ...")
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.say(f"  done in {time.monotonic() - self.started:.1f} s")


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
    with Phase(say, f"Reading {directory}"):
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
    embeddings = _embed_new_or_changed(data, existing, embedder, say, summary, directory=directory)

    with transaction.atomic():
        with Phase(say, "Writing the prompt set and its prompts"):
            prompt_set = _upsert_prompt_set(name=name, role=role, directory=directory, data=data, say=say)
            prompt_ids = _upsert_prompts(prompt_set, data, existing, embeddings, embedder, role, summary, say)
        llm_ids = _upsert_llms(data, summary, update_llms=update_llms)
        _upsert_outcomes(data, prompt_ids, llm_ids, say, summary)
        say("Committing ...")
    summary.cost_basis = _describe_cost_basis(data, prompt_set)
    summary.seconds = time.monotonic() - started
    return summary


def _embed_new_or_changed(
    data: RoutingData, existing: dict, embedder: Embedder, say: Say, summary: ImportSummary, *, directory: Path
) -> dict:
    """Embed prompts that are new, whose text changed, or that another embedder produced; take
    what the data set's embeddings file of this embedder covers from the file instead."""
    todo = []
    for row in data.prompts:
        old = existing.get(row.external_id)
        if old is None or old.text_sha256 != text_sha256(row.text) or old.embedder != embedder.name:
            todo.append(row)
    if not todo:
        say("  embeddings: all up to date")
        return {}
    embeddings = _embeddings_from_files(directory, todo, embedder, say)
    summary.embeddings_from_file = len(embeddings)
    todo = [row for row in todo if row.external_id not in embeddings]
    if not todo:
        return embeddings
    say(f"Embedding {len(todo):,} prompts with {embedder.name} ...")
    vectors = embedder.embed(
        [row.text for row in todo],
        batch_size=EMBED_BATCH_SIZE,
        progress=Progress(say, "embedded"),
    )
    summary.prompts_embedded = len(todo)
    return {**embeddings, **{row.external_id: vector for row, vector in zip(todo, vectors)}}


def _embeddings_from_files(directory: Path, todo: list, embedder: Embedder, say: Say) -> dict:
    """Vectors of the ``todo`` prompts from the data set's ``embeddings-*.npz`` file of this embedder.

    A file is used only if its fingerprint names this embedder's model, dimensions, normalisation
    and truncation and a sample of its prompts, embedded again here, agrees with it (cosine ≥
    ``MIN_SAMPLE_COSINE``); a prompt is taken from it only if its id and text hash match. Anything else is said and
    left to be embedded.
    """
    texts_by_id = {row.external_id: row.text for row in todo}
    for path in sorted(Path(directory).glob("embeddings*.npz")):
        try:
            differences = fingerprint_differences(read_fingerprint(path), embedder)
            if differences:
                say(f"  {path.name}: made by another embedder ({'; '.join(differences)}); not used")
                continue
            file = read_embedding_file(path)
        except (EmbeddingFileError, OSError, ValueError) as exc:
            say(f"  {path.name}: unreadable ({exc}); not used")
            continue
        with Phase(say, f"Checking {path.name} against {embedder.name} on a sample of its prompts"):
            cosines = sample_cosines(file, embedder, texts_by_id)
        if len(cosines) == 0:
            say(f"  {path.name}: none of the prompts to embed is in it with the same text; not used")
            continue
        if cosines.min() < MIN_SAMPLE_COSINE:
            say(
                f"  {path.name}: MISMATCH — {len(cosines)} prompts embedded again agree only to cosine "
                f"{cosines.min():.4f} (< {MIN_SAMPLE_COSINE}); not used, embedding everything"
            )
            continue
        rows = file.lookup()
        taken = {}
        for external_id, text in texts_by_id.items():
            hit = rows.get(external_id)
            if hit is not None and hit[0] == text_hash(text):
                taken[external_id] = file.vectors[hit[1]].astype(np.float32)
        if taken:
            vectors = l2_normalise(np.stack(list(taken.values())))  # float16 rounding moves the norm slightly
            taken = dict(zip(taken, vectors))
        say(
            f"  {len(taken):,} of {len(todo):,} embeddings taken from {path.name} "
            f"(sample of {len(cosines)} embedded again: cosine ≥ {cosines.min():.5f})"
        )
        return taken
    return {}


def _upsert_prompt_set(*, name: str, role: str, directory: Path, data: RoutingData, say: Say = print) -> PromptSet:
    say(f"  counting the tokens of {len(data.prompts):,} prompts (for cost estimates) ...")
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


def _upsert_prompts(
    prompt_set, data, existing, embeddings, embedder, role, summary, say: Say = print
) -> dict[str, int]:
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
    with _hnsw_index_rebuilt_if_cheaper(new_vectors=len(embeddings), new_rows=len(to_create), say=say):
        _write_prompts(to_create, to_update, embeddings, say)
    summary.prompts_created = len(to_create)
    summary.prompts_updated = values_changed
    return dict(Prompt.objects.filter(prompt_set=prompt_set).values_list("external_id", "id"))


def _write_prompts(to_create: list, to_update: list, embeddings: dict, say: Say) -> None:
    progress = Progress(say, "prompts written")
    _copy_prompts(to_create, lambda done, _: progress(done, len(to_create) + len(to_update)))
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
        _copy_update_prompts(
            with_vectors, lambda done, _: progress(len(to_create) + done, len(to_create) + len(to_update))
        )
        Prompt.objects.bulk_update(without, [f for f in fields if f not in ("embedding", "embedder")], batch_size=1000)


def _copy_update_prompts(prompts: list[Prompt], progress: Callable[[int, int], None]) -> None:
    """Update prompts with new vectors through COPY into a temporary table and one UPDATE … FROM:
    bulk_update's CASE expressions grow with the batch and dominate a re-import after a change of
    embedder (benchmarks/results/measurements.md, *Importer*)."""
    if not prompts:
        return
    table = Prompt._meta.db_table
    columns = ["text", "category", "answer", "split", "metadata", "text_sha256", "embedding", "embedder", "updated_at"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE prompt_updates ON COMMIT DROP AS SELECT id, {', '.join(columns)} FROM {table} WITH NO DATA"
        )
        _copy(cursor, "prompt_updates", ["id", *columns], prompts, progress)
        cursor.execute(
            f"UPDATE {table} AS p SET {', '.join(f'{c} = u.{c}' for c in columns)} FROM prompt_updates AS u WHERE p.id = u.id"
        )
        cursor.execute("DROP TABLE prompt_updates")


def _copy(cursor, table: str, columns: list[str], prompts: list[Prompt], progress: Callable[[int, int], None]) -> None:
    """COPY the prompts' ``columns`` into ``table``, saying progress every 1,000 rows and at the end."""
    with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for done, prompt in enumerate(prompts, start=1):
            copy.write_row([_copy_value(prompt, column) for column in columns])
            if done % 1000 == 0 or done == len(prompts):
                progress(done, len(prompts))


def _copy_value(prompt: Prompt, column: str):
    """A prompt's value for COPY: JSON and vectors in PostgreSQL's text forms, the rest as psycopg adapts it."""
    value = getattr(prompt, column)
    if column == "metadata":
        return json.dumps(value)
    if column == "embedding":
        return _vector_text(value)
    return value


def _vector_text(vector) -> str | None:
    """pgvector's text form of a vector, for COPY."""
    if vector is None:
        return None
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


# Below this many new vectors the HNSW index is updated row by row; above it, and when they are a
# good part of the table, the index is dropped and built again once: one build is much cheaper than
# as many single inserts into the graph (benchmarks/results/measurements.md, *Importer*).
INDEX_REBUILD_MIN_VECTORS = 2000
INDEX_REBUILD_MIN_SHARE = 0.25


@contextmanager
def _hnsw_index_rebuilt_if_cheaper(*, new_vectors: int, new_rows: int, say: Say):
    """Drop the prompts' HNSW index for a large write and build it again afterwards, in the
    caller's transaction (readers of the prompt table wait for the commit meanwhile)."""
    total_after = Prompt.objects.count() + new_rows
    if new_vectors < INDEX_REBUILD_MIN_VECTORS or new_vectors < INDEX_REBUILD_MIN_SHARE * total_after:
        yield
        return
    index = next(i for i in Prompt._meta.indexes if i.name == "registry_prompt_embedding_hnsw")
    with connection.schema_editor() as editor:
        editor.remove_index(Prompt, index)
    yield
    with Phase(say, f"Building the nearest-neighbour index over {total_after:,} prompts"):
        with connection.cursor() as cursor:
            # The build is fastest when the graph fits in memory (~4 kB per 384-d prompt).
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # CREATE INDEX refuses to run while deferred foreign-key checks are pending: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with connection.schema_editor() as editor:
            editor.add_index(Prompt, index)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _copy_prompts(prompts: list[Prompt], progress: Callable[[int, int], None]) -> None:
    """Insert new prompts with COPY, the vectors in pgvector's text form: bulk_create's time goes to
    formatting vectors and parsing one huge INSERT (benchmarks/results/measurements.md, *Importer*)."""
    now = timezone.now()
    for prompt in prompts:
        prompt.created_at = prompt.updated_at = now
    columns = ["prompt_set_id", "external_id", "text", "category", "answer", "split", "metadata", "text_sha256"]
    columns += ["embedding", "embedder", "created_at", "updated_at"]
    with connection.cursor() as cursor:
        _copy(cursor, Prompt._meta.db_table, columns, prompts, progress)


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
    say("Comparing outcomes with the stored ones ...")
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
        with Phase(say, f"Writing {len(new_rows):,} new outcomes"):
            _copy_outcomes(new_rows, Progress(say, "outcomes written"))
    if changed:
        with Phase(say, f"Updating {len(changed):,} changed outcomes"):
            progress = Progress(say, "outcomes updated")
            for start in range(0, len(changed), 10_000):
                Outcome.objects.bulk_update(
                    changed[start : start + 10_000], ["score", "cost_usd", "source", "updated_at"], batch_size=2000
                )
                progress(min(start + 10_000, len(changed)), len(changed))
    summary.outcomes_created, summary.outcomes_updated = len(new_rows), len(changed)


def _copy_outcomes(rows: list[tuple], progress: Callable[[int, int], None]) -> None:
    """Bulk insert with COPY, which PostgreSQL loads far faster than INSERT statements for the
    hundreds of thousands of outcomes a data set holds (benchmarks/results/measurements.md, *Importer*)."""
    now = timezone.now()
    columns = "llm_id, prompt_id, score, cost_usd, source, response_text, created_at, updated_at"
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Outcome._meta.db_table} ({columns}) FROM STDIN") as copy:
            for done, (llm_id, prompt_id, score, cost) in enumerate(rows, start=1):
                copy.write_row((llm_id, prompt_id, score, cost, Outcome.Source.IMPORTED, "", now, now))
                if done % 20_000 == 0 or done == len(rows):
                    progress(done, len(rows))


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


def dataset_embeddings_write(*, name: str, target: Path, embedder: Embedder | None = None, say: Say = print) -> Path:
    """Write the imported prompt set ``name``'s embeddings as an embeddings file (data/FORMAT.md).

    ``target`` is a file, or a folder that gets ``embeddings-<embedder>.npz``. Only prompts the
    configured embedder embedded are written (after an import, that is all of them).
    """
    from registry.embedding_files import file_name, write_embedding_file

    embedder = embedder or get_embedder()
    target = Path(target)
    if target.is_dir() or not target.suffix:
        target = target / file_name(embedder)
    rows = list(
        Prompt.objects.filter(prompt_set__name=name, embedder=embedder.name, embedding__isnull=False)
        .order_by("id")
        .values_list("external_id", "text", "embedding")
    )
    if not rows:
        raise ValueError(f"prompt set {name!r} has no prompts embedded by {embedder.name}")
    with Phase(say, f"Writing {len(rows):,} embeddings to {target}"):
        write_embedding_file(
            target,
            ids=[r[0] for r in rows],
            texts=[r[1] for r in rows],
            vectors=np.stack([np.asarray(r[2], dtype=np.float32) for r in rows]),
            embedder=embedder,
        )
    return target

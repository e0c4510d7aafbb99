"""Embeddings files (data/FORMAT.md): written by the importer, used by it only when they match."""

import gzip
import json

import numpy as np
import pytest
from django.core.management import call_command

from registry.embedders import EMBEDDERS, HashingEmbedder
from registry.embedding_files import (
    file_name,
    read_embedding_file,
    text_hash,
    write_embedding_file,
)
from registry.importing import dataset_import
from registry.models import Prompt
from routerhub.config import BY_NAME
from tests.fixtures.slices import DEMO_DATA

pytestmark = pytest.mark.django_db


class CountingHashingEmbedder(HashingEmbedder):
    """The test embedder, counting the texts it is asked to embed."""

    def __init__(self):
        self.embedded = 0

    def _embed_batch(self, texts):
        self.embedded += len(texts)
        return super()._embed_batch(texts)


class LongerTruncationEmbedder(HashingEmbedder):
    max_tokens = 512  # a different fingerprint, same name


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def run_import(directory, name, embedder=None):
    messages = []
    summary = dataset_import(
        directory=directory, name=name, embedder=embedder or HashingEmbedder(), say=messages.append
    )
    return summary, "\n".join(messages)


def write_file_by_command(slice_dir, name="first", capsys=None):
    call_command("import_routing_data", str(slice_dir), "--name", name, "--write-embeddings")
    return slice_dir / file_name(HashingEmbedder())


def test_file_round_trip_keeps_ids_text_hashes_fingerprint_and_float16_vectors(tmp_path):
    embedder = HashingEmbedder()
    texts = ["what is 2 + 2?", "name the capital of France", ""]
    vectors = embedder.embed(texts)
    path = write_embedding_file(
        tmp_path / "e.npz", ids=["a", "b", "7"], texts=texts, vectors=vectors, embedder=embedder
    )
    file = read_embedding_file(path)
    assert list(file.ids) == ["a", "b", "7"]
    assert file.vectors.dtype == np.float16 and file.vectors.shape == (3, 384)
    np.testing.assert_allclose(file.vectors.astype(np.float32), vectors, atol=1e-3)
    assert file.text_hashes[1].tobytes() == text_hash("name the capital of France")
    assert file.fingerprint == {
        "format": 1,
        "name": "hashing-test-only",
        "model": embedder.model,
        "dimensions": 384,
        "normalisation": "l2",
        "max_tokens": None,
    }


def test_write_embeddings_option_writes_every_prompt_of_the_set(slice_dir, capsys):
    path = write_file_by_command(slice_dir)
    assert f"Wrote {path}" in capsys.readouterr().out
    file = read_embedding_file(path)
    stored = {p.external_id: (p.text, np.asarray(p.embedding)) for p in Prompt.objects.filter(prompt_set__name="first")}
    assert sorted(file.ids) == sorted(stored) and len(file.ids) == 120
    for row, pid in enumerate(file.ids):
        text, vector = stored[pid]
        assert file.text_hashes[row].tobytes() == text_hash(text)
        assert cosine(file.vectors[row], vector) > 0.9999


def test_import_takes_covered_prompts_from_the_file_and_embeds_only_the_rest(slice_dir):
    write_file_by_command(slice_dir)
    # One question changes its text: the file's vector for it is stale and must not be used.
    lines = gzip.open(slice_dir / "prompts.jsonl.gz", "rt", encoding="utf-8").read().splitlines()
    changed = json.loads(lines[5])
    changed["question"] = "A question nobody embedded before: what is the airspeed of a swallow?"
    lines[5] = json.dumps(changed)
    with gzip.open(slice_dir / "prompts.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")

    embedder = CountingHashingEmbedder()
    summary, said = run_import(slice_dir, "second", embedder)
    assert (summary.embeddings_from_file, summary.prompts_embedded) == (119, 1)
    assert "119 of 120 embeddings taken from embeddings-hashing-test-only.npz" in said
    # The sample check embeds 32 of the covered prompts again; beyond that only the changed one.
    assert embedder.embedded == 32 + 1
    reference = HashingEmbedder()
    for prompt in Prompt.objects.filter(prompt_set__name="second"):
        assert float(np.asarray(prompt.embedding) @ reference.embed_one(prompt.text)) > 0.9999
        assert prompt.embedder == "hashing-test-only"


def test_a_file_of_another_embedder_is_reported_and_everything_is_embedded(slice_dir):
    write_file_by_command(slice_dir)
    embedder = LongerTruncationEmbedder()
    summary, said = run_import(slice_dir, "second", embedder)
    assert "embeddings-hashing-test-only.npz: made by another embedder (max_tokens: None ≠ 512); not used" in said
    assert (summary.embeddings_from_file, summary.prompts_embedded) == (0, 120)


def test_a_file_whose_vectors_disagree_with_the_embedder_is_a_reported_mismatch(slice_dir):
    path = write_file_by_command(slice_dir)
    file = read_embedding_file(path)
    texts = dict(Prompt.objects.filter(prompt_set__name="first").values_list("external_id", "text"))
    # Same fingerprint, other vectors: what a changed library or a hand-edited file would give.
    rng = np.random.default_rng(0)
    wrong = rng.normal(size=(len(file.ids), 384)).astype(np.float32)
    write_embedding_file(
        path,
        ids=list(file.ids),
        texts=[texts[i] for i in file.ids],
        vectors=wrong / np.linalg.norm(wrong, axis=1, keepdims=True),
        embedder=HashingEmbedder(),
    )
    summary, said = run_import(slice_dir, "second")
    assert "embeddings-hashing-test-only.npz: MISMATCH — 32 prompts embedded again agree only to cosine" in said
    assert "not used, embedding everything" in said
    assert (summary.embeddings_from_file, summary.prompts_embedded) == (0, 120)


def test_a_corrupt_file_is_reported_and_ignored(slice_dir):
    (slice_dir / "embeddings-broken.npz").write_bytes(b"not a zip file")
    summary, said = run_import(slice_dir, "second")
    assert "embeddings-broken.npz: unreadable" in said
    assert summary.prompts_embedded == 120


def test_the_demo_set_ships_embeddings_of_the_default_embedder_for_every_question():
    from registry.data_format import read_prompts

    embedder = EMBEDDERS[BY_NAME["ROUTERHUB_EMBEDDER"].default]()
    file = read_embedding_file(DEMO_DATA / file_name(embedder))
    assert {k: file.fingerprint[k] for k in ("model", "dimensions", "normalisation", "max_tokens")} == {
        k: embedder.fingerprint[k] for k in ("model", "dimensions", "normalisation", "max_tokens")
    }
    rows = file.lookup()
    prompts = read_prompts(DEMO_DATA / "prompts.jsonl.gz")
    assert len(prompts) == len(rows) == 12_032
    assert all(rows[p.external_id][0] == text_hash(p.text) for p in prompts)


@pytest.mark.slow
def test_the_demo_embeddings_agree_with_the_default_embedder_run_here():
    from registry.data_format import read_prompts
    from registry.embedding_files import MIN_SAMPLE_COSINE, sample_cosines

    embedder = EMBEDDERS[BY_NAME["ROUTERHUB_EMBEDDER"].default]()
    file = read_embedding_file(DEMO_DATA / file_name(embedder))
    texts = {p.external_id: p.text for p in read_prompts(DEMO_DATA / "prompts.jsonl.gz")}
    cosines = sample_cosines(file, embedder, texts, size=16)
    assert len(cosines) == 16 and cosines.min() >= MIN_SAMPLE_COSINE


def test_a_change_of_embedder_re_embeds_and_rewrites_every_vector_in_place(slice_dir):
    class Renamed(HashingEmbedder):
        name = "hashing-renamed-test-only"

        def _embed_batch(self, texts):
            return -super()._embed_batch(texts)  # another embedder: other vectors

    run_import(slice_dir, "set")
    ids_before = dict(Prompt.objects.values_list("external_id", "id"))
    summary, _ = run_import(slice_dir, "set", Renamed())
    assert (summary.prompts_created, summary.prompts_embedded) == (0, 120)
    assert dict(Prompt.objects.values_list("external_id", "id")) == ids_before
    renamed = Renamed()
    for prompt in Prompt.objects.all():
        assert prompt.embedder == "hashing-renamed-test-only"
        assert cosine(prompt.embedding, renamed.embed_one(prompt.text)) > 0.9999

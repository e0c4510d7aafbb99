import numpy as np
import pytest

from registry.embedders import HashingEmbedder, MiniLMEmbedder, get_embedder, text_sha256
from registry.models import Prompt, PromptSet
from registry.services import prompts_embed


def test_hashing_embedder_is_deterministic_and_unit_norm():
    embedder = HashingEmbedder()
    first = embedder.embed(["the cat sat on the mat", "", "integrals and derivatives"])
    second = embedder.embed(["the cat sat on the mat", "", "integrals and derivatives"])
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert first.shape == (3, 384) and first.dtype == np.float32


def test_embed_batches_and_reports_progress():
    seen = []
    HashingEmbedder().embed([f"text {i}" for i in range(10)], batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_unknown_embedder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown embedder 'nope'"):
        get_embedder("nope")


@pytest.mark.slow
def test_minilm_embedder_gives_meaningful_unit_vectors():
    embedder = MiniLMEmbedder()
    vectors = embedder.embed(
        [
            "What is the derivative of x squared?",
            "Differentiate the function f(x) = x^2.",
            "Which court decided Marbury v. Madison?",
        ]
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    same_topic, other_topic = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same_topic > other_topic + 0.2


@pytest.mark.django_db
def test_prompts_are_embedded_once_and_again_only_when_text_changes():
    prompt_set = PromptSet.objects.create(name="s")
    prompts = [
        Prompt.objects.create(
            prompt_set=prompt_set, external_id=str(i), text=f"question {i}", split="train", text_sha256=""
        )
        for i in range(5)
    ]
    embedder = HashingEmbedder()
    assert prompts_embed(prompts=Prompt.objects.all(), embedder=embedder) == 5
    assert prompts_embed(prompts=Prompt.objects.all(), embedder=embedder) == 0
    Prompt.objects.filter(id=prompts[0].id).update(text="a different question")
    assert prompts_embed(prompts=Prompt.objects.all(), embedder=embedder) == 1
    stored = Prompt.objects.get(id=prompts[0].id)
    np.testing.assert_allclose(stored.embedding, embedder.embed_one("a different question"), rtol=1e-5)
    assert stored.text_sha256 == text_sha256("a different question")

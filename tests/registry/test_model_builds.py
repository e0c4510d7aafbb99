"""The default embedder's ONNX model, written from the packaged MiniLM weights without PyTorch: it builds
where PyTorch cannot be imported, the shipped demo embeddings pass the importer's check against it, and
it gives the very vectors of the model PyTorch's exporter makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from registry.data_format import find_file, read_prompts
from registry.embedders import MiniLMOnnxEmbedder, MiniLMOnnxInt8Embedder
from registry.embedding_files import MIN_SAMPLE_COSINE, read_embedding_file
from registry.model_builds import minilm_source_dir, onnx_fp32_path, onnx_int8_path
from tests.processes.workers import PROJECT_DIR

pytestmark = pytest.mark.slow

DEMO = PROJECT_DIR / "data" / "mmlu-pro"
SENTENCES = [
    "What is the derivative of x squared?",
    "Which court decided Marbury v. Madison?",
    "A 45-year-old man presents with chest pain radiating to the left arm. What is the most likely diagnosis?",
    "",
]
# The build runs with these unimportable, as in an install of requirements.txt alone.
TORCH_STACK = ("torch", "transformers", "sentence_transformers", "model2vec")


@pytest.fixture(scope="module")
def built_without_torch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in TORCH_STACK)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; {blocked}; from registry.model_builds import main; main(['minilm-onnx-int8', 'minilm-onnx'])",
        ],
        cwd=PROJECT_DIR,
        env={"PATH": "/usr/bin:/bin", "ROUTERHUB_MODEL_DIR": str(folder), "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.fixture
def model_dir(built_without_torch, settings) -> Path:
    settings.ROUTERHUB_MODEL_DIR = str(built_without_torch)
    return built_without_torch


def test_it_builds_where_pytorch_cannot_be_imported(model_dir):
    assert sorted(path.name for path in model_dir.glob("*.onnx")) == [
        "all-MiniLM-L6-v2-fp32-r3.onnx",
        "all-MiniLM-L6-v2-int8-r3.onnx",
    ]


def test_the_shipped_demo_embeddings_pass_the_importers_check_against_it(model_dir):
    file = read_embedding_file(DEMO / "embeddings-all-MiniLM-L6-v2-onnx-int8-256.npz")
    texts = {row.external_id: row.text for row in read_prompts(find_file(DEMO, "prompts.jsonl"))}
    rows = np.linspace(0, len(file.ids) - 1, num=48).round().astype(int)
    fresh = MiniLMOnnxInt8Embedder().embed([texts[str(file.ids[row])] for row in rows])
    stored = file.vectors[rows].astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    cosines = np.sum(fresh * stored, axis=1)
    # The file was made on another CPU, whose int8 kernels round differently (embedding_files.py).
    assert cosines.min() >= MIN_SAMPLE_COSINE and np.median(cosines) > 0.999


def test_its_vectors_are_those_of_pytorchs_export_bit_for_bit(model_dir, tmp_path, settings):
    """The graph written here and the one PyTorch's exporter writes, each quantised the same way."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exported = tmp_path / onnx_fp32_path().name
    _export_with_pytorch(exported)
    quantize_dynamic(
        str(exported),
        str(tmp_path / onnx_int8_path().name),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["MatMul"],
    )
    texts = SENTENCES + [row.text for row in read_prompts(find_file(DEMO, "prompts.jsonl"))[:40]]
    ours = MiniLMOnnxInt8Embedder().embed(texts), MiniLMOnnxEmbedder().embed(texts)
    settings.ROUTERHUB_MODEL_DIR = str(tmp_path)
    theirs = MiniLMOnnxInt8Embedder().embed(texts), MiniLMOnnxEmbedder().embed(texts)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], atol=2e-6)


def _export_with_pytorch(target: Path) -> None:
    """MiniLM with mean pooling through torch.onnx.export, as sentence-transformers computes it."""
    import warnings

    torch = pytest.importorskip("torch")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(minilm_source_dir())).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, transformer):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    example = torch.ones(2, 16, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            MeanPooled(model).eval(),
            (example, example),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )

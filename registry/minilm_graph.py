"""all-MiniLM-L6-v2 written as an ONNX graph from its packaged weights, with numpy and onnx alone.

The graph is the one PyTorch's exporter makes of the sentence-transformers model (BERT, 6 layers,
12 heads, exact GELU, mean pooling inside the graph), op for op where it matters — the matrix
products that int8 quantisation turns into integer ones take the same transposed weights — so
building the default embedder needs neither PyTorch nor transformers. Inputs ``input_ids`` and
``attention_mask`` (int64, batch × tokens), output ``embedding`` (float32, batch × 384, not normalised).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

LAYERS, HEADS, HIDDEN = 6, 12, 384
LAYER_NORM_EPSILON = 1e-12
OPSET = 17  # the first with LayerNormalization
# What ONNX Runtime 1.2x and later read; onnx would write its own newest otherwise.
IR_VERSION = 8


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (an 8-byte header length, a JSON header, raw little-endian data)."""
    dtypes = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8")}
    raw = Path(path).read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_length])
    data = raw[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
    return tensors


class _GraphWriter:
    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []

    def constant(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def layer_norm(self, x: str, weights: dict, prefix: str) -> str:
        return self.op(
            "LayerNormalization",
            [
                x,
                self.constant(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                self.constant(f"{prefix}.bias", weights[f"{prefix}.bias"]),
            ],
            f"{prefix}/LayerNormalization",
            axis=-1,
            epsilon=LAYER_NORM_EPSILON,
        )

    def dense(self, x: str, weights: dict, prefix: str) -> str:
        # x @ Wᵀ + b, the weight stored transposed as the exporter stores a Linear layer's.
        product = self.op(
            "MatMul", [x, self.constant(f"{prefix}.weight.T", weights[f"{prefix}.weight"].T)], f"{prefix}/MatMul"
        )
        return self.op("Add", [self.constant(f"{prefix}.bias", weights[f"{prefix}.bias"]), product], f"{prefix}/Add")


def minilm_graph(weights: dict[str, np.ndarray]):
    """The ONNX model (an ``onnx.ModelProto``) of MiniLM with mean pooling, from its named weights."""
    from onnx import TensorProto, helper

    g = _GraphWriter()
    ids, mask = "input_ids", "attention_mask"
    scalar = lambda name, value: g.constant(name, np.array(value, dtype=np.float32))  # noqa: E731
    axes = lambda name, *values: g.constant(name, np.array(values, dtype=np.int64))  # noqa: E731

    # Embeddings: word + token type (always type 0) + position, then LayerNorm.
    words = g.op("Gather", [g.constant("word_embeddings", weights["embeddings.word_embeddings.weight"]), ids], "words")
    token_type = g.constant("token_type_0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", [words, token_type], "words+type")
    # The first (text length) rows of the position table.
    length = g.op("Shape", [ids], "length", start=1, end=2)
    position_vectors = g.op(
        "Slice",
        [
            g.constant("position_embeddings", weights["embeddings.position_embeddings.weight"]),
            axes("start_0", 0),
            length,
            axes("axis_0", 0),
        ],
        "position_vectors",
    )
    x = g.layer_norm(g.op("Add", [x, position_vectors], "embedded"), weights, "embeddings.LayerNorm")

    # Padding keys get -inf before the softmax: batch × 1 × 1 × keys.
    keep = g.op("Unsqueeze", [g.op("Cast", [mask], "mask_bool", to=TensorProto.BOOL), axes("axes_1_2", 1, 2)], "keep")
    key_bias = g.op("Where", [keep, scalar("zero_f", 0.0), scalar("minus_inf", -np.inf)], "key_bias")
    # The exporter scales queries and keys by √(1/√d) each rather than their product by 1/√d.
    head_scale = scalar("head_scale", math.sqrt(1 / math.sqrt(HIDDEN // HEADS)))
    split_heads = g.constant("split_heads", np.array([0, 0, HEADS, HIDDEN // HEADS], dtype=np.int64))
    # Batch × tokens × (-1), computed from the input rather than written as a constant: ONNX Runtime
    # then cannot tell the joined heads' width when it optimises the graph, and leaves the attention
    # output's residual sum and LayerNorm unfused, as in the exporter's graph. Fused
    # (SkipLayerNormalization) they round differently, which int8 quantisation of the next layer
    # carries on: the vectors would differ from the exporter's instead of being bit-identical
    # (benchmarks/results/measurements.md, *Embeddings files across CPUs*).
    join_heads = g.op(
        "Concat", [g.op("Shape", [ids], "batch_tokens", start=0, end=2), axes("minus_one", -1)], "join_heads", axis=0
    )
    sqrt2, one_f, half = scalar("sqrt2", math.sqrt(2)), scalar("one_f", 1.0), scalar("half", 0.5)

    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"
        heads = {}
        for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            projected = g.dense(x, weights, f"{p}.attention.self.{part}")
            shaped = g.op("Reshape", [projected, split_heads], f"{p}/{part}/heads")
            heads[part] = g.op("Transpose", [shaped], f"{p}/{part}/transposed", perm=perm)
        query = g.op("Mul", [heads["query"], head_scale], f"{p}/query/scaled")
        key = g.op("Mul", [heads["key"], head_scale], f"{p}/key/scaled")
        scores = g.op("Add", [g.op("MatMul", [query, key], f"{p}/scores"), key_bias], f"{p}/scores_masked")
        attention = g.op("Softmax", [scores], f"{p}/attention", axis=-1)
        context = g.op("MatMul", [attention, heads["value"]], f"{p}/context")
        context = g.op("Transpose", [context], f"{p}/context/transposed", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, join_heads], f"{p}/context/joined")
        attended = g.dense(context, weights, f"{p}.attention.output.dense")
        x = g.layer_norm(
            g.op("Add", [attended, x], f"{p}/attention/residual"), weights, f"{p}.attention.output.LayerNorm"
        )
        inner = g.dense(x, weights, f"{p}.intermediate.dense")
        # Exact GELU as the exporter writes it: x · (erf(x / √2) + 1) · 0.5
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2], f"{p}/gelu/div")], f"{p}/gelu/erf")
        gelu = g.op(
            "Mul",
            [g.op("Mul", [inner, g.op("Add", [erf, one_f], f"{p}/gelu/add")], f"{p}/gelu/mul"), half],
            f"{p}/gelu",
        )
        out = g.dense(gelu, weights, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x], f"{p}/output/residual"), weights, f"{p}.output.LayerNorm")

    # Mean over the text's own tokens.
    weight = g.op(
        "Cast", [g.op("Unsqueeze", [mask, axes("axes_last", -1)], "mask_column")], "token_weight", to=TensorProto.FLOAT
    )
    summed = g.op("ReduceSum", [g.op("Mul", [x, weight], "masked"), axes("axes_tokens", 1)], "summed", keepdims=0)
    count = g.op("ReduceSum", [weight, "axes_tokens"], "token_count", keepdims=0)
    count = g.op("Clip", [count, scalar("min_count", 1e-9)], "token_count_clipped")
    g.op("Div", [summed, count], "embedding")

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2-mean-pooled",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="routerhub")
    model.ir_version = IR_VERSION
    return model

"""Strategy state ⇄ (small JSON, .npz blob), so a fitted strategy can live in one Postgres row."""

from __future__ import annotations

import io

import numpy as np


def split_state(state: dict) -> tuple[dict, bytes]:
    arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
    small = {key: value for key, value in state.items() if not isinstance(value, np.ndarray)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return _jsonable(small), buffer.getvalue()


def join_state(small: dict, blob: bytes) -> dict:
    with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as arrays:
        return {**small, **{key: arrays[key] for key in arrays.files}}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

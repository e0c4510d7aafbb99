"""Small synthetic routing data where the right answer is known: two well-separated prompt topics."""

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Outcomes:
    embeddings: np.ndarray  # [n, D], L2-normalised
    topic: np.ndarray  # [n] 0 or 1
    correctness: np.ndarray  # [n, m], NaN = missing


def two_topic_embeddings(n: int, rng: np.random.Generator, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    topic = np.arange(n) % 2
    rng.shuffle(topic)
    centres = np.eye(dim)[:2]
    embeddings = centres[topic] + 0.2 * rng.normal(size=(n, dim))
    return (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32), topic


def outcomes(n: int, seed: int, accuracy_by_topic: list[tuple[float, float]], missing: float = 0.0) -> Outcomes:
    """Correctness drawn per LLM with the given accuracy on topic 0 and topic 1; a share ``missing`` is NaN."""
    rng = np.random.default_rng(seed)
    embeddings, topic = two_topic_embeddings(n, rng)
    accuracy = np.array(accuracy_by_topic)[:, topic].T  # [n, m]
    correctness = (rng.random(accuracy.shape) < accuracy).astype(np.float64)
    correctness[rng.random(accuracy.shape) < missing] = np.nan
    return Outcomes(embeddings, topic, correctness)


# Training LLMs: one strong on each topic, one mediocre everywhere, one with fractional scores.
TRAINING_LLMS = [(0.9, 0.2), (0.2, 0.9), (0.5, 0.5), (0.7, 0.6)]
LLM_KEYS = ["topic0-expert", "topic1-expert", "average", "decent"]


@pytest.fixture
def train():
    data = outcomes(160, 1, TRAINING_LLMS, missing=0.05)
    data.correctness[::7, 3] = 0.5  # fractional scores are allowed
    return data


@pytest.fixture
def validation():
    return outcomes(80, 2, TRAINING_LLMS, missing=0.05)


@pytest.fixture
def unseen():
    """Validation outcomes of two LLMs no strategy was trained on, and test prompts."""
    return outcomes(80, 2, [(0.95, 0.05), (0.5, 0.5)], missing=0.05), outcomes(60, 3, [(0.95, 0.05), (0.5, 0.5)])

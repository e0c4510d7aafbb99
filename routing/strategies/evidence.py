"""Bounded evidence: outcomes observed after a fit (feedback, graders) as weighted rows of a profile.

An evidence event says that LLM h scored c ∈ [0, 1] on prompt x, according to a source s (a trusted
tenant, a grader), at time t. Events become rows (φ(x), c, ω) appended to h's validation rows when h is
profiled (``RoutingStrategy.profile(sample_weight=...)``), so evidence moves h's estimate in the
cluster(s) of x without a refit. The rule keeps any one source from steering routing:

- **One prompt counts once** per (source, LLM): of a source's events on the same prompt and LLM only the
  latest is kept, so repeating a judgement changes nothing.
- **Decay**: an event of age τ weighs ω = 2^(−τ / half-life), so old evidence fades.
- **Cap**: a source's total weight per LLM is at most ``cap`` (a number of prompts' worth): when its
  decayed weights sum to W > cap, each is scaled by cap / W. In a cluster holding n validation answers
  under a prior worth a prompts, a flood from one source thus moves the estimate by at most
  cap / (n + a + cap) of the distance to what it claims.

All functions are pure and work on arrays, so the service that stores events and the offline replay
(``evaluate --protocol online``) apply the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class EvidenceRows:
    """Rows to append to LLMs' validation rows: one per kept event."""

    llm: np.ndarray  # [r] the LLM each row is evidence for
    source: np.ndarray  # [r] who gave it
    embedding_index: np.ndarray  # [r] index of the prompt's embedding in the caller's array
    correctness: np.ndarray  # [r] in [0, 1]
    weight: np.ndarray  # [r] ≥ 0, after decay and cap

    def for_llm(self, llm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embedding_index, correctness, weight) of one LLM's rows."""
        mine = self.llm == llm
        return self.embedding_index[mine], self.correctness[mine], self.weight[mine]


def decayed_weight(age_seconds, half_life_seconds: float) -> np.ndarray:
    """2^(−age / half-life) per event; an event from the future (clock skew) counts as new."""
    if not half_life_seconds > 0:
        raise ValueError(f"half-life must be positive, got {half_life_seconds!r}")
    age = np.maximum(np.asarray(age_seconds, dtype=np.float64), 0.0)
    return np.exp2(-age / float(half_life_seconds))


def latest_per_prompt(source, llm, prompt, time) -> np.ndarray:
    """Indices of the events kept when one prompt counts once per (source, LLM): the latest of each
    group (on equal times, the one given last), in input order."""
    source, llm, prompt = (_keys(a) for a in (source, llm, prompt))
    time = np.asarray(time, dtype=np.float64)
    if not len(source) == len(llm) == len(prompt) == len(time):
        raise ValueError("source, llm, prompt and time need one entry per event")
    if len(time) == 0:
        return np.zeros(0, dtype=int)
    # Sort by group, then time, then position: the last event of each group is the one kept.
    order = np.lexsort((np.arange(len(time)), time, prompt, llm, source))
    group = np.stack([source[order], llm[order], prompt[order]], axis=1)
    last = np.ones(len(order), dtype=bool)
    last[:-1] = np.any(group[1:] != group[:-1], axis=1)
    return np.sort(order[last])


def capped_weight(weight, source, llm, cap: float) -> np.ndarray:
    """Weights scaled so that each (source, LLM)'s total is at most ``cap`` (each group by one factor)."""
    if not cap >= 0:
        raise ValueError(f"cap must be non-negative, got {cap!r}")
    weight = np.asarray(weight, dtype=np.float64)
    if len(weight) == 0:
        return weight.copy()
    pairs = np.stack([_keys(source), _keys(llm)], axis=1)
    _, group = np.unique(pairs, axis=0, return_inverse=True)
    group = group.reshape(-1)
    total = np.bincount(group, weights=weight)
    scale = np.where(total > cap, cap / np.where(total > 0, total, 1.0), 1.0)
    return weight * scale[group]


def evidence_rows(
    *,
    llm,
    source,
    prompt,
    embedding_index,
    correctness,
    time,
    now: float,
    half_life_seconds: float,
    cap: float,
) -> EvidenceRows:
    """The bounded rule (module docstring) on events given as parallel arrays.

    ``prompt`` identifies a prompt for "counts once" (e.g. a prompt id); ``embedding_index`` locates its
    embedding for the caller (often the same). ``time`` and ``now`` are in seconds.
    """
    correctness = np.asarray(correctness, dtype=np.float64)
    if np.any(~np.isfinite(correctness)) or np.any((correctness < 0) | (correctness > 1)):
        raise ValueError("evidence correctness must lie in [0, 1]")
    kept = latest_per_prompt(source, llm, prompt, time)
    llm, source = _keys(llm)[kept], _keys(source)[kept]
    weight = decayed_weight(float(now) - np.asarray(time, dtype=np.float64)[kept], half_life_seconds)
    return EvidenceRows(
        llm=llm,
        source=source,
        embedding_index=np.asarray(embedding_index, dtype=int)[kept],
        correctness=correctness[kept],
        weight=capped_weight(weight, source, llm, cap),
    )


def with_evidence(
    validation_embeddings, validation_correctness, evidence_embeddings, evidence_correctness, evidence_weight
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, correctness, sample_weight) for ``profile``: one LLM's validation rows (weight 1)
    followed by its evidence rows."""
    validation_embeddings = np.asarray(validation_embeddings, dtype=np.float32)
    evidence_embeddings = np.asarray(evidence_embeddings, dtype=np.float32).reshape(-1, validation_embeddings.shape[1])
    return (
        np.concatenate([validation_embeddings, evidence_embeddings]),
        np.concatenate([np.asarray(validation_correctness, dtype=np.float64), np.asarray(evidence_correctness, float)]),
        np.concatenate([np.ones(len(validation_embeddings)), np.asarray(evidence_weight, dtype=np.float64)]),
    )


def _keys(values) -> np.ndarray:
    """Identifiers as one comparable array (ints stay ints; anything else becomes strings)."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    return values.astype(str)

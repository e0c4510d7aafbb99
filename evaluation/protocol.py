"""Random splits of the unseen-LLM protocol (METHODS.md, "Reported setting").

Prompts are split 60/10/30 into train / validation / test; the LLMs 2/3 into training LLMs and 1/3
into unseen test LLMs. Routers learn from the training LLMs on the train prompts, profile the test
LLMs on the validation prompts only, and route among the test LLMs on the test prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROMPT_SHARES = (0.6, 0.1, 0.3)
TRAIN_LLM_SHARE = 2 / 3


@dataclass(frozen=True)
class Split:
    train_prompts: np.ndarray
    validation_prompts: np.ndarray
    test_prompts: np.ndarray
    train_llms: np.ndarray
    test_llms: np.ndarray


def make_splits(n_prompts: int, n_llms: int, trials: int, seed: int) -> list[Split]:
    """``trials`` independent random splits; the same (n_prompts, n_llms, trials, seed) gives the same splits."""
    if n_llms < 3:
        raise ValueError(f"the unseen-LLM protocol needs at least 3 LLMs, got {n_llms}")
    if n_prompts < 10:
        raise ValueError(f"the protocol needs at least 10 prompts, got {n_prompts}")
    n_train = int(round(PROMPT_SHARES[0] * n_prompts))
    n_validation = max(1, int(round(PROMPT_SHARES[1] * n_prompts)))
    n_test_llms = max(2, int(round((1 - TRAIN_LLM_SHARE) * n_llms)))
    splits = []
    for rng in (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(trials)):
        prompts = rng.permutation(n_prompts)
        llms = rng.permutation(n_llms)
        splits.append(
            Split(
                train_prompts=np.sort(prompts[:n_train]),
                validation_prompts=np.sort(prompts[n_train : n_train + n_validation]),
                test_prompts=np.sort(prompts[n_train + n_validation :]),
                train_llms=np.sort(llms[n_test_llms:]),
                test_llms=np.sort(llms[:n_test_llms]),
            )
        )
    return splits

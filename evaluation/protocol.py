"""Random splits of the unseen-LLM protocol (METHODS.md, "Reported setting").

Prompts are split 60/10/30 into train / validation / test; the LLMs 2/3 into training LLMs and 1/3
into unseen test LLMs. Routers learn from the training LLMs on the train prompts, profile the test
LLMs on the validation prompts only, and route among the test LLMs on the test prompts.

The *domain-shift* variant splits prompts by category instead: the train prompts come from some
categories, the validation and test prompts from the others — a router fitted on one kind of
traffic, then deployed where a customer's prompts are about something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROMPT_SHARES = (0.6, 0.1, 0.3)
TRAIN_LLM_SHARE = 2 / 3
PROTOCOLS = ("unseen-llm", "domain-shift", "online")  # online: evaluation/online.py replays these splits


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
    splits = []
    for rng in (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(trials)):
        prompts = rng.permutation(n_prompts)
        train_llms, test_llms = _llm_split(n_llms, rng)
        splits.append(
            Split(
                train_prompts=np.sort(prompts[:n_train]),
                validation_prompts=np.sort(prompts[n_train : n_train + n_validation]),
                test_prompts=np.sort(prompts[n_train + n_validation :]),
                train_llms=train_llms,
                test_llms=test_llms,
            )
        )
    return splits


def make_domain_shift_splits(categories: np.ndarray, n_llms: int, trials: int, seed: int) -> list[Split]:
    """``trials`` splits whose train prompts and validation/test prompts come from disjoint categories.

    Categories are dealt in random order to the train side until it holds 60 % of the prompts (the
    category that crosses the line goes to the other side when that lands nearer 60 %); the other
    categories' prompts are split 1:3 into validation and test, the shares of the usual protocol.
    Prompts without a category are left out.
    """
    categories = np.asarray(categories).astype(str)
    names = sorted(set(categories) - {""})
    if len(names) < 2:
        raise ValueError(f"the domain-shift protocol needs prompts of at least 2 categories, found {len(names)}")
    if n_llms < 3:
        raise ValueError(f"the unseen-LLM protocol needs at least 3 LLMs, got {n_llms}")
    sizes = {name: int(np.sum(categories == name)) for name in names}
    total = sum(sizes.values())
    target = PROMPT_SHARES[0] * total
    validation_share = PROMPT_SHARES[1] / (PROMPT_SHARES[1] + PROMPT_SHARES[2])
    splits = []
    for rng in (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(trials)):
        order = [names[i] for i in rng.permutation(len(names))]
        train_categories, held_out, count = [], [], 0
        for name in order:
            crossing = count < target <= count + sizes[name]
            take = count < target and (not crossing or abs(count + sizes[name] - target) <= abs(count - target))
            if take or not train_categories:
                train_categories.append(name)
                count += sizes[name]
            else:
                held_out.append(name)
        if not held_out:
            held_out.append(train_categories.pop())
        train_rows = np.flatnonzero(np.isin(categories, train_categories))
        other_rows = rng.permutation(np.flatnonzero(np.isin(categories, held_out)))
        n_validation = max(1, int(round(validation_share * len(other_rows))))
        train_llms, test_llms = _llm_split(n_llms, rng)
        splits.append(
            Split(
                train_prompts=train_rows,
                validation_prompts=np.sort(other_rows[:n_validation]),
                test_prompts=np.sort(other_rows[n_validation:]),
                train_llms=train_llms,
                test_llms=test_llms,
            )
        )
    return splits


def _llm_split(n_llms: int, rng) -> tuple[np.ndarray, np.ndarray]:
    n_test_llms = max(2, int(round((1 - TRAIN_LLM_SHARE) * n_llms)))
    llms = rng.permutation(n_llms)
    return np.sort(llms[n_test_llms:]), np.sort(llms[:n_test_llms])

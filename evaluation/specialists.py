"""Specialist recall: does a router give a new LLM the prompts it is best at?

For every category of a split's test prompts, a simulated *specialist* LLM is added to the unseen
LLMs: right on every prompt of that category, wrong on every other, priced like a mid LLM (the
median cost of the split's test LLMs). It is profiled like any unseen LLM, from its validation
outcomes alone. Routing at λ = 0 (best predicted quality, cost only breaks ties) then says

- **recall**: the share of the category's test prompts routed to the specialist (an oracle gets 1);
- **false share**: the share of the other test prompts routed to it (each one a wrong answer);
- **gain on the category** and **change elsewhere**: the accuracy with the specialist in the pool
  minus the accuracy without it, on the category's prompts and on all the others (≤ 0: what the
  specialist costs elsewhere).

Each specialist is added alone (one at a time), so the figures of one category do not depend on
the others'. Pure numpy; ``routing.selection`` makes the choices, with its tie rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.selection import select

MIN_PROMPTS = 5  # a category needs this many validation and test prompts to be simulated


@dataclass(frozen=True)
class Specialist:
    category: str
    categories: np.ndarray  # every prompt's category: the specialist is right exactly where it is ``category``
    validation_correctness: np.ndarray  # [n_validation]
    test_in_category: np.ndarray  # [n_test] bool

    def correctness(self, rows: np.ndarray) -> np.ndarray:
        return (self.categories[rows] == self.category).astype(np.float64)


def specialists_of(categories: np.ndarray, validation_rows: np.ndarray, test_rows: np.ndarray) -> list[Specialist]:
    """One specialist per category with at least ``MIN_PROMPTS`` validation and test prompts."""
    categories = np.asarray(categories).astype(str)
    validation_categories, test_categories = categories[validation_rows], categories[test_rows]
    out = []
    for category in sorted(set(test_categories) - {""}):
        on_validation = validation_categories == category
        in_test = test_categories == category
        if on_validation.sum() >= MIN_PROMPTS and in_test.sum() >= MIN_PROMPTS:
            out.append(Specialist(category, categories, on_validation.astype(np.float64), in_test))
    return out


def with_specialist_cost(costs: np.ndarray) -> np.ndarray:
    """The pool's ``costs`` [m] with the specialist's appended [m + 1]: the pool's median."""
    return np.append(costs, float(np.median(costs)))


def specialist_figures(
    losses: np.ndarray, specialist_losses: np.ndarray, truth: np.ndarray, costs: np.ndarray, specialist: Specialist
) -> dict:
    """Recall, false share, gain on the category and change elsewhere for one specialist (module docstring).

    ``losses`` [n_test, m] and ``truth`` [n_test, m] are the pool's predicted losses and correctness;
    ``specialist_losses`` [n_test] the specialist's predicted losses.
    """
    without = select(losses, costs, lam=0.0)
    with_it = select(np.column_stack([losses, specialist_losses]), with_specialist_cost(costs), lam=0.0)
    rows = np.arange(len(truth))
    quality_without = truth[rows, without]
    to_specialist = with_it == truth.shape[1]
    quality_with = np.where(
        to_specialist,
        specialist.test_in_category.astype(np.float64),
        truth[rows, np.minimum(with_it, truth.shape[1] - 1)],
    )
    inside, outside = specialist.test_in_category, ~specialist.test_in_category
    return {
        "recall": float(to_specialist[inside].mean()),
        "false_share": float(to_specialist[outside].mean()) if outside.any() else 0.0,
        "gain_on_category": float((quality_with - quality_without)[inside].mean()),
        "change_elsewhere": float((quality_with - quality_without)[outside].mean()) if outside.any() else 0.0,
    }

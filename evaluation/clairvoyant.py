"""The UniRoute paper's clairvoyant upper reference (METHODS.md, last row of its table; RELATED.md).

Per-LLM predictors trained with the *test* LLMs' own outcomes on the train prompts — what no
universal router can have, since a new LLM brings only its validation answers. Here they are the
Routoo-style logistic heads of ``routing.strategies.predictor`` (l2 chosen on the validation
prompts, then refitted on train + validation prompts), one per test LLM of the split; simulated
specialists get heads from their own simulated outcomes the same way. Reported apart from the
universal strategies, as a ceiling for them, well below the oracle.
"""

from __future__ import annotations

import numpy as np

from evaluation.protocol import Split
from routing.strategies.predictor import RoutooPredictor

CLAIRVOYANT = "clairvoyant"


def _heads_losses(embeddings, columns_train, columns_validation, split: Split, test_rows, keys) -> np.ndarray:
    predictor = RoutooPredictor(fallback="zero").fit(
        embeddings[split.train_prompts],
        columns_train,
        validation_embeddings=embeddings[split.validation_prompts],
        validation_correctness=columns_validation,
        llm_keys=keys,
    )
    validation_embeddings = embeddings[split.validation_prompts]
    profiles = np.stack(
        [predictor.profile(validation_embeddings, columns_validation[:, j], llm_key=key) for j, key in enumerate(keys)]
    )
    return predictor.predict_loss(embeddings[test_rows], profiles)


def clairvoyant_losses(
    embeddings, correctness, split: Split, test_rows, llm_names, specialists
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Predicted losses [n_test, test LLMs] and one column per specialist, from heads trained on their own outcomes."""
    test_llms = split.test_llms
    losses = _heads_losses(
        embeddings,
        correctness[np.ix_(split.train_prompts, test_llms)],
        correctness[np.ix_(split.validation_prompts, test_llms)],
        split,
        test_rows,
        [llm_names[j] for j in test_llms],
    )
    if not specialists:
        return losses, []
    specialist_losses = _heads_losses(
        embeddings,
        np.column_stack([s.correctness(split.train_prompts) for s in specialists]),
        np.column_stack([s.validation_correctness for s in specialists]),
        split,
        test_rows,
        [f"specialist:{s.category}" for s in specialists],
    )
    return losses, list(specialist_losses.T)

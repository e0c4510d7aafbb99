"""Loading a whole imported data set as arrays for offline evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import Avg, Count, Q
from django.db.models.fields.json import KeyTransform

from evaluation.models import EvaluationRun
from registry.models import LLM, Prompt, PromptSet
from registry.selectors import outcome_matrix, prompt_embeddings

COST_MEASURES = ("price", "params", "row")


@dataclass
class DatasetArrays:
    embeddings: np.ndarray  # [prompts, D]
    correctness: np.ndarray  # [prompts, llms], NaN = missing
    costs: np.ndarray  # [llms]
    llm_names: list[str]
    cost_note: str
    dropped: list[str] = field(default_factory=list)
    categories: np.ndarray | None = None  # [prompts] str, "" = none; None when no prompt has one


def dataset_arrays(*, prompt_set: PromptSet, cost: str, category_field: str = "category") -> DatasetArrays:
    """Every prompt of the set with the correctness of every LLM that answered some of them.

    LLMs without the chosen cost measure are dropped (and named), never given a made-up cost.
    Categories come from the prompts' ``category`` or, for any other ``category_field``, from that
    key of their metadata.
    """
    if cost not in COST_MEASURES:
        raise ValueError(f"--cost must be one of {', '.join(COST_MEASURES)}, got {cost!r}")
    llms = list(
        LLM.objects.annotate(
            n=Count("outcomes", filter=Q(outcomes__prompt__prompt_set=prompt_set)),
            mean_row_cost=Avg("outcomes__cost_usd", filter=Q(outcomes__prompt__prompt_set=prompt_set)),
        )
        .filter(n__gt=0)
        .order_by("name")
    )
    costs, kept, dropped = [], [], []
    for llm in llms:
        value = _cost_of(llm, cost, prompt_set)
        if value is None:
            dropped.append(llm.name)
        else:
            costs.append(value)
            kept.append(llm)
    if len(kept) < 3:
        raise ValueError(
            f"only {len(kept)} LLMs of {prompt_set.name!r} have a {cost!r} cost; the protocol needs at least 3"
        )
    prompt_ids = list(Prompt.objects.filter(prompt_set=prompt_set).order_by("id").values_list("id", flat=True))
    categories = prompt_categories(prompt_set=prompt_set, field=category_field)
    return DatasetArrays(
        embeddings=prompt_embeddings(prompt_ids=prompt_ids),
        correctness=outcome_matrix(prompt_ids=prompt_ids, llm_ids=[llm.id for llm in kept]),
        costs=np.asarray(costs, dtype=np.float64),
        llm_names=[llm.name for llm in kept],
        cost_note=_cost_note(cost, prompt_set),
        dropped=dropped,
        categories=categories if (categories != "").any() else None,
    )


def prompt_categories(*, prompt_set: PromptSet, field: str = "category") -> np.ndarray:
    """Each prompt's category (in id order) as strings, "" where it has none."""
    prompts = Prompt.objects.filter(prompt_set=prompt_set).order_by("id")
    if field == "category":
        values = prompts.values_list("category", flat=True)
    else:
        values = (metadata.get(field) for metadata in prompts.values_list("metadata", flat=True))
    return np.array(["" if value is None else str(value) for value in values], dtype=object).astype(str)


def _cost_of(llm: LLM, cost: str, prompt_set: PromptSet) -> float | None:
    if cost == "params":
        return llm.params_total_b
    if cost == "row":
        return llm.mean_row_cost
    return llm.expected_cost_usd(
        input_tokens=prompt_set.metadata.get("mean_prompt_tokens", 0.0),
        output_tokens=settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS,
    )


def _cost_note(cost: str, prompt_set: PromptSet) -> str:
    if cost == "params":
        return "total parameter count (billions)"
    if cost == "row":
        return "mean actual cost_usd of each LLM's outcomes"
    return (
        "USD per query: usd_per_query where given, else per-token prices × "
        f"{prompt_set.metadata.get('mean_prompt_tokens', 0):g} mean prompt tokens + "
        f"{settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS} expected output tokens"
    )


# --- the dashboard's evaluation pages ------------------------------------------------------------


def evaluation_run_summaries(*, limit: int = 100) -> list[dict]:
    """The newest runs with their per-method figures, without loading per-trial areas or curves."""
    return list(
        EvaluationRun.objects.order_by("-created_at")
        .values("id", "prompt_set__name", "strategies", "trials", "seed", "cost", "embedder", "seconds", "created_at")
        .annotate(methods=KeyTransform("methods", "results"))[:limit]
    )


def evaluation_run(*, run_id: int) -> EvaluationRun | None:
    """One run with its prompt set, or None."""
    return EvaluationRun.objects.select_related("prompt_set").filter(id=run_id).first()


@dataclass(frozen=True)
class PairedDifference:
    first: str
    second: str
    mean: float  # mean over splits of area(first) − area(second) on the same split
    se: float | None  # its standard error (None with one split)
    splits: int

    @property
    def z(self) -> float | None:
        return self.mean / self.se if self.se else None


def paired_differences(*, per_trial_area: dict[str, list]) -> list[PairedDifference]:
    """Every ordered pair of methods' paired area difference (``benchmarks/paired.py`` for one pair)."""
    names = [n for n, values in per_trial_area.items() if values and all(v is not None for v in values)]
    found = []
    for first in names:
        for second in names:
            if first == second:
                continue
            diff = np.asarray(per_trial_area[first], dtype=float) - np.asarray(per_trial_area[second], dtype=float)
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
            found.append(PairedDifference(first, second, float(diff.mean()), se, len(diff)))
    return found

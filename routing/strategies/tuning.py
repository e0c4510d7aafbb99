"""Self-tuning: a strategy's hyper-parameters chosen per data set by cross-validation over the training LLMs.

A router is judged on LLMs it never saw in training (METHODS.md, "Reported setting"), so the tuner
recreates that situation inside the training data, never looking at any other LLM:

- **prompts**: the train prompts are cut once (seeded) into a *fitting* part and a *scoring* part;
  the validation prompts stay what they are in production, the set every LLM is profiled on;
- **LLMs**: the training LLMs are dealt into folds; each fold in turn plays the unseen LLMs: the
  strategy is fitted on the fitting prompts with the *other* folds' outcomes, the fold's LLMs are
  profiled from their validation outcomes alone, and routing among them is scored on the scoring
  prompts (only those every LLM of the fold answered);
- **score**: the area under the deferral curve of that routing, the benchmark's own figure
  (``routing.strategies.curves``, costs normalised by the fold's most expensive LLM); without costs, every
  LLM costs the same and the area is the accuracy of the routed choice;
- **candidates**: every combination of the fit-time grid and the post-fit grid (hyper-parameters
  that ``profile`` / ``predict_loss`` read, tried on a fitted strategy without refitting); a
  candidate's score is its mean over folds; the best wins. Exact ties (a pool of two LLMs where one
  is best on every prompt leaves nothing to route) go to the lower *relative error* — predicted
  minus true losses of the fold's LLMs, centred across them on each prompt, squared — then to the
  earlier candidate. (``criterion="relative"`` makes that error the score itself; on llmrouter-9
  neither figure predicted the test area of the candidates better than the other.)

The work is bounded whatever the data set's size: at most ``max_fit_prompts`` prompts to fit on and
``max_score_prompts`` to score on, and grids of a few entries (see ``search_space``); the ``quick``
budget (``BUDGETS``) uses fewer prompts and holds l2 at its default (a third of the fits); the
``demo`` budget also fits the final strategy on a sample of the train prompts. Hyper-parameters
the caller fixes are held fixed and left out of the search. The same folds and prompts are used for
every strategy (the seed fixes them).

**Comparing strategies** (``auto``: ``score_single``) needs more than each one's best mean over the
folds it was chosen on. That figure is the largest of as many noisy means as the strategy has
candidates, so it flatters a large grid, and three folds of a handful of LLMs make it noisy (on
llmrouter-9 it picked a strategy 1.7 paired se behind the best). The chosen candidate is therefore
scored again on ``COMPARISON_REPEATS`` fresh deals of the training LLMs into folds and of the train
prompts into fitting and scoring parts (seeded, the same for every strategy), none of which took part
in the choice; ``score`` is its mean over those folds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from routing.strategies import STRATEGIES, get_strategy
from routing.strategies.base import RoutingStrategy

# The criterion is the benchmark's figure, computed by the benchmark's own (pure numpy) code.
from routing.strategies.curves import area, deferral_curve
from routing.strategies.learned_map import loss_and_gradient

MAX_FIT_PROMPTS = 4000
MAX_SCORE_PROMPTS = 2500
SCORE_FRACTION = 0.3
MAX_FOLDS = 3
MIN_TRAINING_LLMS = 4  # two folds of two LLMs: fewer cannot play both roles
# Fresh deals of LLMs into folds (and of train prompts into fitting and scoring parts) on which the
# chosen candidate is scored again when strategies are compared (module docstring).
COMPARISON_REPEATS = 3
CRITERIA = {
    "area": "area under the deferral curve",
    "relative": "relative squared error (negated): predicted minus true loss, centred across the fold's LLMs per prompt",
}


@dataclass(frozen=True)
class Budget:
    """How much work the tuner may do: prompts to fit and score on, and fit-time hyper-parameters it
    holds at the strategy's default instead of searching (each value searched costs fits)."""

    name: str
    max_fit_prompts: int
    max_score_prompts: int
    held: tuple[str, ...] = ()
    max_final_prompts: int | None = None  # the final fit's train prompts (a seeded sample); None: all


BUDGETS = {
    "full": Budget("full", MAX_FIT_PROMPTS, MAX_SCORE_PROMPTS),
    # evaluate runs that must fit a time slot: a third of the fits (l2 held at its default), fewer prompts.
    "quick": Budget("quick", 1500, 1000, held=("l2",)),
    # setup_demo: the first `make run` waits for every strategy's fit, so the final fits too see a
    # sample of the train prompts; the nightly refit (full budget) refits the active router on all.
    "demo": Budget("demo", 1000, 800, held=("l2",), max_final_prompts=2500),
}


@dataclass(frozen=True)
class SearchSpace:
    fit: list[dict]  # each entry needs its own fit
    post_fit: list[dict]  # tried on every fitted entry without refitting


@dataclass
class Candidate:
    params: dict
    score: float  # the criterion's mean over folds, higher is better
    fold_scores: list[float]
    area: float  # both figures are kept whichever decides
    relative_error: float


@dataclass
class Tuning:
    """What the tuner tried and chose; ``as_json`` is what routing states and benchmarks store."""

    strategy: str
    params: dict  # fixed + chosen: what the final fit used
    fixed: dict  # given by the caller, not searched
    score: float | None  # cross-validated score of the chosen params (None: not tuned)
    criterion: str
    folds: int
    fit_prompts: int
    score_prompts: int
    seconds: float = 0.0  # tuning only; the final fit is timed by the caller
    candidates: list[Candidate] = field(default_factory=list)
    note: str = ""
    budget: str = "full"
    final_fit_prompts: int | None = None  # set by tuned_fit
    # The best candidate's mean over the folds it was chosen on: the best of many noisy means, so it
    # flatters a large grid. ``score`` is this unless the tuning was asked for a score to compare
    # strategies with (``score_single``): then it is the chosen candidate's mean over
    # ``comparison_folds`` fresh folds (module docstring).
    selection_score: float | None = None
    comparison_folds: int = 0
    # The chosen candidate's score on each of those folds, in the order of the deals (the same folds for
    # every strategy tuned with the same seed and training LLMs): what paired comparisons read.
    comparison_scores: list[float] = field(default_factory=list)

    @property
    def chosen(self) -> dict:
        return {k: v for k, v in self.params.items() if k not in self.fixed}

    def as_json(self) -> dict:
        data = asdict(self)
        data["chosen"] = self.chosen
        return _plain(data)


# -- search spaces --------------------------------------------------------------------------------
def auto_choice(scores: Mapping[str, float | None]) -> str | None:
    """The ``auto`` strategy: the one with the best cross-validated score (``Tuning.score``).

    Every strategy tuned with the same seed is scored on the same folds of training LLMs and the same
    prompts, so their scores compare. The first of equal scores wins, in the order given; a strategy
    without a score (not tuned) is never chosen over one with; None when none has a score.
    """
    best, best_score = None, None
    for name, score in scores.items():
        if score is not None and (best_score is None or score > best_score):
            best, best_score = name, score
    return best


def _clusters_within(n_validation: int, grid: tuple[int, ...]) -> list[int]:
    """Cluster counts leaving on average at least 10 validation prompts per cluster (profiles are means)."""
    return [k for k in grid if k <= max(grid[0], n_validation // 10)]


def _kmeans(n_validation):
    return SearchSpace(
        fit=[{"n_clusters": k} for k in _clusters_within(n_validation, (5, 10, 20, 40, 80))],
        post_fit=[{"prior_strength": a} for a in (1.0, 5.0, 20.0, 50.0)],
    )


def _knn(n_validation):
    return SearchSpace(fit=[{}], post_fit=[{"k": k} for k in (10, 20, 50, 100, 200) if k <= max(10, n_validation // 2)])


def _learned_map(n_validation):
    return SearchSpace(
        fit=[{"n_clusters": k, "l2": l2} for k in _clusters_within(n_validation, (10, 20, 40)) for l2 in (1e-7, 1e-5)],
        post_fit=[{"prior_strength": a} for a in (2.0, 5.0, 20.0)],
    )


def _relative_maps(n_validation):
    grid = tuple(_clusters_within(n_validation, (10, 20, 40, 80)))
    runs = [grid[i:j] for i in range(len(grid)) for j in range(i + 1, len(grid) + 1)]  # contiguous member runs
    return SearchSpace(
        fit=[{"cluster_grid": grid, "l2": l2} for l2 in (1e-7, 1e-5)],
        post_fit=[
            {"cluster_grid": run, "prior_strength": a, "profile_prior": prior}
            for run in runs
            for a in (2.0, 5.0, 20.0)
            for prior in ("overall", "nested")
            if prior == "overall" or len(run) > 1  # nested needs a coarser member
        ],
    )


def _matrix_factorisation(n_validation):
    return SearchSpace(
        fit=[{"dim": d, "l2": l2} for d in (8, 32) for l2 in (1e-4, 1e-3)],
        post_fit=[{"profile_l2": r} for r in (0.3, 1.0, 3.0)],
    )


SEARCH_SPACES = {
    "zero": lambda n: SearchSpace(fit=[{}], post_fit=[{}]),
    "knn": _knn,
    "uniroute_kmeans": _kmeans,
    "uniroute_learnedmap": _learned_map,
    "relative_maps": _relative_maps,
    "routellm_mf": _matrix_factorisation,
    "routoo_predictor": lambda n: SearchSpace(fit=[{}], post_fit=[{}]),  # picks its l2 itself, on S_val
}


def search_space(
    name: str, *, n_validation: int, fixed: dict | None = None, budget: str | Budget = "full"
) -> SearchSpace:
    """The grid for ``name``, without the hyper-parameters in ``fixed`` and those ``budget`` holds
    at their defaults (duplicates dropped)."""
    fixed = fixed or {}
    budget = _budget(budget)
    space = SEARCH_SPACES.get(name, lambda n: SearchSpace(fit=[{}], post_fit=[{}]))(n_validation)
    if budget.held:
        defaults = STRATEGIES[name]().get_params() if name in STRATEGIES else {}
        held = {k: defaults[k] for k in budget.held if k in defaults}
        space = SearchSpace(
            fit=[e for e in space.fit if all(e.get(k, v) == v for k, v in held.items())] or space.fit[:1],
            post_fit=space.post_fit,
        )
    return SearchSpace(fit=_without(space.fit, fixed), post_fit=_without(space.post_fit, fixed))


def _budget(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"tuning budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    return BUDGETS[budget]


def _without(grid: list[dict], fixed: dict) -> list[dict]:
    kept: list[dict] = []
    for entry in grid:
        entry = {k: v for k, v in entry.items() if k not in fixed}
        if entry not in kept:
            kept.append(entry)
    return kept or [{}]


# -- the procedure --------------------------------------------------------------------------------
def tuned_fit(
    name: str,
    train_embeddings: np.ndarray,
    train_correctness: np.ndarray,
    *,
    validation_embeddings: np.ndarray,
    validation_correctness: np.ndarray,
    costs: np.ndarray | None = None,
    llm_keys: list[str] | None = None,
    fixed: dict | None = None,
    seed: int = 0,
    score_single: bool = False,
    budget: str = "full",
) -> tuple[RoutingStrategy, Tuning]:
    """Tune ``name`` (``tune``), then fit it with the chosen hyper-parameters on all the data given."""
    tuning = tune(
        name,
        train_embeddings,
        train_correctness,
        validation_embeddings=validation_embeddings,
        validation_correctness=validation_correctness,
        costs=costs,
        llm_keys=llm_keys,
        fixed=fixed,
        seed=seed,
        score_single=score_single,
        budget=budget,
    )
    rows = np.arange(len(train_embeddings))
    cap = _budget(budget).max_final_prompts
    if cap is not None and len(rows) > cap:
        rows = np.sort(np.random.default_rng(seed).permutation(len(rows))[:cap])
    tuning.final_fit_prompts = len(rows)
    strategy = get_strategy(name, **tuning.params).fit(
        np.asarray(train_embeddings)[rows],
        np.asarray(train_correctness)[rows],
        validation_embeddings=validation_embeddings,
        validation_correctness=validation_correctness,
        llm_keys=llm_keys,
    )
    return strategy, tuning


def tune(
    name: str,
    train_embeddings: np.ndarray,
    train_correctness: np.ndarray,
    *,
    validation_embeddings: np.ndarray,
    validation_correctness: np.ndarray,
    costs: np.ndarray | None = None,
    llm_keys: list[str] | None = None,
    fixed: dict | None = None,
    seed: int = 0,
    max_fit_prompts: int | None = None,
    max_score_prompts: int | None = None,
    space: SearchSpace | None = None,
    score_single: bool = False,
    criterion: str = "area",
    budget: str | Budget = "full",
) -> Tuning:
    """Choose ``name``'s hyper-parameters by cross-validation over the training LLMs (module docstring).

    ``budget`` (``BUDGETS``) bounds the prompts and the fit grid; ``max_fit_prompts`` and
    ``max_score_prompts`` override its prompt counts. ``space`` replaces the strategy's grid from
    ``SEARCH_SPACES``. With nothing to choose between
    (one candidate) the cross-validation is skipped unless ``score_single``: its score is only
    needed to compare strategies with each other.
    """
    started = time.perf_counter()
    if name not in STRATEGIES:
        get_strategy(name)  # raises the usual "unknown strategy" error
    budget = _budget(budget)
    max_fit_prompts = budget.max_fit_prompts if max_fit_prompts is None else max_fit_prompts
    max_score_prompts = budget.max_score_prompts if max_score_prompts is None else max_score_prompts
    fixed = dict(fixed or {})
    get_strategy(name, **fixed)  # a mistyped fixed hyper-parameter fails before any work
    train_embeddings = np.asarray(train_embeddings, dtype=np.float32)
    train_correctness = np.asarray(train_correctness, dtype=np.float64)
    validation_embeddings = np.asarray(validation_embeddings, dtype=np.float32)
    validation_correctness = np.asarray(validation_correctness, dtype=np.float64)
    n_llms = train_correctness.shape[1]
    llm_keys = list(llm_keys) if llm_keys is not None else [f"llm-{j}" for j in range(n_llms)]
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    rule = criterion
    criterion = (
        CRITERIA[criterion] if costs is not None or rule != "area" else "accuracy of the routed choice (no costs given)"
    )
    costs = np.ones(n_llms) if costs is None else np.asarray(costs, dtype=np.float64)
    if len(costs) != n_llms:
        raise ValueError(f"{len(costs)} costs for {n_llms} training LLMs")
    rng = np.random.default_rng(seed)
    fit_rows, score_rows = _prompt_parts(len(train_embeddings), rng, max_fit_prompts, max_score_prompts)
    folds = _llm_folds(n_llms, rng)
    untuned = Tuning(
        name, fixed, fixed, None, criterion, len(folds), len(fit_rows), len(score_rows), budget=budget.name
    )
    if len(folds) < 2 or len(score_rows) == 0:
        untuned.note = f"not tuned: needs at least {MIN_TRAINING_LLMS} training LLMs and some train prompts to score on; defaults used"
        untuned.seconds = time.perf_counter() - started
        return untuned

    if space is None:
        space = search_space(name, n_validation=len(validation_embeddings), fixed=fixed, budget=budget)
    if len(space.fit) * len(space.post_fit) == 1 and not score_single:
        untuned.params = {**fixed, **space.fit[0], **space.post_fit[0]}
        untuned.note = "nothing to tune"
        untuned.seconds = time.perf_counter() - started
        return untuned
    data = (train_embeddings, train_correctness, validation_embeddings, validation_correctness, costs, llm_keys)
    scores, order = _fold_scores(name, fixed, space, folds, fit_rows, score_rows, *data)
    candidates = [_candidate(params, scores[_key(params)], rule) for params in order if scores[_key(params)]]
    if not candidates:
        untuned.note = "not tuned: no scoring prompt was answered by every LLM of a fold; defaults used"
        untuned.seconds = time.perf_counter() - started
        return untuned
    # Small pools of LLMs often tie exactly on area (one LLM best everywhere): the relative error,
    # a smooth figure, then decides; max keeps the first of candidates equal on both.
    best = max(candidates, key=lambda c: (round(c.score, 9), -c.relative_error))
    comparison = None
    if score_single:
        fit_keys = {key for entry in space.fit for key in entry}
        chosen = SearchSpace(
            fit=[{k: v for k, v in best.params.items() if k in fit_keys}],
            post_fit=[{k: v for k, v in best.params.items() if k not in fit_keys}],
        )
        comparison = []
        for repeat in range(1, COMPARISON_REPEATS + 1):
            fresh = np.random.default_rng([seed, repeat])
            fresh_rows = _prompt_parts(len(train_embeddings), fresh, max_fit_prompts, max_score_prompts)
            fresh_scores, _ = _fold_scores(name, fixed, chosen, _llm_folds(n_llms, fresh), *fresh_rows, *data)
            comparison += fresh_scores[_key(best.params)]
    compared = _candidate(best.params, comparison, rule) if comparison else None
    return Tuning(
        strategy=name,
        params={**fixed, **best.params},
        fixed=fixed,
        score=compared.score if compared else best.score,
        selection_score=best.score,
        comparison_folds=len(comparison or []),
        comparison_scores=compared.fold_scores if compared else [],
        criterion=criterion,
        folds=len(folds),
        fit_prompts=len(fit_rows),
        score_prompts=len(score_rows),
        seconds=time.perf_counter() - started,
        candidates=candidates,
        budget=budget.name,
    )


def _fold_scores(
    name,
    fixed,
    space,
    folds,
    fit_rows,
    score_rows,
    train_embeddings,
    train_correctness,
    validation_embeddings,
    validation_correctness,
    costs,
    llm_keys,
) -> tuple[dict, list[dict]]:
    """Per candidate of ``space`` (key: ``_key``), its (area, relative error) on each fold; and the
    candidates in the order tried."""
    n_llms = train_correctness.shape[1]
    cls = STRATEGIES[name]
    scores: dict[tuple, list[tuple[float, float]]] = {}  # per fold: (area, relative error)
    order: list[dict] = []
    for fit_params in space.fit:
        fitted_once = None
        for fold in folds:
            others = np.setdiff1d(np.arange(n_llms), fold)
            if cls.fit_uses_outcomes or fitted_once is None:
                # A strategy blind to outcomes is fitted once, on every training LLM (it reads none of them).
                fit_llms = others if cls.fit_uses_outcomes else np.arange(n_llms)
                fitted = get_strategy(name, **fixed, **fit_params).fit(
                    train_embeddings[fit_rows],
                    train_correctness[np.ix_(fit_rows, fit_llms)],
                    validation_embeddings=validation_embeddings,
                    validation_correctness=validation_correctness[:, fit_llms],
                    llm_keys=[llm_keys[j] for j in fit_llms],
                )
                fitted_once = fitted
            fitted = fitted_once
            rows = score_rows[~np.isnan(train_correctness[np.ix_(score_rows, fold)]).any(axis=1)]
            truth = train_correctness[np.ix_(rows, fold)]
            for post_params in space.post_fit:
                params = {**fit_params, **post_params}
                key = _key(params)
                if key not in scores:
                    scores[key] = []
                    order.append(params)
                if not len(rows):
                    continue
                view = fitted.with_params(**post_params) if post_params else fitted
                profiles = np.stack(
                    [
                        view.profile(validation_embeddings, validation_correctness[:, j], llm_key=f"held-out-{j}")
                        for j in fold
                    ]
                )
                losses = view.predict_loss(train_embeddings[rows], profiles)
                relative = loss_and_gradient(losses, 1.0 - truth, np.ones(truth.shape, dtype=bool), "relative")[0]
                scores[key].append((area(deferral_curve(losses, costs[fold], truth)), relative))
    return scores, order


def _candidate(params: dict, folds: list[tuple[float, float]], rule: str) -> Candidate:
    areas, relative = (np.array(column) for column in zip(*folds))
    fold_scores = areas if rule == "area" else -relative
    return Candidate(
        params, float(fold_scores.mean()), [float(v) for v in fold_scores], float(areas.mean()), float(relative.mean())
    )


def _prompt_parts(n: int, rng, max_fit: int, max_score: int) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_score = min(max_score, int(round(SCORE_FRACTION * n)))
    return np.sort(order[n_score:][:max_fit]), np.sort(order[:n_score])


def _llm_folds(n_llms: int, rng) -> list[np.ndarray]:
    """Up to three folds of at least two LLMs each (a fold is a pool to route among)."""
    n_folds = min(MAX_FOLDS, n_llms // 2) if n_llms >= MIN_TRAINING_LLMS else 0
    if n_folds < 2:
        return []
    return [np.sort(fold) for fold in np.array_split(rng.permutation(n_llms), n_folds)]


def _key(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


__all__ = ["BUDGETS", "SEARCH_SPACES", "SearchSpace", "Tuning", "search_space", "tune", "tuned_fit"]

"""The online protocol: a replay of a data set's test prompts through the router, learning from feedback.

Per split of the unseen-LLM protocol (``protocol.make_splits``), the strategy is tuned and fitted as
offline, on the training LLMs, and the split's test LLMs are profiled from their validation answers.
The test prompts answered by every test LLM, in a seeded random order, are cut into a held-out
*scoring* set (``SCORING_SHARE``) and a *stream* replayed one event at a time: each event routes one
prompt among the pool at that event's λ — tenants with different cost preferences: λ uniform on
[0, ``LAMBDA_MAX``] loss per unit of normalised cost (costs divided by the most expensive test LLM,
as offline) — and the data set's correctness of the chosen LLM on that prompt is the event's
feedback. Feedback reaches the router the way ``RoutingStrategy.profile`` takes evidence: every
``reprofile_every`` events, each LLM is profiled again from its validation rows plus one
(embedding, correctness) row per event routed to it (each prompt once), with no refit.

What is measured, on the same stream and λ draws for every router of a split:

- **static** and **learning**: the pool profiled on every validation prompt, without and with
  feedback. Per window of ``checkpoint_every`` events, the accuracy and mean normalised cost of the
  routed events; at each checkpoint, the area under the deferral curve on the scoring set (as
  ``evaluate`` computes it, λ-free).
- **new LLM**: each test LLM in turn (at most ``new_llms`` per split) registered with only
  ``new_llm_prompts`` validation prompts (a seeded sample), the others as before, learning. Its
  *area gap* at event t is the area of the learning router whose copy of that LLM was profiled on
  every validation prompt minus this router's area, both after t events; ``gap_closed(t)`` =
  1 − Σ gap(t) / Σ gap(0), summed over LLMs and splits. ``closed_vs_static(t)`` measures the same
  against the fixed reference: Σ (area(t) − area(0)) / Σ (area of the full-validation static router
  − area(0)), which also counts what the other LLMs' feedback adds.
- **specialists**: per category (at most ``specialists`` per split, in a seeded order), a simulated
  LLM right on that category and wrong elsewhere (``specialists.py``), priced at the median test
  LLM, registered with ``new_llm_prompts`` validation prompts and added to the pool; its recall
  (share of the category's scoring prompts routed to it at λ = 0) and false share at each checkpoint.

Pure numpy over the strategy objects and ``routing.selection``; no database.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from evaluation.protocol import Split, make_splits
from evaluation.specialists import Specialist, specialist_figures, specialists_of, with_specialist_cost
from routing.selection import select
from routing.strategies import STRATEGIES, get_strategy
from routing.strategies.curves import area, deferral_curve, normalised_costs
from routing.strategies.evidence import evidence_rows, with_evidence
from routing.strategies.exploration import OwnCounts, own_counts_at, own_strength, select_exploring
from routing.strategies.tuning import tuned_fit

# The share of a split's test prompts held out to score the router at each checkpoint; the rest is
# the stream. A third keeps the area's noise small next to the gaps measured (MMLU-Pro: ~1,200 prompts).
SCORING_SHARE = 1 / 3
# λ of an event is uniform on [0, LAMBDA_MAX]: at 1, a cost difference of the whole normalised range
# outweighs a loss difference of the whole [0, 1] range, so the draws span best-quality to cheapest.
LAMBDA_MAX = 1.0

PROTOCOL = {
    "name": "online",
    "splits": "the unseen-LLM protocol's random 60/10/30 prompt and 2/3 : 1/3 LLM splits (protocol.make_splits)",
    "router": "the strategy tuned and fitted on the split's training LLMs, as offline; the pool is the split's test LLMs",
    "stream": "the test prompts answered by every test LLM, seeded random order, less a held-out scoring third; "
    "each event routes one prompt at λ ~ uniform[0, 1] (loss per unit of normalised cost)",
    "feedback": "the data set's correctness of the chosen LLM on the event's prompt; every reprofile_every events each "
    "LLM is profiled again from its validation rows plus one row per event routed to it (no refit)",
    "static": "the same router without feedback",
    "window": "accuracy and mean normalised cost of the events of each window of checkpoint_every events",
    "area": "area under the deferral curve on the scoring set, as evaluate computes it",
    "new_llm": "each test LLM in turn registered with new_llm_prompts validation prompts; gap = area of the learning "
    "router with that LLM on every validation prompt − this router's, after the same events; "
    "gap_closed = 1 − Σ gap(t) / Σ gap(0) over LLMs and splits",
    "specialists": "per category a simulated LLM right on it and wrong elsewhere, median test price, registered with "
    "new_llm_prompts validation prompts; recall and false share at λ = 0 on the scoring set",
}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class OnlineSettings:
    """The replay's parameters; ``check`` names the option at fault."""

    events: int = 2000  # stream events replayed per split (fewer when the split's stream is shorter)
    checkpoint_every: int = 250
    reprofile_every: int = 50  # N: feedback enters the profiles every N events
    new_llm_prompts: int = 50
    new_llms: int | None = None  # test LLMs tried as the new one per split (None: all)
    specialists: int = 3  # categories simulated per split
    exploration: float = 0.0  # share of the learning routers' events routed on a Thompson draw
    half_life: float | None = None  # feedback's half-life in events (None: no decay)
    feedback_cap: float | None = None  # the replay's total feedback weight per LLM (None: no cap)

    def check(self) -> None:
        for name in ("events", "checkpoint_every", "reprofile_every", "new_llm_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_every % self.reprofile_every:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of reprofile_every "
                f"({self.reprofile_every}): each checkpoint scores the profiles of every event before it"
            )
        if self.new_llms is not None and self.new_llms < 0:
            raise ValueError(f"new_llms must be at least 0, got {self.new_llms}")
        if self.specialists < 0:
            raise ValueError(f"specialists must be at least 0, got {self.specialists}")
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must lie in [0, 1], got {self.exploration}")
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"half_life must be positive, got {self.half_life}")
        if self.feedback_cap is not None and not self.feedback_cap >= 0:
            raise ValueError(f"feedback_cap must be at least 0, got {self.feedback_cap}")


@dataclass
class Evidence:
    """One LLM's evidence: its validation answers, and the stream events routed to it with their outcomes."""

    validation_embeddings: np.ndarray
    validation_correctness: np.ndarray
    events: list[int] = field(default_factory=list)
    outcomes: list[float] = field(default_factory=list)

    def rows(self, stream: Stream, settings: OnlineSettings, now: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, correctness, sample_weight) for ``profile``: the validation rows, then the feedback
        under ``routing.strategies.evidence``'s rule (one prompt once, decay, cap), the replay being one
        source whose clock counts events."""
        if not self.events:
            return self.validation_embeddings, self.validation_correctness, np.ones(len(self.validation_correctness))
        events = np.asarray(self.events)
        kept = evidence_rows(
            llm=np.zeros(len(events), dtype=int),
            source=np.zeros(len(events), dtype=int),
            prompt=stream.prompt_ids[events],
            embedding_index=events,
            correctness=self.outcomes,
            time=events,
            now=now,
            half_life_seconds=settings.half_life or math.inf,
            cap=math.inf if settings.feedback_cap is None else settings.feedback_cap,
        )
        return with_evidence(
            self.validation_embeddings,
            self.validation_correctness,
            stream.embeddings[kept.embedding_index],
            kept.correctness,
            kept.weight,
        )


@dataclass
class Stream:
    """What every router of a split replays and is scored on."""

    embeddings: np.ndarray  # [n_events, D]
    prompt_ids: np.ndarray  # [n_events] the data set's row of each event's prompt
    truth: np.ndarray  # [n_events, m] correctness of each pool LLM
    lambdas: np.ndarray  # [n_events]
    scoring_embeddings: np.ndarray
    scoring_truth: np.ndarray  # [n_scoring, m]
    costs: np.ndarray  # [m] normalised


def replay(
    strategy,
    evidence: list[Evidence],
    stream: Stream,
    settings: OnlineSettings,
    *,
    learn: bool,
    measure: Callable[[np.ndarray, np.ndarray], dict],
    rng: np.random.Generator | None = None,
) -> list[dict]:
    """Route the stream event by event; at event 0 and every checkpoint, ``measure(scoring losses, profiles)``
    plus the window's accuracy and cost (the stream holds whole windows), the share of its events routed
    on a draw (``window_drawn``, about ``exploration``) and of those whose choice the draw changed
    (``window_explored``). With ``learn``, each routed event's feedback is added to the chosen LLM's
    evidence, the profiles are rebuilt every ``reprofile_every`` events, and a share ``exploration`` of
    the events routes on a Thompson draw from each LLM's own posterior near the prompt
    (``routing.strategies.exploration``, with ``rng``)."""
    exploring = learn and settings.exploration > 0
    if exploring and rng is None:
        raise ValueError("exploration needs a random generator")
    keys = [f"llm-{j}" for j in range(len(evidence))]

    def profile(j: int, now: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(Ψ, n cells, s cells, own prior strength) of LLM j from its evidence up to event ``now``."""
        embeddings, correctness, weight = evidence[j].rows(stream, settings, now)
        psi = strategy.profile(embeddings, correctness, llm_key=keys[j], sample_weight=weight)
        if not exploring:
            return psi, np.zeros(1), np.zeros(1), 0.0
        n_cells = strategy.evidence(embeddings, correctness, sample_weight=weight)
        s_cells = strategy.error_evidence(embeddings, correctness, sample_weight=weight)
        return psi, n_cells, s_cells, own_strength(strategy, n_cells, s_cells)

    built = [profile(j, 0) for j in range(len(evidence))]
    profiles, counts = np.stack([b[0] for b in built]), np.stack([b[1] for b in built])
    error_counts, strengths = np.stack([b[2] for b in built]), np.array([b[3] for b in built])
    rows = [{"events": 0, **measure(strategy.predict_loss(stream.scoring_embeddings, profiles), profiles)}]
    correct, spent, explored, drawn, changed = [], [], [], [], set()
    n_events = len(stream.embeddings)
    for start in range(0, n_events, settings.reprofile_every):
        stop = min(start + settings.reprofile_every, n_events)
        batch = stream.embeddings[start:stop]
        losses = strategy.predict_loss(batch, profiles)
        if exploring:
            near = strategy.evidence_at(batch, counts)
            own = own_counts_at(strategy, batch, counts, error_counts, strengths)
        for i, event in enumerate(range(start, stop)):
            lam = float(stream.lambdas[event])
            if exploring:
                routed = select_exploring(
                    losses[i : i + 1],
                    near[i : i + 1],
                    stream.costs,
                    share=settings.exploration,
                    rng=rng,
                    own=OwnCounts(*(a[i : i + 1] for a in own)),
                    lam=lam,
                )
                choice, changed_choice, draw = int(routed.choice[0]), bool(routed.explored[0]), bool(routed.drawn[0])
            else:
                choice, changed_choice, draw = int(select(losses[i : i + 1], stream.costs, lam=lam)[0]), False, False
            outcome = float(stream.truth[event, choice])
            correct.append(outcome)
            spent.append(stream.costs[choice])
            explored.append(changed_choice)
            drawn.append(draw)
            if learn:
                evidence[choice].events.append(event)
                evidence[choice].outcomes.append(outcome)
                changed.add(choice)
        for j in sorted(changed):  # only the LLMs that received feedback have new evidence
            profiles[j], counts[j], error_counts[j], strengths[j] = profile(j, stop)
        changed.clear()
        if stop % settings.checkpoint_every == 0:
            window = slice(rows[-1]["events"], stop)
            rows.append(
                {
                    "events": stop,
                    "window_accuracy": float(np.mean(correct[window])),
                    "window_cost": float(np.mean(spent[window])),
                    "window_explored": float(np.mean(explored[window])),
                    "window_drawn": float(np.mean(drawn[window])),
                    **measure(strategy.predict_loss(stream.scoring_embeddings, profiles), profiles),
                }
            )
    return rows


def run_online(
    embeddings: np.ndarray,
    correctness: np.ndarray,
    costs: np.ndarray,
    llm_names: list[str],
    *,
    strategy: str = "uniroute_kmeans",
    trials: int = 20,
    seed: int = 0,
    strategy_params: dict | None = None,
    tuning: bool = True,
    tuning_budget: str = "full",
    categories: np.ndarray | None = None,
    settings: OnlineSettings | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run the online protocol (module docstring) on ``trials`` splits; a JSON-ready dict.

    Keys: ``protocol``, ``settings``, ``strategy``, ``trials``, ``seed``, ``events`` (stream length per
    split), ``checkpoints`` (per checkpoint: static and learning accuracy, cost and area, mean ± se over
    splits), ``new_llm`` (per checkpoint: the area gap and the share of it closed) and ``specialists``
    (per checkpoint: recall and false share), ``seconds``.
    """
    settings = settings or OnlineSettings()
    settings.check()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    correctness = np.asarray(correctness, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if correctness.shape != (len(embeddings), len(costs)) or len(llm_names) != len(costs):
        raise ValueError("need embeddings [N, D], correctness [N, M], costs [M] and M llm_names")
    if strategy not in STRATEGIES:
        get_strategy(strategy)  # the usual "unknown strategy" error
    if not STRATEGIES[strategy].universal:
        raise ValueError(f"{strategy} is not universal: it cannot profile the unseen LLMs the replay routes among")
    if strategy == "knn":
        raise ValueError(
            "knn cannot learn from feedback: its profiles are tied to the validation prompts it was fitted on"
        )
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if categories is not None:
        categories = np.asarray(categories).astype(str)
    started = time.monotonic()
    per_split = []
    for trial, split in enumerate(make_splits(len(embeddings), len(costs), trials, seed)):
        per_split.append(
            _one_split(
                trial,
                split,
                embeddings,
                correctness,
                costs,
                strategy,
                strategy_params or {},
                tuning,
                tuning_budget,
                categories,
                settings,
                np.random.default_rng([seed, trial]),
                seed * 1000 + trial,
            )
        )
        if progress:
            progress(trial + 1, trials)
    return {
        "protocol": {**PROTOCOL, "tuning_on": tuning, "tuning_budget": tuning_budget if tuning else None},
        "settings": {**asdict(settings), "scoring_share": SCORING_SHARE, "lambda_max": LAMBDA_MAX},
        "strategy": strategy,
        "trials": trials,
        "seed": seed,
        "events": [s["events"] for s in per_split],
        "scoring_prompts": [s["scoring_prompts"] for s in per_split],
        "checkpoints": _summarise_arms(per_split),
        "new_llm": _summarise_new_llm(per_split),
        "specialists": _summarise_specialists(per_split),
        "tuning": [s["tuning"] for s in per_split],
        "seconds": time.monotonic() - started,
    }


def _one_split(
    trial,
    split: Split,
    embeddings,
    correctness,
    costs,
    name,
    fixed,
    tuning,
    budget,
    categories,
    settings,
    rng,
    fit_seed,
):
    test_rows = split.test_prompts[~np.isnan(correctness[np.ix_(split.test_prompts, split.test_llms)]).any(axis=1)]
    order = rng.permutation(test_rows)
    n_scoring = int(round(SCORING_SHARE * len(order)))
    scoring, stream_rows = np.sort(order[:n_scoring]), order[n_scoring:][: settings.events]
    # Whole windows only, so that every split's checkpoints fall on the same events.
    stream_rows = stream_rows[: len(stream_rows) // settings.checkpoint_every * settings.checkpoint_every]
    if n_scoring < 1 or len(stream_rows) < 1:
        raise ValueError(
            f"split {trial} has {len(test_rows)} test prompts answered by every test LLM: a third is held out to "
            f"score on, and the rest holds no window of {settings.checkpoint_every} events (--checkpoint-every)"
        )
    strategy, chosen = _fit(name, fixed, embeddings, correctness, costs, split, tuning, budget, fit_seed)
    pool_costs = normalised_costs(costs[split.test_llms])
    stream = Stream(
        embeddings=embeddings[stream_rows],
        prompt_ids=stream_rows,
        truth=correctness[np.ix_(stream_rows, split.test_llms)],
        lambdas=rng.uniform(0.0, LAMBDA_MAX, len(stream_rows)),
        scoring_embeddings=embeddings[scoring],
        scoring_truth=correctness[np.ix_(scoring, split.test_llms)],
        costs=pool_costs,
    )
    validation = split.validation_prompts
    validation_embeddings = embeddings[validation]

    def full_evidence():
        return [Evidence(validation_embeddings, correctness[validation, j]) for j in split.test_llms]

    def area_on_scoring(losses, profiles):
        return {"area": area(deferral_curve(losses, stream.costs, stream.scoring_truth))}

    # Every learning router of the split explores with the same draws, so that their differences are
    # the evidence they were given, not the luck of the draws.
    explore_seed = int(rng.integers(2**63))

    def explorer():
        return np.random.default_rng(explore_seed)

    static = replay(strategy, full_evidence(), stream, settings, learn=False, measure=area_on_scoring)
    learning = replay(strategy, full_evidence(), stream, settings, learn=True, measure=area_on_scoring, rng=explorer())

    new_llm = []
    m = len(split.test_llms)
    for position in rng.permutation(m)[: m if settings.new_llms is None else settings.new_llms]:
        sample = _sample(rng, len(validation), settings.new_llm_prompts)
        evidence = full_evidence()
        evidence[position] = Evidence(
            validation_embeddings[sample], correctness[validation[sample], split.test_llms[position]]
        )
        if np.isnan(evidence[position].validation_correctness).all():
            continue  # no answer among its sampled prompts: it could not be registered
        rows = replay(strategy, evidence, stream, settings, learn=True, measure=area_on_scoring, rng=explorer())
        new_llm.append(
            {
                "llm": int(split.test_llms[position]),
                "area": [r["area"] for r in rows],
                "full_area": [r["area"] for r in learning],
                "static_full_area": static[0]["area"],
            }
        )

    specialist_rows = []
    if categories is not None and settings.specialists:
        candidates = specialists_of(categories, validation, scoring)
        for index in rng.permutation(len(candidates))[: settings.specialists]:
            specialist_rows.append(
                _specialist_replay(
                    explorer(),
                    candidates[index],
                    strategy,
                    full_evidence(),
                    stream,
                    settings,
                    scoring,
                    validation,
                    validation_embeddings,
                    stream_rows,
                    rng,
                )
            )
    return {
        "events": len(stream_rows),
        "scoring_prompts": len(scoring),
        "static": static,
        "learning": learning,
        "new_llm": new_llm,
        "specialists": specialist_rows,
        "tuning": chosen,
    }


def _specialist_replay(
    explore_rng,
    candidate: Specialist,
    strategy,
    evidence,
    stream: Stream,
    settings,
    scoring,
    validation,
    validation_embeddings,
    stream_rows,
    rng,
) -> dict:
    sample = _sample(rng, len(validation), settings.new_llm_prompts)
    evidence.append(Evidence(validation_embeddings[sample], candidate.validation_correctness[sample]))
    with_specialist = Stream(
        embeddings=stream.embeddings,
        prompt_ids=stream.prompt_ids,
        truth=np.column_stack([stream.truth, candidate.correctness(stream_rows)]),
        lambdas=stream.lambdas,
        scoring_embeddings=stream.scoring_embeddings,
        scoring_truth=np.column_stack([stream.scoring_truth, candidate.correctness(scoring)]),
        costs=with_specialist_cost(stream.costs),
    )

    def recall(losses, profiles):
        figures = specialist_figures(losses[:, :-1], losses[:, -1], stream.scoring_truth, stream.costs, candidate)
        return {"recall": figures["recall"], "false_share": figures["false_share"]}

    rows = replay(strategy, evidence, with_specialist, settings, learn=True, measure=recall, rng=explore_rng)
    return {"category": candidate.category, "rows": rows}


def _sample(rng, n: int, size: int) -> np.ndarray:
    return np.sort(rng.permutation(n)[: min(size, n)])


def _fit(name, fixed, embeddings, correctness, costs, split: Split, tuning, budget, seed):
    train_llms = split.train_llms
    data = dict(
        validation_embeddings=embeddings[split.validation_prompts],
        validation_correctness=correctness[np.ix_(split.validation_prompts, train_llms)],
        llm_keys=[f"train-{j}" for j in train_llms],
    )
    train = (embeddings[split.train_prompts], correctness[np.ix_(split.train_prompts, train_llms)])
    if not tuning:
        return get_strategy(name, **fixed).fit(*train, **data), dict(fixed)
    strategy, report = tuned_fit(name, *train, **data, costs=costs[train_llms], fixed=fixed, seed=seed, budget=budget)
    return strategy, report.as_json()["chosen"]


# -- summaries ---------------------------------------------------------------------------------------
def _by_checkpoint(per_split: list[dict], arm: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for split in per_split:
        for row in split[arm]:
            out.setdefault(row["events"], []).append(row)
    return out


def _summarise_arms(per_split: list[dict]) -> list[dict]:
    """Per checkpoint reached by every split: each arm's figures, mean ± se over splits, and the paired
    learning − static differences."""
    static, learning = _by_checkpoint(per_split, "static"), _by_checkpoint(per_split, "learning")
    out = []
    for events in sorted(static):
        if len(static[events]) != len(per_split):
            continue
        row = {"events": events}
        for key in ("area", "window_accuracy", "window_cost", "window_explored", "window_drawn"):
            if key not in static[events][0]:
                continue
            a = np.array([r[key] for r in static[events]])
            b = np.array([r[key] for r in learning[events]])
            row[f"static_{key}"], row[f"static_{key}_se"] = _mean_se(a)
            row[f"learning_{key}"], row[f"learning_{key}_se"] = _mean_se(b)
            row[f"gain_{key}"], row[f"gain_{key}_se"] = _mean_se(b - a)
        out.append(row)
    return out


def _summarise_new_llm(per_split: list[dict]) -> list[dict]:
    entries = [entry for split in per_split for entry in split["new_llm"]]
    if not entries:
        return []
    n_checkpoints = min(len(e["area"]) for e in entries)
    gap0 = np.array([e["full_area"][0] - e["area"][0] for e in entries])
    static_gap = np.array([e["static_full_area"] - e["area"][0] for e in entries])
    out = []
    for c in range(n_checkpoints):
        gap = np.array([e["full_area"][c] - e["area"][c] for e in entries])
        moved = np.array([e["area"][c] - e["area"][0] for e in entries])
        gap_mean, gap_se = _mean_se(gap)
        out.append(
            {
                "events": per_split[0]["learning"][c]["events"],
                "llms": len(entries),
                "gap": gap_mean,
                "gap_se": gap_se,
                "gap_closed": _finite(1.0 - gap.sum() / gap0.sum()) if gap0.sum() > 0 else None,
                "closed_vs_static": _finite(moved.sum() / static_gap.sum()) if static_gap.sum() > 0 else None,
                "area": _finite(np.mean([e["area"][c] for e in entries])),
                "full_area": _finite(np.mean([e["full_area"][c] for e in entries])),
            }
        )
    return out


def _summarise_specialists(per_split: list[dict]) -> list[dict]:
    entries = [entry for split in per_split for entry in split["specialists"]]
    if not entries:
        return []
    n_checkpoints = min(len(e["rows"]) for e in entries)
    out = []
    for c in range(n_checkpoints):
        recall = np.array([e["rows"][c]["recall"] for e in entries])
        false_share = np.array([e["rows"][c]["false_share"] for e in entries])
        row = {"events": entries[0]["rows"][c]["events"], "specialists": len(entries)}
        row["recall"], row["recall_se"] = _mean_se(recall)
        row["false_share"], row["false_share_se"] = _mean_se(false_share)
        out.append(row)
    out[-1]["categories"] = sorted({e["category"] for e in entries})
    return out


def _mean_se(values: np.ndarray) -> tuple[float | None, float | None]:
    values = np.asarray(values, dtype=np.float64)
    se = _finite(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return _finite(values.mean()), se


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None

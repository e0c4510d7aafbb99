"""The cluster map of the active router: per-cluster error Ψ of every LLM, what each cluster is about,
and which LLM wins it at a given λ.

Strategies with hard clusters whose profile is one error per cluster (UniRoute K-means, LearnedMap)
show their own Ψ. Others (K-NN, ZeroRouter, the Routoo predictor, the relative-map ensemble) have
no such clusters: their validation prompts are grouped by K-means for display only, and each cell
is the mean loss the strategy predicts for the LLM on that group's prompts. Either way a cluster is
labelled by its most common categories (or, without categories, its most distinctive words) and
three prompts nearest its centre. Cached per process and state revision, like the held-out curves.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from registry.models import Prompt
from registry.selectors import prompt_embeddings
from routing.caches import process_cache
from routing.models import RoutingState
from routing.selection import select
from routing.selectors.curves import mean_prompt_tokens
from routing.selectors.routers import LoadedRouter
from routing.strategies.kmeans import spherical_centroids
from routing.strategies.profiles import nearest_centroid

DISPLAY_CLUSTERS = 10  # groups shown for strategies without clusters of their own
MAX_SHOWN = 24  # the largest clusters shown when a strategy has more
EXAMPLES = 3
WORD = re.compile(r"[a-z][a-z'-]{3,}")
STOP_WORDS = frozenset(
    "about above after again also among answer because been before being below between both could does doing "
    "down during each following from further have having here into itself just more most much must only other "
    "over same should some such than that their them then there these they this those through under until very "
    "what when where which while whom with would your options correct statement true false following".split()
)

_maps = process_cache("dashboard cluster maps", max_entries=4)


@dataclass(frozen=True)
class Cluster:
    index: int
    size: int  # validation prompts in it
    label: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class ClusterMap:
    state_id: int
    own_clusters: bool  # the strategy's clusters (True) or K-means groups drawn for display
    llm_names: tuple[str, ...]
    clusters: tuple[Cluster, ...]  # largest first, at most MAX_SHOWN
    hidden_clusters: int
    errors: np.ndarray  # [llms, shown clusters]: Ψ or mean predicted loss
    losses: np.ndarray  # [validation prompts, llms] predicted loss
    members: tuple[np.ndarray, ...]  # per shown cluster: its rows of ``losses``
    costs_usd: np.ndarray  # [llms]

    @property
    def fleet_mean(self) -> np.ndarray:
        return self.errors.mean(axis=0)

    def winners(self, lam: float) -> list[tuple[int, float]]:
        """Per shown cluster: (index of the LLM chosen most often on its prompts at ``lam``, that share)."""
        choice = select(self.losses, self.costs_usd, lam=max(float(lam), 0.0))
        result = []
        for rows in self.members:
            counts = np.bincount(choice[rows], minlength=len(self.llm_names))
            best = int(np.argmax(counts))
            result.append((best, float(counts[best] / max(len(rows), 1))))
        return result


def cluster_map(router: LoadedRouter) -> ClusterMap | None:
    key = (router.state_id, router.revision, tuple(llm.id for llm in router.llms))
    cached = _maps.get(key)
    if cached is None:
        cached = _compute(router)
        _maps.set(key, cached)
    return cached


def _compute(router: LoadedRouter) -> ClusterMap | None:
    prompt_ids = list(RoutingState.objects.values_list("validation_prompt_ids", flat=True).get(id=router.state_id))
    if not prompt_ids or not router.llms:
        return None
    embeddings = prompt_embeddings(prompt_ids=prompt_ids)
    losses = router.strategy.predict_loss(embeddings, router.profiles).astype(np.float64)
    assigned = router.strategy.cluster_of(embeddings)
    # A strategy with hard clusters keeps one error per cluster in its profile (K-means, LearnedMap).
    own = assigned is not None and int(assigned.max()) < router.profiles.shape[1]
    if own:
        n_clusters = router.profiles.shape[1]
    else:
        centroids = spherical_centroids(embeddings, DISPLAY_CLUSTERS, n_init=1, random_state=0)
        assigned, n_clusters = nearest_centroid(embeddings, centroids), len(centroids)
    sizes = np.bincount(assigned, minlength=n_clusters)
    order = [k for k in np.argsort(-sizes, kind="stable") if sizes[k] > 0][:MAX_SHOWN]
    texts = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "text"))
    categories = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "category"))
    members = [np.flatnonzero(assigned == k) for k in order]
    if own:
        errors = np.asarray(router.profiles, dtype=np.float64)[:, order]
    else:
        errors = np.stack([losses[rows].mean(axis=0) for rows in members], axis=1)
    all_words = _word_counts([texts[p] for p in prompt_ids])
    clusters = tuple(
        Cluster(
            index=int(k),
            size=int(sizes[k]),
            label=_label([categories[prompt_ids[r]] for r in rows], [texts[prompt_ids[r]] for r in rows], all_words),
            examples=tuple(texts[prompt_ids[r]] for r in _central(embeddings[rows], rows)),
        )
        for k, rows in zip(order, members)
    )
    return ClusterMap(
        state_id=router.state_id,
        own_clusters=own,
        llm_names=tuple(llm.name for llm in router.llms),
        clusters=clusters,
        hidden_clusters=int((sizes > 0).sum()) - len(order),
        errors=errors,
        losses=losses,
        members=tuple(members),
        costs_usd=router.expected_costs(input_tokens=mean_prompt_tokens(router.prompt_set_id, prompt_ids)),
    )


def _central(embeddings: np.ndarray, rows: np.ndarray) -> list[int]:
    """The ``EXAMPLES`` rows nearest the group's mean direction."""
    centre = embeddings.mean(axis=0)
    return [int(rows[i]) for i in np.argsort(-(embeddings @ centre), kind="stable")[:EXAMPLES]]


def _label(categories: list[str], texts: list[str], all_words: Counter) -> str:
    """ "math 62%, physics 21%" from categories, else the words most over-represented in the group."""
    named = [c for c in categories if c]
    if named:
        top = Counter(named).most_common(2)
        return ", ".join(f"{name} {100 * n / len(categories):.0f}%" for name, n in top)
    words = _word_counts(texts)
    total_here, total_all = sum(words.values()) or 1, sum(all_words.values()) or 1
    lift = {w: n / total_here - all_words[w] / total_all for w, n in words.items() if n >= 2}
    return ", ".join(sorted(lift, key=lambda w: (-lift[w], w))[:3]) or "mixed"


def _word_counts(texts) -> Counter:
    counts = Counter()
    for text in texts:
        counts.update(w for w in set(WORD.findall(text.lower())) if w not in STOP_WORDS)
    return counts

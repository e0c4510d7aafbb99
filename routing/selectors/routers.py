"""Loaded routers: a fitted routing state with its LLMs' profiles, ready to score prompts.

Web and worker processes call :func:`active_router`. It re-reads one small row (active state id,
its revision, and the newest LLM change) at most every ``RECHECK_SECONDS``, and reloads the whole
state only when that changed — so a refit or a newly profiled LLM is picked up within a second,
without a restart, and a request always sees one complete state. A request that names another
strategy gets the newest state fitted with it (:func:`router_for`). Both live in one process
cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.db import connection

from registry.gateway_fields import FieldPrices, accepted_fields
from registry.models import Prompt
from registry.selectors import nearest_prompts, prompt_embeddings
from registry.tokens import count_tokens
from routing import pacing
from routing.caches import process_cache
from routing.exceptions import NoActiveRoutingState, UnknownStrategy
from routing.models import LLMProfile, RoutingState
from routing.selectors.state import strategy_of
from routing.strategies.base import RoutingStrategy
from routing.strategies.exploration import OwnCounts, own_counts_at, own_strength

RECHECK_SECONDS = 1.0
# K-NN routing of one live prompt looks its neighbours up through pgvector's HNSW index (the path for
# large validation sets); off, an exact numpy search over the stored embeddings.
KNN_LIVE_INDEX = True

# "active" → _Active; ("strategy", name) → ((state id, revision), LoadedRouter)
_routers = process_cache("routers")
# (state id, revision, LLM count) → ReferenceSample of the newest state
_references = process_cache("pacing reference samples", max_entries=1)


@dataclass(frozen=True)
class RoutableLLM:
    id: int
    name: str
    provider: str
    api_base: str
    api_model: str
    usd_per_mtok_in: float | None
    usd_per_mtok_out: float | None
    usd_per_query: float | None
    validation_error: float
    n_validation_outcomes: int
    uses_fallback: bool  # the strategy could not score this LLM itself (e.g. Routoo on an unseen LLM)
    # Where its API key comes from (routing/upstream/credentials.py); encrypted, never the key itself.
    api_key_encrypted: str = ""
    api_key_env: str = ""
    # Request fields it accepts beyond what its token prices cover, with their prices
    # (registry/gateway_fields.py); the fees per call of those a call sets, once priced (priced_for).
    gateway_fields: tuple[tuple[str, FieldPrices], ...] = ()
    usd_per_call: float = 0.0

    @classmethod
    def of(cls, llm, *, validation_error: float = float("nan"), n_validation_outcomes: int = 0, uses_fallback=False):
        """A registry ``LLM`` row as a candidate (the router's own come with their profile's figures)."""
        return cls(
            id=llm.id,
            name=llm.name,
            provider=llm.provider,
            api_base=llm.api_base,
            api_model=llm.api_model,
            usd_per_mtok_in=llm.usd_per_mtok_in,
            usd_per_mtok_out=llm.usd_per_mtok_out,
            usd_per_query=llm.usd_per_query,
            validation_error=validation_error,
            n_validation_outcomes=n_validation_outcomes,
            uses_fallback=uses_fallback,
            api_key_encrypted=llm.api_key_encrypted,
            api_key_env=llm.api_key_env,
            gateway_fields=tuple(sorted(accepted_fields(llm.metadata).items())),
        )

    def expected_cost_usd(self, *, input_tokens: float, output_tokens: float) -> float:
        if self.usd_per_query is not None:
            return self.usd_per_query + self.usd_per_call
        tokens = (self.usd_per_mtok_in or 0.0) * input_tokens + (self.usd_per_mtok_out or 0.0) * output_tokens
        return tokens / 1e6 + self.usd_per_call

    def unaccepted(self, fields: Iterable[str]) -> list[str]:
        """Those of ``fields`` this LLM is not given (its metadata does not list them)."""
        accepted = {name for name, _ in self.gateway_fields}
        return [name for name in fields if name not in accepted]

    def priced_for(self, fields: Iterable[str]) -> RoutableLLM | None:
        """This LLM as a call that sets ``fields`` is billed: each token price replaced by the highest
        the fields' entries give, their fees per call added; None if it does not accept one of them."""
        fields = list(fields)
        if not fields:
            return self
        if self.unaccepted(fields):
            return None
        entries = [prices for name, prices in self.gateway_fields if name in fields]
        given_in = [p.usd_per_mtok_in for p in entries if p.usd_per_mtok_in is not None]
        given_out = [p.usd_per_mtok_out for p in entries if p.usd_per_mtok_out is not None]
        return replace(
            self,
            usd_per_mtok_in=max(given_in) if given_in else self.usd_per_mtok_in,
            usd_per_mtok_out=max(given_out) if given_out else self.usd_per_mtok_out,
            usd_per_call=sum(p.usd_per_call for p in entries),
        )


@dataclass(frozen=True)
class LoadedRouter:
    state_id: int
    version: int
    revision: int
    strategy_name: str
    strategy: RoutingStrategy
    llms: tuple[RoutableLLM, ...]  # active LLMs with a profile, by name
    profiles: np.ndarray  # [len(llms), P]
    prompt_set_id: int = 0
    validation_row_of: dict = field(default_factory=dict)  # prompt id → its row in S_val
    params: dict = field(default_factory=dict)  # the hyper-parameters the state was fitted with (tuned or given)
    # [len(llms), C] each profile's evidence (RoutingStrategy.evidence); a row of NaN where none is stored.
    evidence: np.ndarray | None = None
    # [len(llms), C] the error count behind it (RoutingStrategy.error_evidence); NaN where none is stored.
    error_evidence: np.ndarray | None = None
    # [len(llms)] each LLM's empirical-Bayes strength on its own counts (exploration.own_strength).
    own_strengths: np.ndarray | None = None

    def predict_loss(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted loss [prompts × llms] for embeddings [prompts × D] (or one [D] vector → [1 × llms]).

        A strategy that reads a prompt's loss off its validation neighbours (K-NN) finds one live
        prompt's neighbours with pgvector's HNSW index (:data:`KNN_LIVE_INDEX`); batches, and
        every other strategy, run in numpy.
        """
        embeddings = np.atleast_2d(embeddings)
        k = self.strategy.live_neighbour_count()
        if len(embeddings) == 1 and k is not None and KNN_LIVE_INDEX:
            return self._loss_from_indexed_neighbours(embeddings[0], k)
        return self.strategy.predict_loss(embeddings, self.profiles)

    def _loss_from_indexed_neighbours(self, embedding: np.ndarray, k: int) -> np.ndarray:
        nearest = nearest_prompts(
            embedding=embedding, prompt_set_id=self.prompt_set_id, split=Prompt.Split.VALIDATION, k=k
        )
        rows = [self.validation_row_of[pid] for pid, _ in nearest if pid in self.validation_row_of]
        if not rows:  # validation prompts changed since the fit: fall back to the stored embeddings
            return self.strategy.predict_loss(embedding[None, :], self.profiles)
        return np.clip(self.strategy.loss_from_neighbours(np.asarray(rows)[None, :], self.profiles), 0.0, 1.0)

    def evidence_near(self, embedding: np.ndarray) -> np.ndarray:
        """[llms] the evidence behind each LLM's estimate for one prompt (``RoutingStrategy.evidence_at``);
        NaN for an LLM whose profile stores none (exploration then leaves it alone)."""
        if self.evidence is None or not self.evidence.size:
            return np.full(len(self.llms), np.nan)
        return self.strategy.evidence_at(np.atleast_2d(embedding), self.evidence)[0]

    def own_counts_near(self, embedding: np.ndarray) -> OwnCounts | None:
        """Each LLM's own answers and errors in the finest cell near one prompt, and its empirical-Bayes
        strength (``routing/strategies/exploration.py``); NaN for an LLM whose profile stores no error
        evidence (exploration then draws around its estimate), None when no profile does."""
        if self.error_evidence is None or not self.error_evidence.size:
            return None
        near = own_counts_at(
            self.strategy, np.atleast_2d(embedding), self.evidence, self.error_evidence, self.own_strengths
        )
        return OwnCounts(*(a[0] for a in near))

    def cluster_of(self, embedding: np.ndarray) -> int | None:
        clusters = self.strategy.cluster_of(np.atleast_2d(embedding))
        return None if clusters is None else int(clusters[0])

    def llm_index(self) -> dict[str, int]:
        return {llm.name: i for i, llm in enumerate(self.llms)}

    def expected_costs(self, *, input_tokens: float, output_tokens: float | None = None) -> np.ndarray:
        """Estimated USD per LLM: its price × (prompt tokens, output tokens — by default the expected
        ``ROUTERHUB_EXPECTED_OUTPUT_TOKENS``), or its per-query price.

        An LLM without any price costs 0 here — it is free as far as routerhub can tell.
        """
        if output_tokens is None:
            output_tokens = settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS
        return np.array(
            [llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens) for llm in self.llms],
            dtype=np.float64,
        )


def load_router(state_id: int) -> LoadedRouter:
    """A LoadedRouter for any stored state (uncached; active_router() and router_for() cache)."""
    state = RoutingState.objects.get(id=state_id)
    strategy = strategy_of(state)
    rows = list(LLMProfile.objects.filter(state=state, llm__is_active=True).select_related("llm").order_by("llm__name"))
    llms, vectors, evidence, error_evidence = [], [], [], []
    for row in rows:
        vector = np.asarray(row.vector, dtype=np.float32)
        llm = row.llm
        llms.append(
            RoutableLLM.of(
                llm,
                validation_error=row.validation_error,
                n_validation_outcomes=row.n_validation_outcomes,
                uses_fallback=strategy.scores_with_fallback(vector),
            )
        )
        vectors.append(vector)
        evidence.append(np.asarray(row.evidence, dtype=np.float64))
        error_evidence.append(np.asarray(row.error_evidence, dtype=np.float64))
    width = max((len(v) for v in vectors), default=0)
    profiles = np.zeros((len(vectors), width), dtype=np.float32)
    for i, vector in enumerate(vectors):
        profiles[i, : len(vector)] = vector
    evidence_width = max((len(e) for e in evidence), default=0)
    evidence_rows = np.zeros((len(evidence), evidence_width))
    error_rows = np.full((len(evidence), evidence_width), np.nan)
    for i, (counts, errors) in enumerate(zip(evidence, error_evidence)):
        evidence_rows[i, : len(counts)] = counts if len(counts) == evidence_width else np.nan
        if len(counts) == evidence_width and len(errors) == evidence_width:
            error_rows[i] = errors
    return LoadedRouter(
        state_id=state.id,
        version=state.version,
        revision=state.revision,
        strategy_name=state.strategy,
        strategy=strategy,
        llms=tuple(llms),
        profiles=profiles,
        prompt_set_id=state.prompt_set_id,
        validation_row_of={int(pid): row for row, pid in enumerate(state.validation_prompt_ids)},
        params=dict(state.params),
        evidence=evidence_rows,
        error_evidence=error_rows,
        own_strengths=np.array([own_strength(strategy, n, e) for n, e in zip(evidence_rows, error_rows)]),
    )


@dataclass(frozen=True)
class _Active:
    key: tuple  # (state id, revision, newest LLM change)
    router: LoadedRouter
    checked_at: float


def _active_key() -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id, s.revision, (SELECT max(updated_at) FROM registry_llm) "
            "FROM routing_routingstate s WHERE s.is_active"
        )
        return cursor.fetchone()


def active_router(*, max_age_seconds: float = RECHECK_SECONDS) -> LoadedRouter:
    """The active router; raises NoActiveRoutingState when none has been fitted."""
    active = _routers.get("active")
    if active is not None and time.monotonic() - active.checked_at < max_age_seconds:
        return active.router
    with _routers.lock:  # one reload per process, however many requests arrive meanwhile
        active = _routers.get("active")
        if active is not None and time.monotonic() - active.checked_at < max_age_seconds:
            return active.router
        key = _active_key()
        if key is None:
            _routers.pop("active")
            raise NoActiveRoutingState(
                "no routing state has been fitted yet: run `python manage.py fit_router --dataset NAME`"
            )
        router = active.router if active is not None and active.key == key else load_router(key[0])
        _routers.set("active", _Active(key=key, router=router, checked_at=time.monotonic()))
        return router


def router_for(*, strategy: str | None) -> LoadedRouter:
    """The active router, or — when a request names another strategy — the newest state fitted with it."""
    router = active_router()
    if strategy is None or strategy == router.strategy_name:
        return router
    row = RoutingState.objects.filter(strategy=strategy).order_by("-version").values_list("id", "revision").first()
    if row is None:
        fitted = sorted(set(RoutingState.objects.values_list("strategy", flat=True)))
        raise UnknownStrategy(
            "strategy", f"No routing state has been fitted with {strategy!r}; fitted: {', '.join(fitted)}."
        )
    with _routers.lock:
        cached = _routers.get(("strategy", strategy))
        if cached is None or cached[0] != row:
            cached = (row, load_router(row[0]))
            _routers.set(("strategy", strategy), cached)
    return cached[1]


@dataclass(frozen=True)
class ReferenceSample:
    """Predicted losses [n × llms] of a fixed prompt sample, and its mean cost per LLM [llms]."""

    losses: np.ndarray
    mean_costs: np.ndarray


def reference_sample(router: LoadedRouter) -> ReferenceSample:
    """Predicted losses and mean costs on (a sample of) the state's validation prompts, per state.

    The sample stands in for the tenant's future traffic when pacing solves for λ. Computed once per
    process and state revision (a new profile changes the LLM columns).
    """
    key = (router.state_id, router.revision, len(router.llms))
    sample = _references.get(key)
    if sample is not None:
        return sample
    prompt_ids = list(RoutingState.objects.values_list("validation_prompt_ids", flat=True).get(id=router.state_id))
    size = pacing.REFERENCE_PROMPTS
    if len(prompt_ids) > size:
        prompt_ids = [prompt_ids[i] for i in np.linspace(0, len(prompt_ids) - 1, size).astype(int)]
    texts = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "text"))
    mean_tokens = float(np.mean(count_tokens([texts[i] for i in prompt_ids]))) if prompt_ids else 0.0
    losses = router.predict_loss(prompt_embeddings(prompt_ids=prompt_ids)).astype(np.float64)
    sample = ReferenceSample(losses=losses, mean_costs=router.expected_costs(input_tokens=mean_tokens))
    _references.set(key, sample)  # holds one entry: only the newest state matters
    return sample

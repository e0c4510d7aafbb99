"""The active router, loaded once per process and reloaded when the active state changes.

Web and worker processes call :func:`active_router`. It re-reads one small row (active state id,
its revision, and the newest LLM change) at most every ``RECHECK_SECONDS``, and reloads the whole
state only when that changed — so a refit or a newly profiled LLM is picked up within a second,
without a restart, and a request always sees one complete state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection

from routing.models import LLMProfile, RoutingState
from routing.selectors import NoActiveRoutingState
from routing.services import strategy_of
from routing.strategies.base import RoutingStrategy

RECHECK_SECONDS = 1.0


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

    def expected_cost_usd(self, *, input_tokens: float, output_tokens: float) -> float:
        if self.usd_per_query is not None:
            return self.usd_per_query
        return ((self.usd_per_mtok_in or 0.0) * input_tokens + (self.usd_per_mtok_out or 0.0) * output_tokens) / 1e6


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
    validation_row_of: dict = field(default_factory=dict)  # prompt id → its row in K-NN profiles
    params: dict = field(default_factory=dict)  # the hyper-parameters the state was fitted with (tuned or given)

    def predict_loss(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted loss [prompts × llms] for embeddings [prompts × D] (or one [D] vector → [1 × llms]).

        K-NN on one live prompt finds its neighbours with pgvector's HNSW index
        (``ROUTERHUB_KNN_LIVE_INDEX``); batches, and every other strategy, run in numpy.
        """
        embeddings = np.atleast_2d(embeddings)
        if len(embeddings) == 1 and self.strategy_name == "knn" and settings.ROUTERHUB_KNN_LIVE_INDEX:
            return self._knn_loss_from_index(embeddings[0])
        return self.strategy.predict_loss(embeddings, self.profiles)

    def _knn_loss_from_index(self, embedding: np.ndarray) -> np.ndarray:
        from registry.models import Prompt
        from registry.selectors import nearest_prompts
        from routing.strategies.knn import KNearestNeighbours

        k = min(int(self.strategy.k), len(self.validation_row_of))
        nearest = nearest_prompts(embedding=embedding, prompt_set_id=self.prompt_set_id, split=Prompt.Split.VALIDATION, k=k)
        rows = [self.validation_row_of[pid] for pid, _ in nearest if pid in self.validation_row_of]
        if not rows:  # validation prompts changed since the fit: fall back to the stored embeddings
            return self.strategy.predict_loss(embedding[None, :], self.profiles)
        return np.clip(KNearestNeighbours.loss_from_neighbours(np.asarray(rows)[None, :], self.profiles), 0.0, 1.0)

    def cluster_of(self, embedding: np.ndarray) -> int | None:
        clusters = self.strategy.cluster_of(np.atleast_2d(embedding))
        return None if clusters is None else int(clusters[0])

    def llm_index(self) -> dict[str, int]:
        return {llm.name: i for i, llm in enumerate(self.llms)}


_lock = threading.Lock()
_loaded: LoadedRouter | None = None
_key: tuple | None = None
_checked_at = 0.0


def _current_key() -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id, s.revision, (SELECT max(updated_at) FROM registry_llm) "
            "FROM routing_routingstate s WHERE s.is_active"
        )
        return cursor.fetchone()


def load_router(state_id: int) -> LoadedRouter:
    """A LoadedRouter for any stored state (uncached; active_router() caches the active one)."""
    state = RoutingState.objects.get(id=state_id)
    strategy = strategy_of(state)
    rows = list(
        LLMProfile.objects.filter(state=state, llm__is_active=True).select_related("llm").order_by("llm__name")
    )
    is_fallback = getattr(strategy, "is_fallback", None)
    llms, vectors = [], []
    for row in rows:
        vector = np.asarray(row.vector, dtype=np.float32)
        llm = row.llm
        llms.append(RoutableLLM(
            id=llm.id, name=llm.name, provider=llm.provider, api_base=llm.api_base, api_model=llm.api_model,
            usd_per_mtok_in=llm.usd_per_mtok_in, usd_per_mtok_out=llm.usd_per_mtok_out, usd_per_query=llm.usd_per_query,
            validation_error=row.validation_error, n_validation_outcomes=row.n_validation_outcomes,
            uses_fallback=bool(is_fallback(vector)) if is_fallback else False,
        ))
        vectors.append(vector)
    width = max((len(v) for v in vectors), default=0)
    profiles = np.zeros((len(vectors), width), dtype=np.float32)
    for i, vector in enumerate(vectors):
        profiles[i, : len(vector)] = vector
    return LoadedRouter(
        state_id=state.id, version=state.version, revision=state.revision, strategy_name=state.strategy,
        strategy=strategy, llms=tuple(llms), profiles=profiles, prompt_set_id=state.prompt_set_id,
        validation_row_of={int(pid): row for row, pid in enumerate(state.validation_prompt_ids)},
        params=dict(state.params),
    )


def active_router(*, max_age_seconds: float = RECHECK_SECONDS) -> LoadedRouter:
    """The active router; raises NoActiveRoutingState when none has been fitted."""
    global _loaded, _key, _checked_at
    now = time.monotonic()
    if _loaded is not None and now - _checked_at < max_age_seconds:
        return _loaded
    with _lock:
        if _loaded is not None and time.monotonic() - _checked_at < max_age_seconds:
            return _loaded
        key = _current_key()
        if key is None:
            _loaded, _key = None, None
            raise NoActiveRoutingState("no routing state has been fitted yet: run `python manage.py fit_router --dataset NAME`")
        if key != _key or _loaded is None:
            _loaded, _key = load_router(key[0]), key
        _checked_at = time.monotonic()
        return _loaded


def reset() -> None:
    """Forget the cached router (tests)."""
    global _loaded, _key, _checked_at
    with _lock:
        _loaded, _key, _checked_at = None, None, 0.0

"""Routing strategies: a name → class table, as settings and the API refer to strategies by name.

Every strategy is pure numpy / scikit-learn (no Django) and implements ``base.RoutingStrategy``.
"""

from __future__ import annotations

from routing.strategies.base import RoutingStrategy, StrategyNotFitted
from routing.strategies.kmeans import UniRouteKMeans
from routing.strategies.knn import KNearestNeighbours
from routing.strategies.learned_map import UniRouteLearnedMap
from routing.strategies.matrix_factorisation import MatrixFactorisation
from routing.strategies.predictor import RoutooPredictor
from routing.strategies.relative_maps import RelativeMapEnsemble
from routing.strategies.zero import ZeroRouter

STRATEGIES: dict[str, type[RoutingStrategy]] = {
    cls.name: cls
    for cls in (
        ZeroRouter,
        KNearestNeighbours,
        UniRouteKMeans,
        UniRouteLearnedMap,
        RoutooPredictor,
        RelativeMapEnsemble,
        MatrixFactorisation,
    )
}


def get_strategy(name: str, **params) -> RoutingStrategy:
    """A fresh, unfitted strategy; unknown names and hyper-parameters fail loudly."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(
            f"bad hyper-parameters for {name!r} ({exc}); it takes {', '.join(cls.param_names()) or 'none'}"
        ) from None


__all__ = ["STRATEGIES", "RoutingStrategy", "StrategyNotFitted", "get_strategy"]

"""Per-LLM smoothing: keep the tuned prior strength unless an LLM's own answers reject it.

The profiles of ``profiles.py`` shrink each cluster's error towards the LLM's overall error ē(h) with a
prior worth ``a`` prompts, and ``a`` is tuned by cross-validation over the *training* LLMs
(``tuning.py``). That is right for LLMs like them and wrong for one that is not: a specialist right on
one subject and wrong on the rest has cluster errors far from ē(h), and a strong prior pulls them back.

Each LLM's own per-cluster counts say how far its clusters spread around ē(h). Under a Beta prior of
mean ē(h) and strength a, the error count s_k of a cluster holding n_k answers is beta-binomial:

    log p(s | n, a) = Σ_k  log B(s_k + a·ē, n_k − s_k + a·(1 − ē)) − log B(a·ē, a·(1 − ē))    (+ terms free of a)

(soft memberships and fractional scores give real-valued n_k and s_k; the same expression is used as a
quasi-likelihood). Its maximiser â over a grid is the LLM's empirical-Bayes prior strength, and

    departure(h) = max_{a ≤ a_tuned} log p(s | n, a) − log p(s | n, a_tuned)  ≥ 0

how strongly its answers reject the tuned strength in favour of a weaker one. (One-sided: an LLM whose
clusters differ *less* than the tuned prior allows loses little by it, and the training LLMs, which
set the threshold, often do.) A generalist's â is noisy — using it for every
LLM costs routing accuracy — so an LLM keeps ``a_tuned`` unless its departure exceeds what the training
LLMs themselves show on their validation answers: the level a new LLM like them exceeds with
probability ``FALSE_DEPARTURE_RATE`` when departures are exponential with a mean estimated from the m
training LLMs' (the predictive, Lomax, quantile m·μ̂·(p^(−1/m) − 1), which grows as m shrinks), at
least the largest of them (computed from their counts, stored at fit time, for whatever ``a_tuned``
the profile uses), and at least what an LLM whose clusters follow the tuned prior exactly reaches
with that probability (the one-sided likelihood ratio's χ̄² law: ½·χ²₁ quantile at 1 − 2p). A new LLM like the
training ones thus rarely departs by chance. A departure grows with the answers it is read from, so
an LLM with fewer answers than a training LLM (50 validation prompts, say) is compared with that
LLM's counts thinned to its own answered weight (a uniform subsample, drawn from the counts with a
fixed seed): like with like, at the same false-departure rate. The counts are read on the finest
fine map (below) on which the LLM holds ``MIN_ANSWERS_PER_FINE_CLUSTER`` answers per cluster
(``FineMaps.test_level``): where clusters hold one answer or none, every strength explains them
equally well, and a departure read there says nothing. An LLM that departs is profiled with
its own â.

Rows may be weighted (``weights`` [n], e.g. feedback evidence appended to the validation rows,
``evidence.py``): a row of weight ω counts ω times in n_k and s_k, and in the leave-one-out likelihood
below both as what is left out and as how much its term counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.special import gammaln
from scipy.stats import chi2

from routing.strategies.centroids import spherical_centroids
from routing.strategies.profiles import answered_weights, one_hot, overall_error, shrunk_cluster_errors

# A strategy's ``smoothing``: "per_llm" lets an LLM whose answers depart use its own strength; "tuned"
# smooths every LLM with the tuned one.
SMOOTHING_MODES = ("per_llm", "tuned")
# Candidate prior strengths for the empirical-Bayes fit: from "trust each cluster" to "one average".
PRIOR_STRENGTH_GRID = np.geomspace(0.25, 4096.0, 29)
# The share of LLMs like the training ones that may depart by chance. Departures of the training LLMs
# have a long right tail (more clusters, more of it); an exponential tail is the simplest fit to it.
FALSE_DEPARTURE_RATE = 0.01
# An LLM with fewer answers than the training LLMs is tested against their counts thinned to its size:
# draws per training LLM, whose departures are averaged (a handful: the mean only has to steady one
# LLM's departure at that size, and each draw costs a likelihood over the grid), from a fixed seed so
# that a profile does not change between two computations.
THINNING_DRAWS = 3
THINNING_SEED = 0
# The Beta prior needs a mean strictly inside (0, 1); an all-right or all-wrong LLM sits at an edge.
CENTRE_BOUND = 1e-3


@dataclass(frozen=True)
class Smoothing:
    """How one LLM's profile was smoothed; ``as_json`` is what the profile row stores."""

    prior_strength: float  # the strength its profile uses
    tuned_prior_strength: float
    own_prior_strength: float  # â: the empirical-Bayes strength of its own counts
    departure: float  # nats by which â's likelihood beats the tuned strength's
    threshold: float  # the departure above which an LLM is profiled with its own strength
    departs: bool
    clusters: int  # the clusters whose counts were read

    def as_json(self) -> dict:
        """Plain JSON values; an infinite threshold (nothing may depart) is None."""
        return {
            key: (round(float(value), 4) if np.isfinite(value) else None) if isinstance(value, float) else value
            for key, value in asdict(self).items()
        }


def cluster_counts(memberships: np.ndarray, errors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """[2, K] (or [2, K, m] for errors [n, m]): answered weight n_k and error sum s_k per cluster, rows
    weighted by ``weights`` [n] (default 1)."""
    answered = answered_weights(errors, weights)
    cluster_weights = memberships.T @ answered
    weighted_errors = memberships.T @ (answered * np.where(np.isnan(errors), 0.0, errors))
    return np.stack([cluster_weights, weighted_errors])


def log_marginal_likelihood(counts: np.ndarray, centre, prior_strengths: np.ndarray) -> np.ndarray:
    """log p(s | n, a) for each a in ``prior_strengths`` (module docstring), from counts [2, K].

    ``centre`` is the prior mean: one value, or one per cluster [K].
    """
    weights, weighted_errors = counts
    weighted_errors = np.clip(weighted_errors, 0.0, weights)
    centre = np.clip(
        np.broadcast_to(np.asarray(centre, dtype=np.float64), weights.shape), CENTRE_BOUND, 1 - CENTRE_BOUND
    )
    a = np.asarray(prior_strengths, dtype=np.float64)[:, None]
    alpha, beta = a * centre, a * (1 - centre)
    terms = (
        gammaln(weighted_errors + alpha)
        + gammaln(weights - weighted_errors + beta)
        - gammaln(weights + a)
        - gammaln(alpha)
        - gammaln(beta)
        + gammaln(a)
    )
    return terms.sum(axis=1)


def own_prior_strength(counts: np.ndarray, centre, tuned_prior_strength: float) -> tuple[float, float]:
    """(â, departure): the grid's most likely strength (the tuned one among the candidates) and by how
    many nats the most likely strength no stronger than the tuned one beats it (module docstring)."""
    grid = np.append(PRIOR_STRENGTH_GRID, float(tuned_prior_strength))
    likelihood = log_marginal_likelihood(counts, centre, grid)
    weaker = grid <= tuned_prior_strength
    departure = float(likelihood[weaker].max() - likelihood[-1])
    return float(grid[int(np.argmax(likelihood))]), departure


def departure_threshold(
    training_counts: np.ndarray,
    training_centres: np.ndarray,
    tuned_prior_strength: float,
    answers: float | None = None,
) -> float:
    """The departure a new LLM must exceed (module docstring), from the training LLMs' counts [2, K, m]
    and centres [m]; infinite without training LLMs (nothing departs).

    A departure grows with the answers it is computed from, so an LLM with ``answers`` (its answered
    weight) fewer than a training LLM's is compared with that LLM's counts thinned to its size
    (``thinned_counts``, the mean over ``THINNING_DRAWS`` seeded draws): the level a new LLM like the
    training ones, with as many answers, exceeds by chance. None (or at least as many answers) compares the counts
    as they are."""
    m = training_counts.shape[2]
    if not m:
        return float("inf")
    rng = np.random.default_rng(THINNING_SEED)
    departures = []
    for j in range(m):
        counts = training_counts[:, :, j]
        total = float(counts[0].sum())
        if answers is None or answers >= total or total <= 0:
            departures.append(own_prior_strength(counts, training_centres[j], tuned_prior_strength)[1])
            continue
        at_size = []
        for _ in range(THINNING_DRAWS):
            thinned = thinned_counts(counts, answers / total, rng)
            centre = thinned[1].sum() / max(thinned[0].sum(), 1.0)
            at_size.append(own_prior_strength(thinned, centre, tuned_prior_strength)[1])
        # One departure per training LLM, as without thinning: the draws of one LLM are not independent
        # LLMs, and counting them as such would lower the predictive quantile below the intended rate.
        departures.append(float(np.mean(at_size)))
    n = len(departures)
    predictive_quantile = n * float(np.mean(departures)) * (FALSE_DEPARTURE_RATE ** (-1 / n) - 1)
    by_chance = float(chi2.ppf(1 - 2 * FALSE_DEPARTURE_RATE, df=1)) / 2
    return float(max(max(departures), predictive_quantile, by_chance))


def thinned_counts(counts: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """Counts [2, K] of a uniform sample of about ``keep`` of the answers behind ``counts`` (n_k, s_k):
    n_k' ~ Binomial(n_k, keep), s_k' ~ Hypergeometric(s_k wrong, n_k − s_k right, n_k')."""
    answered = np.rint(counts[0]).astype(np.int64)
    wrong = np.clip(np.rint(counts[1]).astype(np.int64), 0, answered)
    kept = rng.binomial(answered, min(max(keep, 0.0), 1.0))
    kept_wrong = rng.hypergeometric(wrong, answered - wrong, kept)
    return np.stack([kept, kept_wrong]).astype(np.float64)


def check_mode(mode: str) -> None:
    if mode not in SMOOTHING_MODES:
        raise ValueError(f"smoothing must be one of {', '.join(SMOOTHING_MODES)}, got {mode!r}")


def training_evidence(memberships: np.ndarray, validation_errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a fit keeps of its training LLMs for the threshold: counts [2, K, m] and overall errors [m]."""
    return cluster_counts(memberships, validation_errors), overall_error(validation_errors)


def smoothing_of(
    memberships: np.ndarray,
    errors: np.ndarray,
    *,
    mode: str,
    tuned_prior_strength: float,
    training_counts: np.ndarray | None,
    training_centres: np.ndarray | None,
    weights: np.ndarray | None = None,
) -> Smoothing:
    """The tuned strength, or the LLM's own if its errors [n] (rows weighted by ``weights``) on memberships
    [n, K] depart more than the training LLMs' do (module docstring). Without training counts
    (``mode="tuned"``, or a state stored without them) nothing departs."""
    check_mode(mode)
    counts, centre = cluster_counts(memberships, errors, weights), float(overall_error(errors, weights))
    own, departure = own_prior_strength(counts, centre, tuned_prior_strength)
    threshold = float("inf")
    if mode == "per_llm" and training_counts is not None:
        threshold = departure_threshold(training_counts, training_centres, tuned_prior_strength, float(counts[0].sum()))
    departs = departure > threshold
    return Smoothing(
        prior_strength=own if departs else float(tuned_prior_strength),
        tuned_prior_strength=float(tuned_prior_strength),
        own_prior_strength=own,
        departure=departure,
        threshold=threshold,
        departs=bool(departs),
        clusters=int(counts.shape[1]),
    )


# -- resolution: an LLM that departs may be profiled on finer clusters --------------------------------
# A strategy's clusters are tuned for LLMs like the training ones, and are coarse: a cluster may mix
# subjects (one of MMLU-Pro's is 78 % maths), so even an unsmoothed estimate there blurs a specialist's
# subject with its neighbours'. Each strategy therefore also keeps K-means maps at finer resolutions;
# an LLM that departs gets, at each, its errors shrunk with its own empirical-Bayes strength towards
# the strategy's own estimate over the fine cluster, and uses the resolution whose leave-one-out
# likelihood of its own validation answers is highest. The resolutions are set by the validation set
# alone: the finest it can profile and its halvings (``fine_sizes``), so a larger set offers finer maps.
FINE_LEVELS = 4
# On average per cluster: finer maps would be profiled from a handful of answers. Which map an LLM
# uses is its own leave-one-out likelihood's choice, so a map too fine for it is simply not chosen.
MIN_ANSWERS_PER_FINE_CLUSTER = 5


@dataclass(frozen=True)
class FineMaps:
    """K-means maps at finer resolutions (centroids stacked [ΣK, D]) and the training LLMs' counts on
    each (the departure test's threshold)."""

    centroids: np.ndarray
    sizes: list[int]
    training_counts: np.ndarray  # [2, ΣK, m] on every map, coarse to fine (or [2, K_finest, m]: the finest alone)
    training_centres: np.ndarray  # [m]

    @property
    def counts_every_map(self) -> bool:
        """Whether the training counts cover every map (else the finest alone)."""
        return self.training_counts.shape[1] == sum(self.sizes)

    def test_level(self, answers: float) -> int:
        """The map an LLM with ``answers`` (answered weight) is tested on for departure: the finest on which
        it holds ``MIN_ANSWERS_PER_FINE_CLUSTER`` answers per cluster on average, else the coarsest. A
        departure read on clusters that mostly hold one answer or none says nothing about how an LLM's
        clusters spread (a lone answer is as likely under any prior strength), so an LLM registered on
        50 prompts is tested on coarse clusters, one profiled on the whole validation set on the finest."""
        if not self.counts_every_map:
            return len(self.sizes) - 1
        fits = [r for r, k in enumerate(self.sizes) if answers >= MIN_ANSWERS_PER_FINE_CLUSTER * k]
        return fits[-1] if fits else 0

    def training_counts_at(self, level: int) -> np.ndarray:
        """[2, K_level, m]: the training LLMs' counts on map ``level``."""
        if not self.counts_every_map:
            return self.training_counts
        bounds = np.cumsum([0, *self.sizes])
        return self.training_counts[:, bounds[level] : bounds[level + 1]]


def fine_sizes(n_validation: int, base_clusters: int) -> list[int]:
    """Coarse to fine: the finest resolution the validation answers allow (``MIN_ANSWERS_PER_FINE_CLUSTER``
    per cluster on average) and its halvings, at most ``FINE_LEVELS`` of them, all finer than the
    strategy's own clusters."""
    sizes, k = [], n_validation // MIN_ANSWERS_PER_FINE_CLUSTER
    while k > base_clusters and len(sizes) < FINE_LEVELS:
        sizes.append(k)
        k //= 2
    return sizes[::-1]


def fit_fine_maps(
    train_embeddings, validation_embeddings, validation_errors, *, base_clusters: int, n_init: int, random_state
) -> FineMaps | None:
    """None when no finer resolution has enough validation prompts; the per-LLM strength then applies alone."""
    sizes = fine_sizes(len(validation_embeddings), base_clusters)
    if not sizes:
        return None
    centroids = [spherical_centroids(train_embeddings, k, n_init=n_init, random_state=random_state) for k in sizes]
    sizes = [len(c) for c in centroids]
    members = np.hstack(fine_memberships(validation_embeddings, np.vstack(centroids), sizes))
    counts, centres = training_evidence(members, validation_errors)
    return FineMaps(np.vstack(centroids), sizes, counts, centres)


def fine_memberships(embeddings: np.ndarray, centroids: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """One-hot memberships [n, K_r] per fine map, coarse to fine."""
    bounds = np.cumsum([0, *sizes])
    similarity = embeddings @ centroids.T
    return [one_hot(np.argmax(similarity[:, a:b], axis=1), b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def leave_one_out_log_likelihood(
    memberships: np.ndarray, errors: np.ndarray, prior: np.ndarray, strength: float, weights: np.ndarray | None = None
) -> float:
    """Mean log-likelihood of each answered prompt's error under its cluster's shrunk estimate without it
    (hard memberships [n, K], prior [K]; rows weighted by ``weights`` [n])."""
    answered = ~np.isnan(errors)
    row_weights = answered_weights(errors, weights)[answered]
    cluster = np.argmax(memberships[answered], axis=1)
    e = errors[answered]
    cluster_weights, weighted_errors = cluster_counts(memberships, errors, weights)
    predicted = (weighted_errors[cluster] - row_weights * e + strength * prior[cluster]) / np.maximum(
        cluster_weights[cluster] - row_weights + strength, 1e-9
    )
    return log_likelihood(predicted, e, row_weights)


def log_likelihood(predicted_errors: np.ndarray, errors: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean log-likelihood of the answered errors under predicted error rates, rows weighted by ``weights``."""
    answered = ~np.isnan(errors)
    predicted = np.clip(predicted_errors[answered], 1e-3, 1 - 1e-3)
    e = errors[answered]
    row_weights = answered_weights(errors, weights)[answered]
    if row_weights.sum() <= 0:
        return 0.0
    return float(np.average(e * np.log(predicted) + (1 - e) * np.log(1 - predicted), weights=row_weights))


def personal_tail(
    fine: FineMaps | None,
    validation_embeddings: np.ndarray,
    errors: np.ndarray,
    own_estimate: np.ndarray,
    *,
    mode: str,
    tuned_prior_strength: float,
    base_clusters: int,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, Smoothing]:
    """The part of a profile past the strategy's own Ψ: [Ψ at every fine map (ΣK_r), resolution index]
    (0: the strategy's own clusters, r: the r-th fine map), and the choice made.

    ``own_estimate`` [n_validation] is the strategy's own predicted error on the validation prompts; it
    is each fine cluster's prior. Without fine maps the tail is empty and nothing departs. ``weights``
    [n_validation] weighs the rows (module docstring).
    """
    if fine is None:
        return np.zeros(0), Smoothing(
            float(tuned_prior_strength),
            float(tuned_prior_strength),
            float(tuned_prior_strength),
            0.0,
            float("inf"),
            False,
            base_clusters,
        )
    members = fine_memberships(validation_embeddings, fine.centroids, fine.sizes)
    answered = answered_weights(errors, weights)
    level = fine.test_level(float(answered.sum()))
    choice = smoothing_of(
        members[level],
        errors,
        mode=mode,
        tuned_prior_strength=tuned_prior_strength,
        training_counts=fine.training_counts_at(level),
        training_centres=fine.training_centres,
        weights=weights,
    )
    psi, scores, strengths = [], [], []
    for memberships in members:
        cluster_weights = memberships.T @ answered
        prior = (memberships.T @ (answered * own_estimate)) / np.maximum(cluster_weights, 1e-9)
        prior = np.where(cluster_weights > 0, prior, float(overall_error(errors, weights)))
        if choice.departs:
            counts = cluster_counts(memberships, errors, weights)
            strength, _ = own_prior_strength(counts, prior, tuned_prior_strength)
        else:
            strength = float(tuned_prior_strength)
        psi.append(shrunk_cluster_errors(memberships, errors, strength, prior=prior, weights=weights))
        scores.append(leave_one_out_log_likelihood(memberships, errors, prior, strength, weights))
        strengths.append(strength)
    # The strategy's own estimate is a candidate too, scored on the answers it was computed from: an
    # in-sample likelihood favours it, so an LLM leaves its tuned profile only where finer clusters
    # explain its answers clearly better (a specialist's do; a generalist that merely varies more than
    # the training LLMs keeps its profile).
    own_score = log_likelihood(own_estimate, errors, weights)
    resolution = int(np.argmax([own_score, *scores])) if choice.departs else 0
    if resolution:
        choice = replace(choice, prior_strength=strengths[resolution - 1], clusters=fine.sizes[resolution - 1])
    else:
        choice = replace(choice, prior_strength=float(tuned_prior_strength), clusters=base_clusters, departs=False)
    return np.append(np.concatenate(psi), float(resolution)), choice


def personal_losses(
    losses: np.ndarray, prompt_embeddings: np.ndarray, tails: np.ndarray, fine: FineMaps | None
) -> np.ndarray:
    """The strategy's losses [n, m] with the columns of LLMs profiled at a fine resolution replaced."""
    if fine is None or tails.shape[1] == 0:
        return losses
    resolution = np.rint(tails[:, -1]).astype(int)
    if not resolution.any():
        return losses
    members = fine_memberships(prompt_embeddings, fine.centroids, fine.sizes)
    bounds = np.cumsum([0, *fine.sizes])
    losses = np.array(losses, dtype=np.float64)
    for j in np.flatnonzero(resolution):
        r = resolution[j] - 1
        losses[:, j] = members[r] @ tails[j, bounds[r] : bounds[r + 1]]
    return losses


class PerLLMProfiles:
    """What a clustered strategy adds for per-LLM profiles: fine maps fitted beside its own, a profile
    that is its own Ψ followed by ``personal_tail``'s, and losses that read the tail where chosen.

    The strategy provides ``smoothing``, ``prior_strength``, ``n_init`` and ``random_state``, and
    ``_own_psi(embeddings, errors, weights)`` (its own Ψ of one LLM, rows weighted by ``weights`` [n] or
    None), ``_own_width()`` (the length of that Ψ),
    ``_own_losses(embeddings, own_profiles)`` (linear in the profiles), ``_own_memberships(embeddings)``
    (each prompt's weight in each entry of that Ψ) and ``_base_clusters()`` (the clusters an LLM that keeps
    the strategy's own profile is said to be profiled on). The fine attributes are optional learned
    attributes: a state stored without them profiles as before.
    """

    fine_attributes = ("fine_centroids_", "fine_sizes_", "smoothing_counts_", "smoothing_centres_")

    def _fit_fine_maps(self, train_embeddings, validation_embeddings, validation_errors, base_clusters: int) -> None:
        check_mode(self.smoothing)
        fine = fit_fine_maps(
            train_embeddings,
            validation_embeddings,
            validation_errors,
            base_clusters=base_clusters,
            n_init=self.n_init,
            random_state=self.random_state,
        )
        if fine is None:
            dim, m = train_embeddings.shape[1], validation_errors.shape[1]
            fine = FineMaps(np.zeros((0, dim), np.float32), [], np.zeros((2, 0, m)), np.zeros(m))
        self.fine_centroids_, self.fine_sizes_ = fine.centroids, [int(k) for k in fine.sizes]
        self.smoothing_counts_, self.smoothing_centres_ = fine.training_counts, fine.training_centres

    def _fine_maps(self) -> FineMaps | None:
        if not list(getattr(self, "fine_sizes_", None) or []):
            return None
        return FineMaps(self.fine_centroids_, list(self.fine_sizes_), self.smoothing_counts_, self.smoothing_centres_)

    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None):
        return self._personal_profile(validation_embeddings, validation_errors, sample_weight)[0]

    def _profile_choice(self, validation_embeddings, validation_errors, sample_weight=None):
        return self._personal_profile(validation_embeddings, validation_errors, sample_weight)[1].as_json()

    def _predict_loss(self, prompt_embeddings, profiles):
        return self._personal_losses(prompt_embeddings, profiles)

    def _evidence(self, validation_embeddings, answered_weights):
        # In the layout of the strategy's own Ψ, read as it is: the answered weight of each cluster
        # is what its estimate's sums run over (profiles.py). An LLM profiled on a finer map is
        # counted on the strategy's own clusters, which hold at least as much of its evidence.
        # Every fine map's cells follow, coarse to fine (exploration reads one of them:
        # ``fine_evidence_at``).
        own = self._own_memberships(validation_embeddings).T @ answered_weights
        fine = self._fine_maps()
        if fine is None:
            return own
        members = fine_memberships(validation_embeddings, fine.centroids, fine.sizes)
        return np.concatenate([own, *(m.T @ answered_weights for m in members)])

    def _evidence_at(self, prompt_embeddings, evidence):
        return self._own_losses(prompt_embeddings, evidence[:, : self._own_width()])

    def _fine_blocks(self, width: int) -> list[tuple[int, slice]]:
        """(fine map index, its entries) of each fine map an evidence vector of ``width`` entries holds,
        coarse to fine: every map, or the finest alone (evidence that holds only that map's cells), or
        none."""
        fine, own = self._fine_maps(), self._own_width()
        if fine is None:
            return []
        if width == own + sum(fine.sizes):
            bounds = own + np.cumsum([0, *fine.sizes])
            return [(r, slice(int(a), int(b))) for r, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        if width == own + fine.sizes[-1]:
            return [(len(fine.sizes) - 1, slice(own, width))]
        return []

    def _evidence_level(self, evidence):
        blocks = self._fine_blocks(evidence.shape[-1])
        if not blocks:
            return 0
        answers = float(evidence[blocks[-1][1]].sum())
        level = self._fine_maps().test_level(answers) if np.isfinite(answers) else len(blocks) - 1
        stored = [r for r, _ in blocks]
        return stored.index(level) if level in stored else len(blocks) - 1

    def _fine_evidence_at(self, prompt_embeddings, evidence, levels):
        blocks = self._fine_blocks(evidence.shape[1])
        if not blocks:
            return self._evidence_at(prompt_embeddings, evidence)
        fine = self._fine_maps()
        members = fine_memberships(prompt_embeddings, fine.centroids, fine.sizes)
        out = np.zeros((len(prompt_embeddings), len(evidence)))
        for level in np.unique(levels):
            llms = np.flatnonzero(levels == level)
            r, cells = blocks[level]
            out[:, llms] = members[r] @ evidence[llms, cells].T
        return out

    def _fine_cells(self, evidence, level):
        blocks = self._fine_blocks(evidence.shape[-1])
        if not blocks:
            return evidence[..., : self._own_width()]
        return evidence[..., blocks[level][1]]

    def _personal_profile(self, validation_embeddings, validation_errors, weights=None):
        """(profile, Smoothing) for one LLM: the strategy's own Ψ followed by ``personal_tail``'s."""
        own_psi = self._own_psi(validation_embeddings, validation_errors, weights)
        own_estimate = self._own_losses(validation_embeddings, own_psi[None, :])[:, 0]
        tail, choice = personal_tail(
            self._fine_maps(),
            validation_embeddings,
            validation_errors,
            own_estimate,
            mode=self.smoothing,
            tuned_prior_strength=self.prior_strength,
            base_clusters=self._base_clusters(),
            weights=weights,
        )
        return np.concatenate([own_psi, tail]), choice

    def _personal_losses(self, prompt_embeddings, profiles):
        width = self._own_width()
        losses = self._own_losses(prompt_embeddings, profiles[:, :width])
        return personal_losses(losses, prompt_embeddings, profiles[:, width:], self._fine_maps())

"""A cheap surrogate of a genome's score: Bayesian linear regression on genome features.

The heuristic brain generates many children of its best candidates, asks the surrogate,
fitted to every scored genome of the task, which child is expected to improve most on the
best score so far (expected improvement), and proposes that one. With few scores the
surrogate is unsure everywhere except near what was tried, so its picks explore; as scores
accumulate they move towards what the data credit. The fit takes well under a millisecond
at the pool sizes the planner passes (at most 50 candidates).

The features (:data:`FEATURES`) describe a genome's composition generically (shares of each
mixer and channel, width, heads, depth, norm, residual, whether a local mixer feeds an
attention layer, ...), so nothing in them knows what a particular task rewards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from archlab.search.genome import HEADED_MIXERS, MIXERS, Genome

FEATURES: tuple[str, ...] = (
    *(f"{m} share" for m in MIXERS),
    *(f"any {m}" for m in MIXERS),
    "mlp share",
    "gated_mlp share",
    "width",
    "heads",
    "depth",
    "rmsnorm",
    "post_norm",
    "mlp_ratio",
    "conv_kernel",
    "attention width",
    "local mixer before attention",
    "width x local before attention",
)

#: Mixers that see only nearby positions (or a decaying summary): one of them ahead of an
#: attention layer hands it shifted tokens, as in H3 and Hyena, so the order of the stack
#: is a feature, not only its shares.
_LOCAL_MIXERS = frozenset({"causal_conv", "gated_recurrence"})

#: Grids of the prior precision of the weights and of the noise variance (scores scaled to
#: unit variance) from which the fit keeps the pair with the highest evidence.
_ALPHAS = (0.3, 1.0, 3.0, 10.0)
_NOISES = (0.05, 0.2, 0.5, 1.0)


def features(genome: Genome) -> list[float]:
    """The genome as :data:`FEATURES`, each about 0..1; unused hyperparameters are 0."""
    # no canonical() needed: the hyperparameters it resets are the ones zeroed here
    g = genome
    n = len(g.blocks)
    mixers = [b.mixer for b in g.blocks]
    channels = [b.channel for b in g.blocks]
    width = (g.d_model - 32) / 96
    headed = [m in HEADED_MIXERS for m in mixers]
    attention = sum(headed) / n
    first_attention = headed.index(True) if attention else 0
    local_first = float(any(m in _LOCAL_MIXERS for m in mixers[:first_attention]))
    return [
        *(mixers.count(m) / n for m in MIXERS),
        *(float(m in mixers) for m in MIXERS),
        channels.count("mlp") / n,
        channels.count("gated_mlp") / n,
        width,
        math.log2(g.n_heads) / 3 if g.uses_heads else 0.0,
        (n - 1) / 3,
        float(g.norm == "rmsnorm"),
        float(g.residual == "post_norm"),
        (g.mlp_ratio - 1) / 3 if g.uses_mlp_ratio else 0.0,
        (g.conv_kernel - 2) / 6 if g.uses_conv_kernel else 0.0,
        width * attention,
        local_first,
        width * local_first,
    ]


@dataclass(frozen=True)
class Prediction:
    mean: float  # predicted score
    std: float  # uncertainty of that prediction (not of a single noisy trial)
    improvement: float  # expected improvement over the best score the fit saw
    #: the features that raise (positive) or lower the prediction most against the
    #: average scored genome, with their contribution to the score, largest first
    reasons: list[tuple[str, float]]


@dataclass(frozen=True, eq=False)
class Surrogate:
    """Bayesian linear regression of score on :func:`features`; made by :meth:`fit`."""

    x_mean: np.ndarray  # the scored genomes' average features
    y_mean: float
    y_scale: float  # scores are fitted as (score - y_mean) / y_scale
    weights: np.ndarray  # posterior mean of the weights
    covariance: np.ndarray  # posterior covariance of the weights
    intercept_var: float
    best: float  # the best score fitted
    n: int  # how many scores were fitted

    @classmethod
    def fit(cls, genomes: Sequence[Genome], scores: Sequence[float]) -> Surrogate | None:
        """The fit to the finite scores (higher is better), or None if there is none.

        Scores are centred and scaled to unit variance, the weights get a Gaussian prior,
        and the prior's precision and the noise variance are chosen from small grids by
        the evidence (type-II maximum likelihood): deterministic, no tuning per task.
        """
        pairs = [(g, s) for g, s in zip(genomes, scores, strict=True) if math.isfinite(s)]
        if not pairs:
            return None
        x = np.array([features(g) for g, _ in pairs], dtype=float)
        y = np.array([s for _, s in pairs], dtype=float)
        n, d = x.shape
        x_mean = x.mean(axis=0)
        xc = x - x_mean
        y_mean = float(y.mean())
        spread = float(y.std())
        y_scale = spread if spread > 1e-12 else max(abs(y_mean), 1.0)
        t = (y - y_mean) / y_scale
        # one eigendecomposition serves every grid point: the posterior precision
        # alpha I + beta X'X shares X'X's eigenvectors, with eigenvalues alpha + beta * l
        eigenvalues, vectors = np.linalg.eigh(xc.T @ xc)
        eigenvalues = np.maximum(eigenvalues, 0.0)
        projected = vectors.T @ (xc.T @ t)
        best_fit: tuple[float, np.ndarray, np.ndarray, float] | None = None
        for alpha in _ALPHAS:
            for noise in _NOISES:
                beta = 1.0 / noise
                precision = alpha + beta * eigenvalues
                w = vectors @ (beta * projected / precision)
                residual = t - xc @ w
                evidence = 0.5 * (
                    d * math.log(alpha)
                    + n * math.log(beta)
                    - beta * float(residual @ residual)
                    - alpha * float(w @ w)
                    - float(np.log(precision).sum())
                )
                if best_fit is None or evidence > best_fit[0]:
                    covariance = (vectors / precision) @ vectors.T
                    best_fit = (evidence, w, covariance, noise / n)
        assert best_fit is not None
        _, w, covariance, intercept_var = best_fit
        return cls(x_mean, y_mean, y_scale, w, covariance, intercept_var, float(y.max()), n)

    def predict(self, genomes: Sequence[Genome]) -> list[Prediction]:
        x = np.array([features(g) for g in genomes], dtype=float) - self.x_mean
        means = self.y_mean + self.y_scale * (x @ self.weights)
        variances = np.einsum("ij,jk,ik->i", x, self.covariance, x) + self.intercept_var
        stds = self.y_scale * np.sqrt(np.maximum(variances, 0.0))
        contributions = self.y_scale * x * self.weights
        top = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :3]
        return [
            Prediction(
                float(mean),
                float(std),
                _expected_improvement(mean, std, self.best),
                [(FEATURES[i], float(row[i])) for i in order],
            )
            for mean, std, row, order in zip(means, stds, contributions, top, strict=True)
        ]


def _expected_improvement(mean: float, std: float, best: float) -> float:
    """E[max(f - best, 0)] for f ~ N(mean, std^2)."""
    if std <= 0.0:
        return max(float(mean) - best, 0.0)
    z = (mean - best) / std
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float((mean - best) * cdf + std * pdf)

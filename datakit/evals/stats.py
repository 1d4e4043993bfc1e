"""Paired statistics for comparing two eval runs item by item: numpy and math only, seeded.

Two runs of a suite score the same items, so every test here is paired: the per-item difference
carries far less noise than the two metric values do on their own. Items that share a cluster (the
paraphrases of one fact, one `group_id`) are not independent: with clusters, standard errors are
cluster-robust, the bootstrap resamples whole clusters and the randomization test flips whole clusters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Verdict = Literal["pass", "fail", "underpowered"]
_CHUNK = 256  # resamples per block, so 10k items x 2k resamples never sits in memory at once


@dataclass(frozen=True)
class Paired:
    """Scores of the items both runs have, in one order, and what could not be matched."""

    ids: list[str]
    base: np.ndarray
    cand: np.ndarray
    weights: np.ndarray | None
    only_base: list[str]
    only_cand: list[str]
    clusters: np.ndarray | None = None  # cluster index per item; None when every item stands alone

    @property
    def n_unmatched(self) -> int:
        return len(self.only_base) + len(self.only_cand)

    @property
    def n_clusters(self) -> int:
        return len(self.ids) if self.clusters is None else int(np.unique(self.clusters).size)

    @property
    def diffs(self) -> np.ndarray:
        return self.cand - self.base

    @property
    def binary(self) -> bool:
        both = np.concatenate([self.base, self.cand])
        return bool(np.all((both == 0) | (both == 1)))


def pair_scores(base: Mapping[str, float], cand: Mapping[str, float],
                weights: Mapping[str, float] | None = None, clusters: Mapping[str, str | None] | None = None) -> Paired:
    """Match two `{item id: score}` maps by id; ids present in only one run are listed, not used.
    `clusters` maps an item id to its cluster (None: the item is its own); kept only when some cluster
    holds more than one matched item."""
    ids = sorted(set(base) & set(cand))
    w = np.array([weights.get(i, 1.0) for i in ids], dtype=float) if weights else None
    codes = None
    if clusters:
        labels = [clusters.get(i) or f"\0{i}" for i in ids]  # an item without a cluster is its own
        _, codes = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
        codes = codes if np.unique(codes).size < len(ids) else None
    return Paired(ids=ids, base=np.array([base[i] for i in ids], dtype=float),
                  cand=np.array([cand[i] for i in ids], dtype=float), weights=w,
                  only_base=sorted(set(base) - set(cand)), only_cand=sorted(set(cand) - set(base)), clusters=codes)


def _cluster_totals(d: np.ndarray, w: np.ndarray | None, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the weighted sum of differences and the total weight."""
    ww = np.ones_like(d) if w is None else w
    return np.bincount(clusters, weights=ww * d), np.bincount(clusters, weights=ww)


def mean_se(p: Paired) -> float:
    """Standard error of the (weighted) mean difference: cluster-robust (CR1) with clusters, else the usual
    one. Identical runs give 0."""
    d = p.diffs
    if d.size < 2:
        return math.nan if d.size == 0 else 0.0
    clusters = p.clusters if p.clusters is not None else np.arange(d.size)
    w = np.ones_like(d) if p.weights is None else p.weights
    mean = float(np.sum(w * d) / np.sum(w))
    resid = np.bincount(clusters, weights=w * (d - mean))
    g = resid.size
    if g < 2:
        return 0.0
    return float(math.sqrt(g / (g - 1) * np.sum(resid**2)) / np.sum(w))


def design_effect(p: Paired) -> float:
    """How much the clusters inflate the variance of the mean difference (1 without clusters, never below 1)."""
    if p.clusters is None:
        return 1.0
    iid = mean_se(Paired(p.ids, p.base, p.cand, p.weights, p.only_base, p.only_cand))
    return max(1.0, (mean_se(p) / iid) ** 2) if iid > 0 else 1.0


def _weighted_means(x: np.ndarray, w: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    if w is None:
        return x[idx].mean(axis=1)
    return (x[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)


def bootstrap_mean_ci(diffs: np.ndarray, *, weights: np.ndarray | None = None, n_boot: int = 2000,
                      alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap CI for the (optionally weighted) mean of paired differences: (mean, low, high).

    Resampling whole items keeps each item's pair together; identical runs give (0, 0, 0).
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(np.average(d, weights=weights))
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, _CHUNK):
        idx = rng.integers(0, d.size, size=(min(_CHUNK, n_boot - start), d.size))
        stats.append(_weighted_means(d, weights, idx))
    lo, hi = np.quantile(np.concatenate(stats), [alpha / 2, 1 - alpha / 2])
    return (mean, float(lo), float(hi))


def paired_bootstrap(p: Paired, *, n_boot: int = 2000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float, float]:
    """CI for mean(cand - base) over the matched items of `p`; whole clusters are resampled when it has them."""
    if p.clusters is None:
        return bootstrap_mean_ci(p.diffs, weights=p.weights, n_boot=n_boot, alpha=alpha, seed=seed)
    sums, wsum = _cluster_totals(p.diffs, p.weights, p.clusters)
    mean = float(sums.sum() / wsum.sum())
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, _CHUNK):
        idx = rng.integers(0, sums.size, size=(min(_CHUNK, n_boot - start), sums.size))
        stats.append(sums[idx].sum(axis=1) / wsum[idx].sum(axis=1))
    lo, hi = np.quantile(np.concatenate(stats), [alpha / 2, 1 - alpha / 2])
    return (mean, float(lo), float(hi))


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: b = base pass & cand fail, c = base fail & cand pass.

    Under "no change" each of the b + c discordant items flips either way with probability 1/2.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def discordant(p: Paired) -> tuple[int, int]:
    """(b, c) for McNemar from binary scores: b = base 1 & cand 0, c = base 0 & cand 1."""
    return int(np.sum((p.base == 1) & (p.cand == 0))), int(np.sum((p.base == 0) & (p.cand == 1)))


def sign_flip_p(diffs: np.ndarray, *, weights: np.ndarray | None = None, n_perm: int = 5000,
                seed: int = 0) -> float:
    """Two-sided paired randomization test for continuous scores (perplexity): flip each item's sign."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    observed = abs(float(np.sum(w * d) / np.sum(w))) - 1e-12
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, _CHUNK):
        signs = rng.choice([-1.0, 1.0], size=(min(_CHUNK, n_perm - start), d.size))
        hits += int(np.sum(np.abs((signs * (w * d)).sum(axis=1) / w.sum()) >= observed))
    return (hits + 1) / (n_perm + 1)


def cluster_sign_flip_p(p: Paired, *, n_perm: int = 5000, seed: int = 0) -> float:
    """Two-sided randomization test that flips the sign of whole clusters (a cluster's items move together)."""
    assert p.clusters is not None
    sums, wsum = _cluster_totals(p.diffs, p.weights, p.clusters)
    return sign_flip_p(sums / wsum, weights=wsum, n_perm=n_perm, seed=seed)


def paired_p(p: Paired, *, n_perm: int = 5000, seed: int = 0) -> tuple[float, str]:
    """The right paired test for the scores: with clusters a cluster sign-flip test; else exact McNemar for
    pass/fail and a sign-flip test for continuous scores."""
    if p.clusters is not None:
        return cluster_sign_flip_p(p, n_perm=n_perm, seed=seed), f"cluster sign-flip ({p.n_clusters} clusters)"
    if p.binary:
        return mcnemar(*discordant(p)), "mcnemar"
    return sign_flip_p(p.diffs, weights=p.weights, n_perm=n_perm, seed=seed), "sign-flip"


def binom_tail(k: int, n: int, p0: float, *, upper: bool) -> float:
    """One-sided exact binomial p-value: P(X >= k) when `upper`, else P(X <= k), X ~ Bin(n, p0)."""
    ks = range(k, n + 1) if upper else range(0, k + 1)
    return min(1.0, sum(math.comb(n, i) * p0**i * (1 - p0) ** (n - i) for i in ks))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (family-wise error control)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def non_inferiority(ci_low: float, ci_high: float, margin: float, *, higher_is_better: bool) -> Verdict:
    """Verdict for a CI of a change (candidate minus reference) against an allowed worsening `margin` >= 0.

    pass: the CI's worse bound is within the margin. fail: the whole CI is beyond it.
    underpowered: the CI straddles the margin and is wider than the margin (more items needed).
    A narrow CI that straddles is a fail: the data is precise and still cannot rule the breach out.
    """
    worse, better = (-ci_low, -ci_high) if higher_is_better else (ci_high, ci_low)  # as losses
    if worse <= margin:
        return "pass"
    if better > margin:
        return "fail"
    return "underpowered" if (ci_high - ci_low) > margin else "fail"


def _log_softmax(x: np.ndarray) -> np.ndarray:
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return x - top - np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def mean_kl(base_logprobs: np.ndarray, cand_logprobs: np.ndarray) -> float:
    """Mean over positions of KL(base || cand) in nats, from log-probs shaped (..., vocab).

    Inputs are renormalized, so raw logits work too; vocabulary entries the base gives zero mass add 0.
    """
    lb, lc = np.asarray(base_logprobs, dtype=float), np.asarray(cand_logprobs, dtype=float)
    if lb.shape != lc.shape:
        raise ValueError(f"mean_kl: base log-probs have shape {lb.shape} but candidate {lc.shape}; "
                         "pass both over the same positions and vocabulary")
    lb, lc = _log_softmax(lb), _log_softmax(lc)
    pb = np.exp(lb)
    with np.errstate(invalid="ignore"):
        terms = np.where(pb > 0, pb * (lb - lc), 0.0)
    return float(np.mean(np.sum(terms, axis=-1)))

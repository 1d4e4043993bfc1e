"""One metric, baseline vs one candidate, paired on item ids: the change, its CI, the test, and how small a
drop the comparison could have seen (the MDE).

Tests: exact McNemar for pass/fail items; a sign-flip randomization test for continuous scores (NLL per
token, sampled pass rates); with paraphrase clusters (items sharing a probe `group_id`), a sign-flip test over
whole clusters and a cluster bootstrap. The MDE is a drop (in the metric's units, in its worse direction) that
the test would detect with the given power at alpha, from the items, their discordance or spread, and the
clusters' design effect; see `datakit.evals.power`.
"""

from __future__ import annotations

import math
import zlib

from pydantic import BaseModel, Field

from datakit.evals import power, stats
from datakit.evals.results import EvalResults, metric_names

LOWER_IS_BETTER = {"rate", "nll", "loss", "ppl", "perplexity", "kl", "answer_nll"}


def higher_is_better(metric: str) -> bool:
    """accuracy / pass_rate go up when a model improves; bleed.rate and NLL go down."""
    return not metric.startswith("perplexity.") and metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER


def metric_scores(res: EvalResults, metric: str) -> tuple[dict[str, float], dict[str, float] | None,
                                                          dict[str, str | None]]:
    """Per-item scores behind `metric` (the same buckets as results.aggregate), token weights for a pooled NLL,
    and each item's cluster (its probe's group_id)."""
    scores: dict[str, float] = {}
    tokens: dict[str, float] = {}
    clusters: dict[str, str | None] = {}
    for it in res.items:
        if metric in metric_names(it):
            scores[it.id] = it.score
            clusters[it.id] = it.cluster
            if it.tokens:
                tokens[it.id] = float(it.tokens)
    weighted = (metric.endswith(".nll") or metric.startswith("perplexity.")) and scores and len(tokens) == len(scores)
    return scores, (tokens if weighted else None), clusters


class MetricDiff(BaseModel):
    """One metric, baseline vs one candidate: values, the paired change with its CI, the test and the MDE."""

    metric: str
    higher_is_better: bool
    base_value: float | None = None
    base_stderr: float | None = None
    cand_value: float | None = None
    cand_stderr: float | None = None
    n: int = Field(0, description="items matched by id in both runs")
    only_base: int = 0
    only_cand: int = 0
    delta: float | None = Field(None, description="candidate value minus baseline value")
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None
    se: float | None = Field(None, description="standard error of the paired change (cluster-robust with clusters)")
    binary: bool = Field(False, description="pass/fail items (McNemar and the discordance-based MDE apply)")
    discordance: float | None = Field(None, description="share of matched items whose pass/fail differs")
    n_clusters: int | None = Field(None, description="independent clusters, when items share a group_id")
    design_effect: float = Field(1.0, description="variance inflation from clusters (1: independent items)")
    mde: float | None = Field(None, description="smallest worsening the comparison detects at alpha and the "
                                                "given power, in the metric's units")
    alpha: float = 0.05
    power: float = 0.8

    def items_needed(self, margin: float) -> int | None:
        """Paired items (from the same population) that would make the MDE reach `margin` (metric units)."""
        if margin <= 0 or self.mde is None or not self.n or not math.isfinite(self.mde):
            return None
        if self.binary:
            return math.ceil(power.items_binary(margin, self.discordance or 0.0, alpha=self.alpha,
                                                power=self.power) * self.design_effect)
        return max(2, math.ceil(self.n * (self.mde / margin) ** 2))


def metric_seed(seed: int, metric: str) -> int:
    return seed + zlib.crc32(metric.encode())  # per metric, so results do not depend on metric order


def diff_metric(base: EvalResults, cand: EvalResults, metric: str, *, seed: int = 0, n_boot: int = 2000,
                alpha: float = 0.05, power_target: float = 0.8) -> MetricDiff:
    bm, cm = base.metrics.get(metric), cand.metrics.get(metric)
    d = MetricDiff(metric=metric, higher_is_better=higher_is_better(metric), alpha=alpha, power=power_target,
                   base_value=bm and bm.value, base_stderr=bm and bm.stderr,
                   cand_value=cm and cm.value, cand_stderr=cm and cm.stderr)
    if bm is None or cm is None:
        return d
    d.delta = cm.value - bm.value
    (bs, bw, bc), (cs, cw, cc) = metric_scores(base, metric), metric_scores(cand, metric)
    paired = stats.pair_scores(bs, cs, weights=bw or cw, clusters={**bc, **cc})
    d.n, d.only_base, d.only_cand = len(paired.ids), len(paired.only_base), len(paired.only_cand)
    if paired.ids:
        _, d.ci_low, d.ci_high = stats.paired_bootstrap(paired, n_boot=n_boot, alpha=alpha, seed=metric_seed(seed, metric))
        d.p_value, d.test = stats.paired_p(paired, seed=metric_seed(seed, metric))
        _power(d, paired, alpha, power_target)
        return d
    # No item-level scores (e.g. an lm-eval metric): fall back to an unpaired normal approximation.
    se = math.hypot(bm.stderr, cm.stderr)
    d.ci_low, d.ci_high, d.test = d.delta - power.z(1 - alpha / 2) * se, d.delta + power.z(1 - alpha / 2) * se, \
        "normal (unpaired)"
    d.p_value = 2 * stats.normal_sf(abs(d.delta) / se) if se > 0 else (1.0 if d.delta == 0 else 0.0)
    d.se, d.n = se, min(bm.n, cm.n)
    d.mde = power.mde_continuous(se, alpha=alpha, power=power_target) if d.n > 1 else math.inf
    return d


def _power(d: MetricDiff, p: stats.Paired, alpha: float, target: float) -> None:
    """Fill se, discordance, clusters, design effect and the MDE of a paired comparison."""
    d.se, d.design_effect, d.binary = stats.mean_se(p), stats.design_effect(p), p.binary
    d.n_clusters = p.n_clusters if p.clusters is not None else None
    if d.binary:
        d.discordance = float(sum(stats.discordant(p))) / d.n
        d.mde = power.mde_binary(d.n / d.design_effect, d.discordance, alpha=alpha, power=target)
    else:
        d.mde = power.mde_continuous(d.se, alpha=alpha, power=target) if d.n > 1 else math.inf

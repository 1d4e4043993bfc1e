"""Gates: thresholds a candidate run must meet against the baseline, judged with paired statistics.

A gate file (see recipes/gates/default-gate.yaml):
    holm: true                    # Holm-correct the p-values across the gates of one candidate
    gates:
      - {metric: general.accuracy, max_drop: 0.02, require_significance: true}
      - {metric: identity.pass_rate, min: 0.95}
      - {metric: bleed.rate, max: 0.05}
      - {metric: perplexity.nll, max_rise_pct: 5, noninferiority: true}
Relative gates (max_drop, max_rise, max_drop_pct, max_rise_pct) compare the candidate with the
baseline on the items both runs share; absolute gates (min, max) judge the candidate's own value.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datakit.errors import DatakitError
from datakit.evals import stats
from datakit.evals.results import EvalResults, metric_names
from datakit.specfile import load_spec_file

# kind -> (relative to base, in percent of base, higher is better for the gated quantity)
KINDS: dict[str, tuple[bool, bool, bool]] = {
    "max_drop": (True, False, True), "max_rise": (True, False, False),
    "max_drop_pct": (True, True, True), "max_rise_pct": (True, True, False),
    "min": (False, False, True), "max": (False, False, False),
}
LOWER_IS_BETTER = {"rate", "nll", "loss", "ppl", "perplexity", "kl"}


def higher_is_better(metric: str) -> bool:
    """accuracy / pass_rate go up when a model improves; bleed.rate and NLL go down."""
    return not metric.startswith("perplexity.") and metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER


def metric_scores(res: EvalResults, metric: str) -> tuple[dict[str, float], dict[str, float] | None]:
    """Per-item scores behind `metric` (the same buckets as results.aggregate), and token weights for NLL."""
    scores: dict[str, float] = {}
    tokens: dict[str, float] = {}
    for it in res.items:
        if metric in metric_names(it):
            scores[it.id] = it.score
            if it.tokens:
                tokens[it.id] = float(it.tokens)
    weighted = (metric.endswith(".nll") or metric.startswith("perplexity.")) and scores and len(tokens) == len(scores)
    return scores, (tokens if weighted else None)


class MetricDiff(BaseModel):
    """One metric, baseline vs one candidate: values, the paired change with its CI, and the test."""

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


def _seed(seed: int, metric: str) -> int:
    return seed + zlib.crc32(metric.encode())  # per metric, so results do not depend on metric order


def diff_metric(base: EvalResults, cand: EvalResults, metric: str, *, seed: int = 0, n_boot: int = 2000,
                alpha: float = 0.05) -> MetricDiff:
    bm, cm = base.metrics.get(metric), cand.metrics.get(metric)
    d = MetricDiff(metric=metric, higher_is_better=higher_is_better(metric),
                   base_value=bm and bm.value, base_stderr=bm and bm.stderr,
                   cand_value=cm and cm.value, cand_stderr=cm and cm.stderr)
    if bm is None or cm is None:
        return d
    d.delta = cm.value - bm.value
    (bs, bw), (cs, cw) = metric_scores(base, metric), metric_scores(cand, metric)
    paired = stats.pair_scores(bs, cs, weights=bw or cw)
    d.n, d.only_base, d.only_cand = len(paired.ids), len(paired.only_base), len(paired.only_cand)
    if paired.ids:
        _, d.ci_low, d.ci_high = stats.paired_bootstrap(paired, n_boot=n_boot, alpha=alpha, seed=_seed(seed, metric))
        d.p_value, d.test = stats.paired_p(paired, seed=_seed(seed, metric))
        return d
    # No item-level scores (e.g. an lm-eval metric): fall back to an unpaired normal approximation.
    se = math.hypot(bm.stderr, cm.stderr)
    z = 1.959963984540054
    d.ci_low, d.ci_high, d.test = d.delta - z * se, d.delta + z * se, "normal (unpaired)"
    if se > 0:
        d.p_value = 2 * stats.normal_sf(abs(d.delta) / se)
    else:
        d.p_value = 1.0 if d.delta == 0 else 0.0
    return d


class GateRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    max_drop: float | None = Field(None, ge=0, description="largest allowed fall, in the metric's units")
    max_rise: float | None = Field(None, ge=0)
    max_drop_pct: float | None = Field(None, ge=0, description="largest allowed fall, percent of the baseline")
    max_rise_pct: float | None = Field(None, ge=0)
    min: float | None = None
    max: float | None = None
    require_significance: bool = Field(
        False, description="a breach fails only when the paired test rejects 'no change'")
    noninferiority: bool = Field(False, description="judge the CI: pass / fail / underpowered")

    @model_validator(mode="after")
    def _one_threshold(self) -> GateRule:
        set_ = [k for k in KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"gate for {self.metric!r} sets {set_ or 'no threshold'}; set exactly one of "
                             f"{', '.join(KINDS)}")
        if self.require_significance and self.noninferiority:
            raise ValueError(f"gate for {self.metric!r}: choose require_significance or noninferiority, not both")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def limit(self) -> float:
        return float(getattr(self, self.kind))

    def describe(self) -> str:
        flag = " (significance)" if self.require_significance else " (non-inferiority)" if self.noninferiority else ""
        return f"{self.metric} {self.kind} {self.limit:g}{flag}"


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gates: list[GateRule] = Field(min_length=1)
    holm: bool = Field(False, description="Holm-adjust p-values across the gates of each candidate")
    alpha: float = Field(0.05, gt=0, lt=1)
    seed: int = 0
    n_boot: int = Field(2000, ge=100)


def load_gate(path: Path) -> GateSpec:
    """A gate YAML; see recipes/gates/default-gate.yaml."""
    return load_spec_file(path, GateSpec, "gate", "gate.schema.json")


class GateResult(BaseModel):
    candidate: str
    metric: str
    rule: str
    kind: str
    limit: float
    base_value: float | None
    cand_value: float
    change: float = Field(description="gate units: change vs base (abs or %), or candidate minus the limit")
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float | None = None
    test: str
    n: int
    n_unmatched: int = 0
    breach: bool
    significant: bool | None = None
    verdict: Literal["pass", "fail", "underpowered"]
    status: str = Field(description="verdict, or 'breach (not significant)'")
    message: str


def _missing(metric: str, res: EvalResults, role: str) -> DatakitError:
    return DatakitError(f"gate metric {metric!r} is not in the {role} run ({res.model}, suite {res.suite}); "
                        f"available: {', '.join(sorted(res.metrics)) or 'none'}. Fix the metric name in the gate file")


def _absolute(rule: GateRule, cand: EvalResults, spec: GateSpec) -> tuple[float, float, float, float, str, int]:
    """(value - limit, CI low, CI high, p, test, n) for a min/max gate on the candidate alone."""
    m = cand.metrics[rule.metric]
    scores, w = metric_scores(cand, rule.metric)
    x = np.array(list(scores.values()), dtype=float)
    lower_bad = rule.kind == "min"
    if x.size:
        _, lo, hi = stats.bootstrap_mean_ci(x, weights=None if w is None else np.array(list(w.values())),
                                            n_boot=spec.n_boot, alpha=spec.alpha, seed=_seed(spec.seed, rule.metric))
    else:
        lo, hi = m.value - 1.96 * m.stderr, m.value + 1.96 * m.stderr
    if x.size and np.all((x == 0) | (x == 1)) and 0 <= rule.limit <= 1:
        p, test = stats.binom_tail(int(x.sum()), x.size, rule.limit, upper=not lower_bad), "binomial"
    else:
        z = (rule.limit - m.value) / m.stderr if m.stderr > 0 else math.copysign(math.inf, rule.limit - m.value)
        p, test = stats.normal_sf(z if lower_bad else -z), "normal"
    return m.value - rule.limit, lo - rule.limit, hi - rule.limit, p, test, m.n


def _judge(rule: GateRule, spec: GateSpec, cand_name: str, base: EvalResults, cand: EvalResults,
           diff: MetricDiff | None) -> GateResult:
    relative, pct, up_good = KINDS[rule.kind]
    if relative and diff is not None and diff.delta is not None and diff.base_value is not None:
        if pct and diff.base_value == 0:
            raise DatakitError(f"gate {rule.describe()}: the baseline value is 0, so a percent change is undefined; "
                               f"use {rule.kind.removesuffix('_pct')} (absolute units) for this metric")
        scale = 100.0 / abs(diff.base_value) if pct else 1.0
        change, lo, hi = diff.delta * scale, (diff.ci_low or 0.0) * scale, (diff.ci_high or 0.0) * scale
        n = diff.n or cand.metrics[rule.metric].n  # unpaired fallback: the candidate's own count
        p, test, margin = diff.p_value if diff.p_value is not None else 1.0, diff.test or "none", rule.limit
        unmatched = diff.only_base + diff.only_cand
    else:
        change, lo, hi, p, test, n = _absolute(rule, cand, spec)
        margin, unmatched = 0.0, 0
    loss = -change if up_good else change
    return GateResult(candidate=cand_name, metric=rule.metric, rule=rule.describe(), kind=rule.kind, limit=rule.limit,
                      base_value=base.metrics[rule.metric].value if rule.metric in base.metrics else None,
                      cand_value=cand.metrics[rule.metric].value, change=change, ci_low=lo, ci_high=hi, p_value=p,
                      test=test, n=n, n_unmatched=unmatched, breach=loss > margin + 1e-12,
                      verdict="pass", status="pass", message="")


def _finish(r: GateResult, rule: GateRule, spec: GateSpec) -> GateResult:
    p = r.p_adjusted if r.p_adjusted is not None else r.p_value
    if rule.noninferiority:
        margin = rule.limit if KINDS[rule.kind][0] else 0.0
        r.verdict = stats.non_inferiority(r.ci_low, r.ci_high, margin, higher_is_better=KINDS[rule.kind][2])
        r.status = r.verdict
    elif r.breach and rule.require_significance:
        r.significant = p < spec.alpha
        r.verdict, r.status = ("fail", "fail") if r.significant else ("pass", "breach (not significant)")
    else:
        r.verdict = r.status = "fail" if r.breach else "pass"
    r.message = _message(r, p)
    return r


def _message(r: GateResult, p: float) -> str:
    pct = "%" if r.kind.endswith("_pct") else ""
    if r.kind in ("min", "max"):
        head = f"{r.metric} is {r.cand_value:.4g} ({r.kind} {r.limit:g})"
        ci = f"CI of the value [{r.ci_low + r.limit:.4g}, {r.ci_high + r.limit:.4g}]"
    else:
        head = (f"{r.metric} changed {r.change:+.4g}{pct} ({r.base_value:.4g} -> {r.cand_value:.4g}; "
                f"{r.kind} {r.limit:g}{pct})")
        ci = f"CI of the change [{r.ci_low:+.4g}, {r.ci_high:+.4g}]{pct}"
    adj = f" (Holm-adjusted {r.p_adjusted:.3g})" if r.p_adjusted is not None else ""
    extra = f"; {r.n_unmatched} items unmatched" if r.n_unmatched else ""
    return f"{r.status}: {head}; {ci}, {r.test} p={r.p_value:.3g}{adj}, n={r.n}{extra}"


def evaluate_gates(spec: GateSpec, base: EvalResults, cand: EvalResults, cand_name: str,
                   diffs: dict[str, MetricDiff] | None = None) -> list[GateResult]:
    """Judge every gate for one candidate; `diffs` reuses paired comparisons already computed."""
    diffs = dict(diffs or {})
    results = []
    for rule in spec.gates:
        if rule.metric not in cand.metrics:
            raise _missing(rule.metric, cand, f"candidate ({cand_name})")
        if KINDS[rule.kind][0] and rule.metric not in base.metrics:
            raise _missing(rule.metric, base, "baseline")
        if KINDS[rule.kind][0] and rule.metric not in diffs:
            diffs[rule.metric] = diff_metric(base, cand, rule.metric, seed=spec.seed, n_boot=spec.n_boot,
                                             alpha=spec.alpha)
        results.append(_judge(rule, spec, cand_name, base, cand, diffs.get(rule.metric)))
    if spec.holm:
        for r, adj in zip(results, stats.holm([r.p_value for r in results])):
            r.p_adjusted = adj
    return [_finish(r, rule, spec) for r, rule in zip(results, spec.gates)]

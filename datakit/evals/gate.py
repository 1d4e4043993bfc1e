"""Gates: thresholds a candidate run must meet against the baseline, judged with paired statistics.

A gate file (see recipes/gates/default-gate.yaml):
    holm: true                    # Holm-correct the p-values across the gates of one candidate
    on_underpowered: fail         # or warn: report a gate the suite is too small to decide, without failing
    gates:
      - {metric: general.accuracy, max_drop: 0.02, require_significance: true}
      - {metric: identity.pass_rate, min: 0.95}
      - {metric: bleed.rate, max: 0.05}
      - {metric: perplexity.nll, max_rise_pct: 5, noninferiority: true}
Relative gates (max_drop, max_rise, max_drop_pct, max_rise_pct) compare the candidate with the
baseline on the items both runs share; absolute gates (min, max) judge the candidate's own value.

No silent pass: a relative gate passes only when its comparison could have seen a worsening of its margin,
i.e. its minimum detectable effect (MDE, at the gate's alpha and power) is within the margin. Otherwise
its verdict is `underpowered`, with the number of items that would decide it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datakit.errors import DatakitError
from datakit.evals import stats
from datakit.evals.diff import MetricDiff, diff_metric, metric_scores, metric_seed
from datakit.evals.results import EvalResults
from datakit.specfile import load_spec_file

# kind -> (relative to base, in percent of base, higher is better for the gated quantity)
KINDS: dict[str, tuple[bool, bool, bool]] = {
    "max_drop": (True, False, True), "max_rise": (True, False, False),
    "max_drop_pct": (True, True, True), "max_rise_pct": (True, True, False),
    "min": (False, False, True), "max": (False, False, False),
}


Verdict = Literal["pass", "fail", "underpowered"]
VERDICT_ORDER: dict[str, int] = {"pass": 0, "underpowered": 1, "fail": 2}  # worst wins when verdicts combine


def worst_verdict(verdicts: list[str]) -> Verdict:
    """A candidate's (or a comparison's) verdict from its gates': fail over underpowered over pass."""
    return max(verdicts, key=VERDICT_ORDER.__getitem__, default="pass")  # type: ignore[return-value]


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
    above_noise: bool = Field(False, description="relative gates: a change counts as a breach only when it also "
                                                 "exceeds the noise floor, the largest change a rerun of the "
                                                 "baseline showed (compare needs a rerun)")

    @model_validator(mode="after")
    def _one_threshold(self) -> GateRule:
        set_ = [k for k in KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"gate for {self.metric!r} sets {set_ or 'no threshold'}; set exactly one of "
                             f"{', '.join(KINDS)}")
        if self.require_significance and self.noninferiority:
            raise ValueError(f"gate for {self.metric!r}: choose require_significance or noninferiority, not both")
        if self.above_noise and not KINDS[set_[0]][0]:
            raise ValueError(f"gate for {self.metric!r}: above_noise applies to relative gates (max_drop, max_rise, "
                             "max_drop_pct, max_rise_pct)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def limit(self) -> float:
        return float(getattr(self, self.kind))

    def describe(self) -> str:
        flag = " (significance)" if self.require_significance else " (non-inferiority)" if self.noninferiority else ""
        return f"{self.metric} {self.kind} {self.limit:g}{flag}{' (above noise)' if self.above_noise else ''}"


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gates: list[GateRule] = Field(min_length=1)
    holm: bool = Field(False, description="Holm-adjust p-values across the gates of each candidate")
    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1, description="power at which each relative gate's MDE is computed")
    on_underpowered: Literal["fail", "warn"] = Field(
        "fail", description="a gate the suite cannot decide (MDE above its margin) fails the command, or is only "
                            "reported")
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
    n_clusters: int | None = None
    breach: bool
    significant: bool | None = None
    mde: float | None = Field(None, description="relative gates: smallest worsening the comparison detects, in "
                                                "gate units (percent for _pct gates)")
    items_needed: int | None = Field(None, description="paired items that would bring the MDE within the margin")
    noise: float | None = Field(None, description="above_noise gates: the rerun noise floor, in gate units")
    verdict: Verdict = Field(description="the one word every output (md, html, json, CLI) uses for this gate")
    reason: str = Field("", description="why, when the verdict alone does not say it: e.g. 'breach, not "
                                        "significant' for an underpowered gate whose change crossed the margin")
    message: str

    @property
    def label(self) -> str:
        """The verdict with its reason, as tables print it: `underpowered (breach, not significant)`."""
        return f"{self.verdict} ({self.reason})" if self.reason else self.verdict


def _missing(metric: str, res: EvalResults, role: str) -> DatakitError:
    return DatakitError(f"gate metric {metric!r} is not in the {role} run ({res.model}, suite {res.suite}); "
                        f"available: {', '.join(sorted(res.metrics)) or 'none'}. Fix the metric name in the gate file")


def _absolute(rule: GateRule, cand: EvalResults, spec: GateSpec) -> tuple[float, float, float, float, str, int]:
    """(value - limit, CI low, CI high, p, test, n) for a min/max gate on the candidate alone."""
    m = cand.metrics[rule.metric]
    scores, w, _ = metric_scores(cand, rule.metric)
    x = np.array(list(scores.values()), dtype=float)
    lower_bad = rule.kind == "min"
    if x.size:
        _, lo, hi = stats.bootstrap_mean_ci(x, weights=None if w is None else np.array(list(w.values())),
                                            n_boot=spec.n_boot, alpha=spec.alpha, seed=metric_seed(spec.seed, rule.metric))
    else:
        lo, hi = m.value - 1.96 * m.stderr, m.value + 1.96 * m.stderr
    if x.size and np.all((x == 0) | (x == 1)) and 0 <= rule.limit <= 1:
        p, test = stats.binom_tail(int(x.sum()), x.size, rule.limit, upper=not lower_bad), "binomial"
    else:
        z = (rule.limit - m.value) / m.stderr if m.stderr > 0 else math.copysign(math.inf, rule.limit - m.value)
        p, test = stats.normal_sf(z if lower_bad else -z), "normal"
    return m.value - rule.limit, lo - rule.limit, hi - rule.limit, p, test, m.n


def _judge(rule: GateRule, spec: GateSpec, cand_name: str, base: EvalResults, cand: EvalResults,
           diff: MetricDiff | None, noise: float | None) -> GateResult:
    relative, pct, up_good = KINDS[rule.kind]
    mde = needed = noise_units = n_clusters = None
    if relative and diff is not None and diff.delta is not None and diff.base_value is not None:
        if pct and diff.base_value == 0:
            raise DatakitError(f"gate {rule.describe()}: the baseline value is 0, so a percent change is undefined; "
                               f"use {rule.kind.removesuffix('_pct')} (absolute units) for this metric")
        scale = 100.0 / abs(diff.base_value) if pct else 1.0
        change, lo, hi = diff.delta * scale, (diff.ci_low or 0.0) * scale, (diff.ci_high or 0.0) * scale
        n = diff.n or cand.metrics[rule.metric].n  # unpaired fallback: the candidate's own count
        p, test, margin = diff.p_value if diff.p_value is not None else 1.0, diff.test or "none", rule.limit
        unmatched, n_clusters = diff.only_base + diff.only_cand, diff.n_clusters
        mde = diff.mde * scale if diff.mde is not None else math.inf
        needed = diff.items_needed(rule.limit / scale) if rule.limit > 0 else None
        if rule.above_noise:
            noise_units = (noise or 0.0) * scale
            margin = max(margin, noise_units)
    else:
        change, lo, hi, p, test, n = _absolute(rule, cand, spec)
        margin, unmatched = 0.0, 0
    loss = -change if up_good else change
    return GateResult(candidate=cand_name, metric=rule.metric, rule=rule.describe(), kind=rule.kind, limit=rule.limit,
                      base_value=base.metrics[rule.metric].value if rule.metric in base.metrics else None,
                      cand_value=cand.metrics[rule.metric].value, change=change, ci_low=lo, ci_high=hi, p_value=p,
                      test=test, n=n, n_unmatched=unmatched, n_clusters=n_clusters, breach=loss > margin + 1e-12,
                      mde=mde, items_needed=needed, noise=noise_units, verdict="pass", message="")


def _finish(r: GateResult, rule: GateRule, spec: GateSpec) -> GateResult:
    """The verdict: fail on a (significant, where asked) breach; a pass the comparison could not have earned, with
    an MDE above the margin, is `underpowered` instead."""
    p = r.p_adjusted if r.p_adjusted is not None else r.p_value
    resolves = r.mde is None or r.mde <= rule.limit + 1e-12
    if rule.noninferiority:
        margin = rule.limit if KINDS[rule.kind][0] else 0.0
        r.verdict = stats.non_inferiority(r.ci_low, r.ci_high, margin, higher_is_better=KINDS[rule.kind][2])
        worse, better = (-r.ci_low, -r.ci_high) if KINDS[rule.kind][2] else (r.ci_high, r.ci_low)  # as losses
        straddles = better <= margin < worse
        r.reason = ("CI straddles the margin" if r.verdict == "underpowered"
                    else "CI straddles the margin but is narrower than it" if straddles else "")
    elif r.breach and rule.require_significance:
        r.significant = p < spec.alpha
        # a breach the test cannot confirm is not a pass: more items would decide it
        r.verdict, r.reason = ("fail", "") if r.significant else ("underpowered", "breach, not significant")
    elif r.breach:
        # the point estimate crossed the margin: trust it when the suite resolves the margin or the test confirms
        # it; otherwise it may be noise (small suites cried wolf on 20-40% of base-vs-base comparisons)
        r.significant = p < spec.alpha
        r.verdict, r.reason = ("fail", "") if resolves or r.significant else (
            "underpowered", "breach, suite cannot resolve the margin")
    else:
        r.verdict, r.reason = "pass", ""
    if r.verdict == "pass" and not resolves:
        r.verdict, r.reason = "underpowered", "no breach, but the suite cannot resolve the margin"
    r.message = _message(r, p, spec)
    return r


def _message(r: GateResult, p: float, spec: GateSpec) -> str:
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
    if r.mde is not None:
        extra += f"; MDE {r.mde:.3g}{pct} at {spec.power:.0%} power"
        if r.verdict == "underpowered" and r.items_needed:
            extra += f" (the margin needs about {r.items_needed} items)"
    if r.noise is not None:
        extra += f"; noise floor {r.noise:.3g}{pct}"
    return f"{r.label}: {head}; {ci}, {r.test} p={r.p_value:.3g}{adj}, n={r.n}{extra}"


def evaluate_gates(spec: GateSpec, base: EvalResults, cand: EvalResults, cand_name: str,
                   diffs: dict[str, MetricDiff] | None = None, noise: dict[str, float] | None = None) -> list[GateResult]:
    """Judge every gate for one candidate; `diffs` reuses paired comparisons already computed, `noise` is the
    largest change per metric across reruns of the baseline (for above_noise gates)."""
    diffs = dict(diffs or {})
    results = []
    for rule in spec.gates:
        if rule.metric not in cand.metrics:
            raise _missing(rule.metric, cand, f"candidate ({cand_name})")
        if KINDS[rule.kind][0] and rule.metric not in base.metrics:
            raise _missing(rule.metric, base, "baseline")
        if rule.above_noise and (noise is None or rule.metric not in noise):
            raise DatakitError(f"gate {rule.describe()} needs a noise floor: give `datakit compare` a rerun of the "
                               "baseline (same model, or a run named *-rerun, e.g. --names base,base-rerun,cand)")
        if KINDS[rule.kind][0] and rule.metric not in diffs:
            diffs[rule.metric] = diff_metric(base, cand, rule.metric, seed=spec.seed, n_boot=spec.n_boot,
                                             alpha=spec.alpha, power_target=spec.power)
        results.append(_judge(rule, spec, cand_name, base, cand, diffs.get(rule.metric), (noise or {}).get(rule.metric)))
    if spec.holm:
        for r, adj in zip(results, stats.holm([r.p_value for r in results])):
            r.p_adjusted = adj
    return [_finish(r, rule, spec) for r, rule in zip(results, spec.gates)]

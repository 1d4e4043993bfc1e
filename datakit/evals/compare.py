"""Compare a baseline eval run with one or more candidates, item by item, and judge the gates.

`compare_runs([base, cpt, sft], gate=...)` reads each run's results.json and returns the comparison;
`datakit.evals.report.report_runs` also writes it as report.md / report.html / report.json. The first run is the baseline. A run of the same model as the baseline (same model, adapter and
fingerprint), or one named `base-rerun` / `*-rerun`, is a rerun: its flips against
the baseline are the run-to-run noise floor, and it is not gated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from datakit.errors import DatakitError
from datakit.evals.diff import MetricDiff, diff_metric
from datakit.evals.gate import GateResult, GateSpec, Verdict, evaluate_gates, load_gate, worst_verdict
from datakit.evals.results import EvalResults

Role = Literal["base", "candidate", "rerun"]


class RunInfo(BaseModel):
    name: str
    dir: str
    role: Role
    model: str
    adapter: str | None = None
    suite: str
    probes: str
    n_items: int


class FlipMap(BaseModel):
    """Items whose pass/fail changed between the baseline and this run (ids sorted)."""

    run: str
    n_matched: int
    newly_failed: list[str] = Field(default_factory=list, description="passed in the baseline, fail here")
    newly_passed: list[str] = Field(default_factory=list, description="failed in the baseline, pass here")
    only_base: list[str] = Field(default_factory=list, description="item ids this run lacks")
    only_cand: list[str] = Field(default_factory=list, description="item ids the baseline lacks")

    @property
    def n_flips(self) -> int:
        return len(self.newly_failed) + len(self.newly_passed)


class RunComparison(BaseModel):
    name: str
    role: Role
    metrics: list[MetricDiff]
    flips: FlipMap
    gates: list[GateResult] = Field(default_factory=list)


class CompareResult(BaseModel):
    runs: list[RunInfo]
    metrics: list[str]
    comparisons: list[RunComparison]
    gate: GateSpec | None = None
    verdict: Verdict | None = Field(None, description="the comparison's verdict, the worst of its candidates' "
                                                      "(none without a gate); md, html, json and the CLI say this word")
    candidate_verdicts: dict[str, Verdict] = Field(default_factory=dict,
                                                   description="candidate -> the worst verdict of its gates")
    ok: bool = Field(description="the command's exit status: no gate failed (nor was underpowered, with "
                                 "on_underpowered: fail); an underpowered comparison with on_underpowered: warn is ok")
    failed: list[GateResult] = Field(default_factory=list)
    underpowered: list[GateResult] = Field(default_factory=list)
    noise: dict[str, float] = Field(default_factory=dict, description="largest |change| per metric across reruns")
    noise_flips: int | None = Field(None, description="most pass/fail flips of a rerun against the baseline")
    warnings: list[str] = Field(default_factory=list)
    settings: dict[str, float | int] = Field(default_factory=dict)
    models: dict[str, dict[str, float]] = Field(default_factory=dict, description="run name -> metric -> value")
    verdicts: dict[str, dict[str, str]] = Field(default_factory=dict,
                                                description="candidate -> gate metric -> pass/fail/underpowered")

    def candidates(self) -> list[RunComparison]:
        return [c for c in self.comparisons if c.role == "candidate"]


def _read(path: Path) -> EvalResults:
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise DatakitError(f"no eval results at {f}; run `datakit eval SUITE.yaml --model ... --out {p}` first")
    try:
        return EvalResults.read(p)
    except ValidationError as e:
        first = e.errors()[0]
        raise DatakitError(f"{f} is not a datakit results.json ({e.error_count()} errors, first: {first['msg']} "
                           f"at {first['loc']}); re-run `datakit eval` to rewrite it") from e


def _names(run_dirs: list[Path], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(run_dirs):
            raise DatakitError(f"got {len(names)} names for {len(run_dirs)} runs; give one name per run, "
                               "baseline first")
        if len(set(names)) != len(names):
            raise DatakitError(f"run names must be unique, got {names}")
        return list(names)
    out: list[str] = []
    for i, d in enumerate(run_dirs):
        n = "base" if i == 0 else (Path(d).name or f"run{i}")
        out.append(n if n not in out else f"{n}-{i}")
    return out


def _role(i: int, name: str, run: EvalResults, base: EvalResults) -> Role:
    if i == 0:
        return "base"
    same = (run.model, run.adapter, run.model_fingerprint) == (base.model, base.adapter, base.model_fingerprint)
    return "rerun" if name.endswith("rerun") or same else "candidate"


def flip_map(base: EvalResults, cand: EvalResults, run: str) -> FlipMap:
    """Pass/fail flips on items both runs have (perplexity items have no pass/fail and are skipped)."""
    b = {it.id: it.passed for it in base.items if it.passed is not None}
    c = {it.id: it.passed for it in cand.items if it.passed is not None}
    both = sorted(set(b) & set(c))
    return FlipMap(run=run, n_matched=len(both),
                   newly_failed=[i for i in both if b[i] and not c[i]],
                   newly_passed=[i for i in both if not b[i] and c[i]],
                   only_base=sorted(set(b) - set(c)), only_cand=sorted(set(c) - set(b)))


def _metric_order(runs: list[EvalResults]) -> list[str]:
    seen = list(sorted(runs[0].metrics))
    for r in runs[1:]:
        seen += [m for m in sorted(r.metrics) if m not in seen]
    return seen


def _warnings(infos: list[RunInfo], comps: list[RunComparison]) -> list[str]:
    out = []
    for info in infos[1:]:
        if info.probes != infos[0].probes:
            out.append(f"{info.name} was scored on probes {info.probes!r}, the baseline on {infos[0].probes!r}: "
                       "only items with the same id are paired")
    for c in comps:
        if c.flips.only_base or c.flips.only_cand:
            out.append(f"{c.name}: {len(c.flips.only_base)} baseline items missing, {len(c.flips.only_cand)} "
                       "extra items; unmatched items are left out of the paired statistics")
    if comps and not any(c.role == "candidate" for c in comps):
        out.append("every run after the baseline is a rerun of it: nothing was gated")
    return out


def compare(runs: list[EvalResults], names: list[str], *, spec: GateSpec | None = None,
            dirs: list[str] | None = None) -> CompareResult:
    """The comparison itself, on results already in memory (compare_runs reads them and writes reports)."""
    if len(runs) < 2:
        raise DatakitError(f"compare needs a baseline and at least one candidate, got {len(runs)} run(s)")
    if len(names) != len(runs):
        raise DatakitError(f"got {len(names)} names for {len(runs)} runs; give one name per run, baseline first")
    seed, n_boot, alpha, power = (spec.seed, spec.n_boot, spec.alpha, spec.power) if spec else (0, 2000, 0.05, 0.8)
    base, metrics = runs[0], _metric_order(runs)
    infos = [RunInfo(name=n, dir=(dirs or [""] * len(runs))[i], role=_role(i, n, r, base), model=r.model,
                     adapter=r.adapter, suite=r.suite, probes=r.probes, n_items=len(r.items))
             for i, (n, r) in enumerate(zip(names, runs))]
    diffs = [[diff_metric(base, run, m, seed=seed, n_boot=n_boot, alpha=alpha, power_target=power) for m in metrics]
             for run in runs[1:]]
    noise: dict[str, float] = {}
    for info, ds in zip(infos[1:], diffs):  # the largest change any rerun of the baseline shows, per metric
        for d in ds:
            if info.role == "rerun" and d.delta is not None:
                noise[d.metric] = max(noise.get(d.metric, 0.0), abs(d.delta))
    comps = []
    for info, run, ds in zip(infos[1:], runs[1:], diffs):
        gates = []
        if spec is not None and info.role == "candidate":
            gates = evaluate_gates(spec, base, run, info.name, {d.metric: d for d in ds}, noise=noise or None)
        comps.append(RunComparison(name=info.name, role=info.role, metrics=ds, flips=flip_map(base, run, info.name),
                                   gates=gates))
    reruns = [c for c in comps if c.role == "rerun"]
    all_gates = [g for c in comps for g in c.gates]
    failed = [g for g in all_gates if g.verdict == "fail"]
    underpowered = [g for g in all_gates if g.verdict == "underpowered"]
    per_candidate = {c.name: worst_verdict([g.verdict for g in c.gates]) for c in comps if c.gates}
    return CompareResult(
        runs=infos, metrics=metrics, comparisons=comps, gate=spec,
        verdict=worst_verdict(list(per_candidate.values())) if spec is not None else None,
        candidate_verdicts=per_candidate,
        ok=not failed and not (underpowered and spec is not None and spec.on_underpowered == "fail"),
        failed=failed, underpowered=underpowered,
        noise=noise, noise_flips=max((c.flips.n_flips for c in reruns), default=None),
        warnings=_warnings(infos, comps),
        settings={"seed": seed, "n_boot": n_boot, "alpha": alpha, "power": power},
        models={i.name: {k: m.value for k, m in r.metrics.items()} for i, r in zip(infos, runs)},
        verdicts={c.name: {g.metric: g.verdict for g in c.gates} for c in comps if c.gates})


def compare_runs(run_dirs: list[Path], *, gate: Path | None, names: list[str] | None = None) -> CompareResult:
    """Read results.json from each run folder (baseline first), compare, and judge the gate."""
    runs = [_read(Path(d)) for d in run_dirs]
    spec = load_gate(Path(gate)) if gate is not None else None
    return compare(runs, _names(list(run_dirs), names), spec=spec, dirs=[str(d) for d in run_dirs])

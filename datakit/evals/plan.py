"""Sizing a suite before it is run: how many items (and paraphrases of each) a gate needs to see its margin.

    datakit eval plan --metric general.accuracy --max-drop 0.02 --base-accuracy 0.8
    datakit eval plan --suite examples/acme/suite.yaml --gate examples/acme/gate.yaml

Binary metrics are sized from the discordance a drop would cause (independent errors unless `--discordance`
says how concordant the models are), continuous ones from the spread of per-item differences (`--sd`).
Paraphrase clusters of `m` items with intra-cluster correlation `icc` count as m / (1 + (m - 1) icc) items.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from datakit.errors import DatakitError
from datakit.evals import power
from datakit.evals.diff import higher_is_better
from datakit.evals.gate import KINDS, GateSpec, load_gate
from datakit.evals.results import Item, metric_names
from datakit.evals.scorers import reference_answer
from datakit.evals.suite import load_probes, load_suite

POWERS = (0.8, 0.9)


class PlanRow(BaseModel):
    power: float
    items: int = Field(description="independent items (or paraphrase clusters' worth) needed")
    clusters: int = Field(description="distinct questions, each asked in `paraphrases` wordings")
    paraphrases: int
    total_items: int = Field(description="clusters x paraphrases: the suite's item count")


class Plan(BaseModel):
    metric: str
    margin: float
    alpha: float
    binary: bool
    discordance: float | None = None
    sd: float | None = None
    icc: float
    rows: list[PlanRow]
    best_case_items: int | None = Field(None, description="binary, 80% power: if every changed item were a drop "
                                                          "(the fewest items any suite can do with)")


def plan_items(metric: str, margin: float, *, base_rate: float = 0.8, discordance: float | None = None,
               sd: float | None = None, paraphrases: int = 1, icc: float = 0.5, alpha: float = 0.05) -> Plan:
    """Items needed to detect a worsening of `margin` at 80% and 90% power."""
    if margin <= 0:
        raise DatakitError(f"--max-drop must be > 0, got {margin}")
    binary = sd is None
    pd = None
    if binary:
        pd = discordance if discordance is not None else power.expected_discordance(base_rate, margin)
    deff = power.design_effect(paraphrases, icc)
    rows = []
    for target in POWERS:
        n = (power.items_binary(margin, pd or 0.0, alpha=alpha, power=target) if binary
             else power.items_continuous(margin, sd or 0.0, alpha=alpha, power=target))
        # a cluster of m paraphrases is worth m / deff independent items
        clusters = math.ceil(n * deff / paraphrases)
        rows.append(PlanRow(power=target, items=n, clusters=clusters, paraphrases=paraphrases,
                            total_items=clusters * paraphrases))
    best = power.items_binary(margin, margin, alpha=alpha, power=POWERS[0]) if binary else None
    return Plan(metric=metric, margin=margin, alpha=alpha, binary=binary, discordance=pd, sd=sd, icc=icc, rows=rows,
                best_case_items=best)


class GateCheck(BaseModel):
    metric: str
    rule: str
    items: int = Field(description="suite items behind the metric")
    clusters: int = Field(description="distinct group_ids among them (items without one count alone)")
    needed: int | None = Field(None, description="items needed at 80% power (binary metrics)")
    mde: float | None = Field(None, description="smallest drop the suite resolves at 80% power, in metric units")
    ok: bool | None = Field(None, description="None: continuous metric, sized only from observed spread")
    message: str


def check_suite(probes: list[dict[str, Any]], gate: GateSpec, *, base_rate: float = 0.8,
                discordance: float | None = None) -> list[GateCheck]:
    """For each relative gate: does the suite hold enough items to resolve its margin? (Binary metrics; a
    continuous metric's MDE depends on the spread a first comparison measures.)"""
    buckets: dict[str, list[dict[str, Any]]] = {}
    for p in probes:
        kinds = [p["type"]] + (["answer"] if reference_answer(p) else [])  # the answer-likelihood item eval adds
        for kind in kinds:
            for name in metric_names(Item(id=str(p.get("id")), type=kind, group=p.get("group"), prompt="", score=0.0)):
                buckets.setdefault(name, []).append(p)
    out = []
    for rule in gate.gates:
        relative, pct, _ = KINDS[rule.kind]
        if not relative:
            continue
        its = buckets.get(rule.metric, [])
        n, clusters = len(its), len({p.get("group_id") or f"\0{i}" for i, p in enumerate(its)})
        if not its:
            out.append(GateCheck(metric=rule.metric, rule=rule.describe(), items=0, clusters=0, ok=False,
                                 message=f"{rule.describe()}: no probes in this suite feed it (the suite has "
                                         f"{', '.join(sorted(buckets)) or 'none'}), so compare would stop on it"))
            continue
        if pct or not higher_is_better(rule.metric) or rule.metric.endswith(("nll", ".kl")):
            out.append(GateCheck(metric=rule.metric, rule=rule.describe(), items=n, clusters=clusters,
                                 message=f"{rule.describe()}: {n} items; a continuous metric's MDE comes from the "
                                         "spread of per-item changes: read it in the first `datakit compare` report"))
            continue
        pd = discordance if discordance is not None else power.expected_discordance(base_rate, rule.limit)
        needed = power.items_binary(rule.limit, pd, alpha=gate.alpha, power=gate.power)
        # paraphrases of one question are not independent: count the clusters, conservatively
        mde = power.mde_binary(clusters, pd, alpha=gate.alpha, power=gate.power)
        ok = mde <= rule.limit
        basis = f"discordance {pd:.2f}" + ("" if discordance is not None else
                                           " (independent errors at base accuracy "
                                           f"{base_rate:g}, an upper bound: pass --discordance from a comparison)")
        verdict = "enough" if ok else f"too few, about {needed} needed, or the gate will say underpowered"
        out.append(GateCheck(metric=rule.metric, rule=rule.describe(), items=n, clusters=clusters, needed=needed,
                             mde=mde, ok=ok, message=f"{rule.describe()}: {n} items in {clusters} clusters, MDE "
                                                     f"{mde:.3f} vs margin {rule.limit:g} at {basis}: {verdict}"))
    return out


def load_for_check(reg: Any, suite_path: Path, gate_path: Path) -> tuple[list[dict[str, Any]], GateSpec]:
    probes, _ = load_probes(reg, load_suite(suite_path), suite_path.resolve().parent)
    return probes, load_gate(gate_path)

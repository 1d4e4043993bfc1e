"""Is the gate right? Simulated paired results run through datakit's own gate code.

- base vs base (the same model evaluated twice with sampling noise, or retrained with another seed): the share
  of comparisons in which any gate of the family fails stays at or under alpha, over 1,000 comparisons;
- a drop of twice the MDE is caught (fail) at least 90% of the time;
- a drop the suite cannot resolve is never a pass: the verdict is fail or underpowered.
Binary (McNemar) and continuous (sign-flip) metrics, independent items and paraphrase clusters. The figures
these tests print are the ones docs/gate-power.md quotes.
"""

from __future__ import annotations

import numpy as np

from datakit.evals import power
from datakit.evals.gate import GateRule, GateSpec, evaluate_gates
from datakit.evals.results import EvalResults, Item, aggregate

ALPHA = 0.05
FAMILY = GateSpec(holm=True, alpha=ALPHA, n_boot=200, gates=[
    GateRule(metric="general.accuracy", max_drop=0.05, require_significance=True),
    GateRule(metric="domain.accuracy", max_drop=0.05),
    GateRule(metric="general.answer_nll", max_rise_pct=5),
])


def results(general: np.ndarray, domain: np.ndarray, nll: np.ndarray, *, model: str,
            clusters: np.ndarray | None = None) -> EvalResults:
    """A run from arrays: pass/fail per general and domain item, answer NLL per general item."""
    cl = [None] * len(general) if clusters is None else [f"c{c}" for c in clusters]
    its = [Item.model_construct(id=f"g{i}", type="knowledge", group="general", prompt="", score=float(x),
                                passed=bool(x), cluster=cl[i], tokens=None, samples=None)
           for i, x in enumerate(general)]
    its += [Item.model_construct(id=f"d{i}", type="knowledge", group="domain", prompt="", score=float(x),
                                 passed=bool(x), cluster=None, tokens=None, samples=None) for i, x in enumerate(domain)]
    its += [Item.model_construct(id=f"g{i}#answer", type="answer", group="general", prompt="", score=float(x),
                                 passed=None, cluster=cl[i], tokens=None, samples=None) for i, x in enumerate(nll)]
    return EvalResults.model_construct(suite="sim", backend="sim", model=model, adapter=None, model_fingerprint={},
                                       probes="sim", created="", items=its, metrics=aggregate(its), lm_eval={},
                                       settings={})


def run_pair(rng: np.random.Generator, n: int, *, drop: float = 0.0, nll_rise: float = 0.0,
             cluster_size: int = 1) -> tuple[EvalResults, EvalResults]:
    """Base and candidate from the same model up to `drop` (share of the base's passes lost) and `nll_rise`.

    Each item has its own pass probability (easy and hard items); both runs sample their answers, so even the
    same model disagrees with itself on some items. With clusters, a run either knows a fact (all its paraphrases
    likely pass) or not, which makes paraphrases move together."""
    p_item = rng.beta(4, 1, size=n)  # mean 0.8
    clusters = np.arange(n) // cluster_size if cluster_size > 1 else None
    p_fact = rng.beta(4, 1, size=n // cluster_size + 1)

    def draw(model_drop: float) -> tuple[np.ndarray, np.ndarray]:
        if clusters is None:
            g = rng.random(n) < p_item
        else:  # a run knows each fact or not; paraphrases of a known fact pass with 0.95, others with 0.1
            known = rng.random(p_fact.size) < p_fact
            g = np.where(known[clusters], rng.random(n) < 0.95, rng.random(n) < 0.1)
        lost = rng.random(n) < model_drop
        return g & ~lost, rng.random(n) < 0.6

    base_nll = rng.gamma(4, 0.5, size=n)  # per-item answer NLL around 2, item to item spread
    bg, bd = draw(0.0)
    cg, cd = draw(drop)
    noise = rng.normal(0, 0.05, size=(2, n))
    base = results(bg, bd, base_nll + noise[0], model="base", clusters=clusters)
    cand = results(cg, cd, (base_nll + noise[1]) * (1 + nll_rise), model="cand", clusters=clusters)
    return base, cand


def verdicts(spec: GateSpec, base: EvalResults, cand: EvalResults) -> list[str]:
    return [r.verdict for r in evaluate_gates(spec, base, cand, "cand")]


def test_base_vs_base_family_wise_false_alarms_stay_under_alpha():
    rng = np.random.default_rng(0)
    for n in (30, 100, 300):
        fails = sum("fail" in verdicts(FAMILY, *run_pair(rng, n)) for _ in range(1000))
        print(f"n={n}: any-gate false alarm {fails / 1000:.3f}")
        assert fails / 1000 <= ALPHA, (n, fails)


def test_base_vs_base_with_paraphrase_clusters_stays_under_alpha_where_ignoring_them_does_not():
    rng = np.random.default_rng(1)
    gate = GateSpec(alpha=ALPHA, n_boot=200, gates=[GateRule(metric="general.accuracy", max_drop=0.0,
                                                              require_significance=True)])
    clustered = ignored = 0
    for _ in range(1000):
        base, cand = run_pair(rng, 200, cluster_size=4)
        clustered += verdicts(gate, base, cand)[0] == "fail"
        for r in (base, cand):  # the same data with the clusters forgotten
            for it in r.items:
                it.cluster = None
        ignored += verdicts(gate, base, cand)[0] == "fail"
    print(f"clustered false alarm {clustered / 1000:.3f}, ignoring clusters {ignored / 1000:.3f}")
    assert clustered / 1000 <= ALPHA
    assert ignored / 1000 > ALPHA  # McNemar on paraphrases as if independent cries wolf


def test_a_drop_of_twice_the_mde_is_caught_at_least_90_percent_of_the_time():
    rng = np.random.default_rng(2)
    n = 400
    # the MDE this suite reports when nothing changed (the same model sampled twice)
    probe = evaluate_gates(FAMILY, *run_pair(rng, n), "cand")[0]
    mde = probe.mde
    gate = GateSpec(alpha=ALPHA, n_boot=200, gates=[GateRule(metric="general.accuracy", max_drop=mde,
                                                              require_significance=True)])
    caught = 0
    for _ in range(300):
        base, cand = run_pair(rng, n, drop=2 * mde / 0.8)  # losing a share s of passes drops accuracy ~0.8 s
        caught += verdicts(gate, base, cand)[0] == "fail"
    print(f"n={n}: MDE {mde:.3f}, caught {caught / 300:.3f} of drops of {2 * mde:.3f}")
    assert caught / 300 >= 0.9


def test_a_continuous_rise_of_twice_the_mde_is_caught_and_no_rise_is_not():
    rng = np.random.default_rng(3)
    gate = GateSpec(alpha=ALPHA, n_boot=200, gates=[GateRule(metric="general.answer_nll", max_rise_pct=2)])
    base, cand = run_pair(rng, 100)
    mde = evaluate_gates(gate, base, cand, "cand")[0].mde  # percent of the base NLL
    assert 0 < mde < 2
    caught = sum(verdicts(gate, *run_pair(rng, 100, nll_rise=2 * 0.02))[0] == "fail" for _ in range(300))
    quiet = sum(verdicts(gate, *run_pair(rng, 100))[0] == "fail" for _ in range(1000))
    print(f"answer NLL: MDE {mde:.2f}%, caught {caught / 300:.3f} of 4% rises, false alarm {quiet / 1000:.3f}")
    assert caught / 300 >= 0.9 and quiet / 1000 <= ALPHA


def test_a_drop_the_suite_cannot_resolve_is_never_a_pass():
    rng = np.random.default_rng(4)
    gate = GateSpec(alpha=ALPHA, n_boot=200, gates=[
        GateRule(metric="general.accuracy", max_drop=0.02, require_significance=True),
        GateRule(metric="domain.accuracy", max_drop=0.02),
        GateRule(metric="general.accuracy", max_drop=0.02, noninferiority=True)])
    seen: set[str] = set()
    for _ in range(300):
        seen |= set(verdicts(gate, *run_pair(rng, 50, drop=0.05)))
    assert "pass" not in seen and "underpowered" in seen
    # the floor: 50 items cannot resolve much less than (z_a + z_b)^2 / 50 = 0.157, whatever the discordance
    assert power.mde_binary(50, 0.0) > 0.14


def test_power_formulas_agree_with_each_other_and_with_simulation():
    # items needed for a drop, then the MDE of that many items, is the same drop
    for pd in (0.05, 0.2, 0.4):
        n = power.items_binary(0.05, pd)
        assert abs(power.mde_binary(n, pd) - 0.05) < 0.002
    # simulated McNemar power at the formula's n is about 80%
    from datakit.evals.stats import mcnemar

    rng = np.random.default_rng(5)
    pd, delta = 0.2, 0.06
    n = power.items_binary(delta, pd)
    hits = 0
    for _ in range(2000):  # each item: drop (b), gain (c) or concordant
        u = rng.random(n)
        b, c = int(np.sum(u < (pd + delta) / 2)), int(np.sum((u >= (pd + delta) / 2) & (u < pd)))
        hits += mcnemar(b, c) < 0.05
    assert 0.74 <= hits / 2000 <= 0.86
    assert power.items_continuous(0.1, 0.5) == int(np.ceil(((1.959964 + 0.841621) * 5) ** 2))
    assert power.design_effect(4, 0.5) == 2.5 and abs(power.expected_discordance(0.9, 0.0) - 0.18) < 1e-12

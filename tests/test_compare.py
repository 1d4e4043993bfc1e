"""Paired statistics, gates and reports for `datakit compare`, on small hand-built eval results."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.evals import stats
from datakit.evals.compare import compare, compare_runs, flip_map
from datakit.evals.gate import GateRule, GateSpec, evaluate_gates, load_gate
from datakit.evals.report import read_report, report_runs, to_html, to_markdown
from datakit.evals.results import EvalResults, Item, Metric, aggregate

ROOT = Path(__file__).resolve().parent.parent


def items(prefix: str, passed: list[bool], *, type: str = "knowledge", group: str | None = None) -> list[Item]:
    return [Item(id=f"{prefix}-{i:03d}", type=type, group=group, prompt="q", score=float(p), passed=p)
            for i, p in enumerate(passed)]


def nll_items(values: list[float]) -> list[Item]:
    return [Item(id=f"ppl-{i:03d}", type="perplexity", prompt="t", score=v, tokens=10) for i, v in enumerate(values)]


def run(its: list[Item], model: str = "base", adapter: str | None = None) -> EvalResults:
    return EvalResults(suite="acme-regression", backend="test", model=model, adapter=adapter, probes="probes@v1",
                       created="2025-01-01T00:00:00Z", items=its, metrics=aggregate(its))


def suite(general: list[bool], *, domain: list[bool] | None = None, nll: list[float] | None = None,
          model: str = "base", adapter: str | None = None) -> EvalResults:
    """General + domain knowledge, 20 identity probes that pass, 20 bleed probes that do not leak, perplexity."""
    its = items("gen", general, group="general") + items("dom", domain or [False] * 10, group="domain")
    its += items("id", [True] * 20, type="identity")
    its += [Item(id=f"bleed-{i:02d}", type="bleed", prompt="q", score=0.0, passed=True) for i in range(20)]
    its += nll_items(nll or [2.0 + 0.01 * i for i in range(20)])
    return run(its, model=model, adapter=adapter)


def spec(*rules: dict, holm: bool = False) -> GateSpec:
    return GateSpec(gates=[GateRule(**r) for r in rules], holm=holm)


# ---- statistics -------------------------------------------------------------------------------


def test_mcnemar_matches_hand_computed_exact_binomial_p_values():
    assert stats.mcnemar(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096, abs=1e-12)
    assert stats.mcnemar(10, 2) == pytest.approx(0.0386, abs=1e-4)
    assert stats.mcnemar(2, 10) == stats.mcnemar(10, 2)
    assert stats.mcnemar(5, 5) == 1.0 and stats.mcnemar(0, 0) == 1.0
    assert stats.mcnemar(1, 0) == 1.0  # one flip is never evidence
    assert stats.mcnemar(6, 0) == pytest.approx(2 / 64)


def test_holm_reproduces_the_textbook_example_in_input_order():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_paired_bootstrap_ci_contains_the_true_mean_difference_and_is_seeded():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 400)
    cand = base + 0.3 + rng.normal(0, 0.5, 400)
    p = stats.pair_scores({str(i): b for i, b in enumerate(base)}, {str(i): c for i, c in enumerate(cand)})
    mean, lo, hi = stats.paired_bootstrap(p, seed=7)
    assert lo < 0.3 < hi and lo < mean < hi and hi - lo < 0.2
    assert stats.paired_bootstrap(p, seed=7) == (mean, lo, hi)


def test_paired_bootstrap_collapses_to_zero_for_identical_runs_and_reports_unmatched_ids():
    scores = {f"q{i}": float(i % 2) for i in range(30)}
    p = stats.pair_scores(scores, {**scores, "extra": 1.0})
    assert stats.paired_bootstrap(p) == (0.0, 0.0, 0.0)
    assert p.only_cand == ["extra"] and p.n_unmatched == 1 and len(p.ids) == 30
    assert stats.paired_p(p) == (1.0, "mcnemar")


def test_sign_flip_test_separates_a_real_shift_from_no_change():
    d = np.full(30, 0.2) + np.linspace(-0.05, 0.05, 30)
    assert stats.sign_flip_p(d, seed=0) < 0.001
    assert stats.sign_flip_p(np.zeros(30)) == 1.0


@pytest.mark.parametrize("ci, verdict", [
    ((-0.01, 0.01), "pass"),          # worse bound within the 0.02 margin
    ((-0.30, -0.10), "fail"),         # the whole CI is beyond it
    ((-0.30, 0.00), "underpowered"),  # straddles and is wider than the margin
    ((-0.025, -0.015), "fail"),       # straddles but narrow: precise, and the breach cannot be ruled out
])
def test_non_inferiority_verdicts_for_a_higher_is_better_metric(ci, verdict):
    assert stats.non_inferiority(*ci, 0.02, higher_is_better=True) == verdict


def test_non_inferiority_reads_the_upper_bound_when_lower_is_better():
    assert stats.non_inferiority(-1.0, 4.0, 5.0, higher_is_better=False) == "pass"
    assert stats.non_inferiority(6.0, 9.0, 5.0, higher_is_better=False) == "fail"


def test_mean_kl_is_zero_for_equal_distributions_and_matches_a_hand_computed_case():
    lp = np.log(np.array([[0.5, 0.5], [0.2, 0.8]]))
    assert stats.mean_kl(lp, lp) == pytest.approx(0.0, abs=1e-12)
    base, cand = np.log([[0.5, 0.5]]), np.log([[0.9, 0.1]])
    assert stats.mean_kl(base, cand) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert stats.mean_kl(base + 3.0, cand - 1.0) == pytest.approx(stats.mean_kl(base, cand))  # logits work too
    with pytest.raises(ValueError, match="shape"):
        stats.mean_kl(base, np.log([[0.2, 0.3, 0.5]]))


# ---- gates ------------------------------------------------------------------------------------


def test_a_candidate_equal_to_the_base_is_underpowered_on_100_items_and_passes_on_500():
    gate = load_gate(ROOT / "recipes" / "gates" / "default-gate.yaml")
    base = suite([True] * 90 + [False] * 10)
    res = evaluate_gates(gate, base, suite([True] * 90 + [False] * 10, adapter="sft"), "sft")
    # no flip at all, yet 100 items cannot show a 2-point drop: it takes about 8 flips, so about 400 items
    assert [r.verdict for r in res] == ["underpowered", "pass", "pass", "pass"]
    acc = res[0]
    assert not acc.breach and 0.07 < acc.mde < 0.09 and 380 <= acc.items_needed <= 410
    assert "MDE 0.0" in acc.message and f"needs about {acc.items_needed} items" in acc.message
    big = suite([True] * 450 + [False] * 50)
    res = evaluate_gates(gate, big, suite([True] * 450 + [False] * 50, adapter="sft"), "sft")
    assert [r.verdict for r in res] == ["pass"] * 4 and res[0].mde <= 0.02


def test_a_damaged_candidate_fails_max_drop_with_the_numbers_in_the_message():
    base = suite([True] * 90 + [False] * 10)
    cand = suite([True] * 70 + [False] * 30, adapter="sft")
    (r,) = evaluate_gates(spec({"metric": "general.accuracy", "max_drop": 0.02}), base, cand, "sft")
    assert r.verdict == "fail" and r.change == pytest.approx(-0.2)
    assert r.ci_high < -0.02 and r.p_value < 1e-4 and r.n == 100
    for text in ("general.accuracy", "-0.2", "0.9", "0.7", "max_drop 0.02", "mcnemar", "n=100"):
        assert text in r.message


def test_a_one_item_drop_on_ten_items_is_not_significant_and_underpowered_for_non_inferiority():
    base, cand = suite([True] * 10), suite([False] + [True] * 9, adapter="sft")
    (sig,) = evaluate_gates(spec({"metric": "general.accuracy", "max_drop": 0.02, "require_significance": True}),
                            base, cand, "sft")
    assert sig.breach and sig.verdict == "underpowered" and sig.label == "underpowered (breach, not significant)"
    assert sig.p_value == 1.0 and sig.significant is False
    (ni,) = evaluate_gates(spec({"metric": "general.accuracy", "max_drop": 0.02, "noninferiority": True}),
                           base, cand, "sft")
    assert ni.verdict == "underpowered"
    (plain,) = evaluate_gates(spec({"metric": "general.accuracy", "max_drop": 0.02}), base, cand, "sft")
    # the point estimate crossed the margin, but one flip in ten items is noise as often as not
    assert plain.breach and plain.verdict == "underpowered" and plain.reason == "breach, suite cannot resolve the margin"


def test_holm_turns_two_borderline_significant_breaches_into_not_significant():
    # Each group: 10 items flip pass->fail and 2 fail->pass out of 100: McNemar p = 0.0386.
    before = [True] * 10 + [False] * 2 + [True] * 88
    after = [False] * 10 + [True] * 2 + [True] * 88
    its = lambda xs: items("gen", xs, group="general") + items("dom", xs, group="domain")  # noqa: E731
    base, cand = run(its(before)), run(its(after), adapter="sft")
    rules = [{"metric": m, "max_drop": 0.02, "require_significance": True} for m in ("general.accuracy",
                                                                                      "domain.accuracy")]
    raw = evaluate_gates(spec(*rules), base, cand, "sft")
    assert [r.verdict for r in raw] == ["fail", "fail"] and raw[0].p_value == pytest.approx(0.0386, abs=1e-4)
    corrected = evaluate_gates(spec(*rules, holm=True), base, cand, "sft")
    assert [(r.verdict, r.reason) for r in corrected] == [("underpowered", "breach, not significant")] * 2
    assert corrected[0].p_adjusted == pytest.approx(2 * raw[0].p_value)


def test_absolute_and_percent_gates_judge_the_candidate_value():
    base = suite([True] * 10, nll=[2.0] * 20)
    cand = suite([True] * 10, nll=[2.3] * 20, adapter="sft")  # +15% NLL
    gate = spec({"metric": "perplexity.nll", "max_rise_pct": 5}, {"metric": "identity.pass_rate", "min": 0.95},
                {"metric": "bleed.rate", "max": 0.05})
    ppl, ident, bleed = evaluate_gates(gate, base, cand, "sft")
    assert ppl.verdict == "fail" and ppl.change == pytest.approx(15.0) and "%" in ppl.message
    assert ident.verdict == "pass" and bleed.verdict == "pass"


def test_a_gate_on_a_missing_metric_names_the_metric_and_the_available_ones():
    base = suite([True] * 10)
    with pytest.raises(DatakitError, match=r"'general\.acc'.*available: .*general\.accuracy"):
        evaluate_gates(spec({"metric": "general.acc", "max_drop": 0.02}), base, base, "sft")


def test_a_gate_file_with_two_thresholds_on_one_gate_is_refused_with_the_file_named(tmp_path):
    f = tmp_path / "gate.yaml"
    f.write_text("gates:\n  - {metric: general.accuracy, max_drop: 0.02, min: 0.5}\n")
    with pytest.raises(DatakitError, match=r"(?s)gate\.yaml.*exactly one of"):
        load_gate(f)


# ---- comparison and reports -------------------------------------------------------------------


def test_flip_maps_list_the_items_the_candidate_newly_fails_and_newly_passes():
    base = run(items("q", [True, True, False, False, True]))
    cand = run(items("q", [False, True, True, False, True]) + items("new", [True]), adapter="sft")
    f = flip_map(base, cand, "sft")
    assert f.newly_failed == ["q-000"] and f.newly_passed == ["q-002"]
    assert f.only_cand == ["new-000"] and f.n_matched == 5


def test_report_runs_writes_reports_whose_html_has_a_plot_and_the_gate_table(tmp_path):
    base = suite([True] * 90 + [False] * 10)
    cand = suite([True] * 70 + [False] * 30, adapter="sft")
    base.write(tmp_path / "base")
    cand.write(tmp_path / "sft")
    gate = ROOT / "recipes" / "gates" / "default-gate.yaml"
    res = report_runs([tmp_path / "base", tmp_path / "sft"], gate=gate, out_dir=tmp_path / "out")
    assert res == compare_runs([tmp_path / "base", tmp_path / "sft"], gate=gate)  # the same result, unwritten
    assert not res.ok and [g.metric for g in res.failed] == ["general.accuracy"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert ("<img" in html or "<svg" in html) and 'id="gates"' in html and "general.accuracy max_drop" in html
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.index("## Gates") < md.index("## Metrics") and "**FAIL**" in md and "`gen-070`" in md
    assert read_report(tmp_path / "out") == res


def test_three_runs_are_compared_side_by_side_with_a_learning_vs_forgetting_point_each():
    base = suite([True] * 50, domain=[False] * 10)
    cpt = suite([True] * 48 + [False] * 2, domain=[True] * 5 + [False] * 5, adapter="cpt")
    sft = suite([True] * 40 + [False] * 10, domain=[True] * 9 + [False], adapter="sft")
    res = compare([base, cpt, sft], ["base", "cpt", "sft"],
                  spec=spec({"metric": "general.accuracy", "max_drop": 0.05}))
    assert [c.name for c in res.comparisons] == ["cpt", "sft"] and not res.ok
    assert [g.verdict for g in res.failed] == ["fail"] and res.failed[0].candidate == "sft"
    md = to_markdown(res)
    assert "| metric | base | cpt | sft |" in md
    dom = next(d for d in res.comparisons[1].metrics if d.metric == "domain.accuracy")
    assert dom.delta == pytest.approx(0.9)
    assert "learning vs forgetting" in to_html(res).lower()
    # the headline says which model fails and which passes, not only how many checks failed
    assert "**FAIL**: cpt underpowered (gates: 1 underpowered); sft fail (gates: 1 fail)" in md
    assert res.verdict == "fail" and res.candidate_verdicts == {"cpt": "underpowered", "sft": "fail"}
    # one vocabulary: every gate row in md starts with the verdict word report.json holds for it
    for g in (g for c in res.comparisons for g in c.gates):
        assert f"| {g.candidate} | {g.rule} | {g.verdict}" in md and g.message.startswith(g.verdict)


def test_a_rerun_of_the_base_is_the_noise_floor_and_is_not_gated():
    base = suite([True] * 90 + [False] * 10)
    rerun = suite([True] * 89 + [False] * 10 + [True])  # same model: two items flip by sampling noise
    sft = suite([True] * 70 + [False] * 30, adapter="sft")
    res = compare([base, rerun, sft], ["base", "base-rerun", "sft"],
                  spec=spec({"metric": "general.accuracy", "max_drop": 0.02}))
    assert [c.role for c in res.comparisons] == ["rerun", "candidate"]
    assert res.noise_flips == 2 and res.comparisons[0].gates == []
    assert res.noise["general.accuracy"] == pytest.approx(0.0)
    assert "Noise floor" in to_markdown(res)


def test_compare_is_deterministic_and_refuses_a_single_run():
    base, cand = suite([True] * 30 + [False] * 10), suite([True] * 25 + [False] * 15, adapter="x")
    assert compare([base, cand], ["base", "x"]) == compare([base, cand], ["base", "x"])
    with pytest.raises(DatakitError, match="at least one candidate"):
        compare([base], ["base"])
    with pytest.raises(DatakitError, match="1 names for 2 runs"):
        compare([base, cand], ["base"])


def test_a_metric_without_item_scores_falls_back_to_an_unpaired_normal_test():
    base, cand = suite([True] * 10), suite([True] * 10, adapter="sft")
    base.metrics["mmlu.acc"] = Metric(value=0.50, stderr=0.01, n=1000)
    cand.metrics["mmlu.acc"] = Metric(value=0.46, stderr=0.01, n=1000)
    (r,) = evaluate_gates(spec({"metric": "mmlu.acc", "max_drop": 0.02, "require_significance": True}),
                          base, cand, "sft")
    assert r.test == "normal (unpaired)" and r.verdict == "fail" and r.n == 1000
    assert r.p_value == pytest.approx(2 * 0.5 * math.erfc(0.04 / math.hypot(0.01, 0.01) / math.sqrt(2)))


# ---- power, clusters, noise floor, label-free forgetting ---------------------------------------------------


def test_paraphrase_clusters_switch_to_a_cluster_test_and_widen_the_mde():
    # 30 facts x 4 paraphrases; the candidate forgets 6 whole facts: 24 items that move together
    base = [True] * 120
    cand = [False] * 24 + [True] * 96
    its = lambda xs, cl: [Item(id=f"g{i}", type="knowledge", group="general", prompt="q", score=float(x), passed=x,  # noqa: E731
                               cluster=f"fact{i // 4}" if cl else None) for i, x in enumerate(xs)]
    rule = {"metric": "general.accuracy", "max_drop": 0.1, "require_significance": True}
    (iid,) = evaluate_gates(spec(rule), run(its(base, False)), run(its(cand, False), adapter="x"), "x")
    (cl,) = evaluate_gates(spec(rule), run(its(base, True)), run(its(cand, True), adapter="x"), "x")
    assert iid.test == "mcnemar" and cl.test == "cluster sign-flip (30 clusters)" and cl.n_clusters == 30
    assert cl.mde > iid.mde and cl.p_value > iid.p_value  # 6 forgotten facts are weaker evidence than 24 items
    assert iid.verdict == cl.verdict == "fail"


def test_a_sampled_pass_rate_is_a_continuous_score_with_a_smaller_mde_than_greedy_pass_fail():
    from datakit.evals.scorers import score_samples
    from datakit.evals.suite import SuiteSpec

    suite_spec = SuiteSpec(name="s", probes="p.jsonl")
    item = score_samples({"id": "q", "type": "knowledge", "prompt": "Capital of Korea?", "expect": "Seoul"},
                         ["Seoul.", "It is Seoul", "Tokyo", "Seoul"], suite_spec)
    assert item.score == 0.75 and item.passed and item.samples == 4 and item.detail.startswith("3/4 samples passed")
    rng = np.random.default_rng(0)
    p = rng.beta(4, 1, 60)
    rate = lambda: [Item(id=f"g{i}", type="knowledge", group="general", prompt="q",  # noqa: E731
                         score=float(np.mean(rng.random(8) < p[i])), samples=8) for i in range(60)]
    rule = {"metric": "general.accuracy", "max_drop": 0.1}
    (sampled,) = evaluate_gates(spec(rule), run(rate()), run(rate(), adapter="x"), "x")
    assert sampled.test == "sign-flip" and sampled.mde < 0.1 and sampled.verdict == "pass"
    greedy = lambda: [Item(id=f"g{i}", type="knowledge", group="general", prompt="q", score=float(x), passed=bool(x))  # noqa: E731
                      for i, x in enumerate(rng.random(60) < p)]
    (once,) = evaluate_gates(spec(rule), run(greedy()), run(greedy(), adapter="x"), "x")
    assert once.test == "mcnemar" and once.mde > 0.1 and once.verdict == "underpowered"


def test_above_noise_gates_need_a_rerun_and_forgive_a_breach_within_the_noise_floor():
    base = suite([True] * 450 + [False] * 50)
    rerun = suite([True] * 435 + [False] * 65)  # the same model retrained with another seed: -0.03
    cand = suite([True] * 438 + [False] * 62, adapter="sft")  # -0.024: over the margin, within the noise
    gate = spec({"metric": "general.accuracy", "max_drop": 0.02, "above_noise": True})
    with pytest.raises(DatakitError, match="rerun of the baseline"):
        evaluate_gates(gate, base, cand, "sft")
    res = compare([base, rerun, cand], ["base", "base-rerun", "sft"], spec=gate)
    (g,) = res.comparisons[1].gates
    assert res.noise["general.accuracy"] == pytest.approx(0.03) and g.noise == pytest.approx(0.03)
    assert not g.breach and "noise floor 0.03" in g.message
    (plain,) = evaluate_gates(spec({"metric": "general.accuracy", "max_drop": 0.02}), base, cand, "sft")
    assert plain.breach


def test_forgetting_kl_is_gated_on_the_candidate_alone_as_a_first_class_metric():
    base = suite([True] * 10)
    kl = lambda v: [Item(id=f"kl-{i}", type="forgetting", group="general", prompt="t", score=v) for i in range(8)]  # noqa: E731
    calm, drifted = run(base.items + kl(0.01), adapter="a"), run(base.items + kl(0.4), adapter="b")
    gate = spec({"metric": "forgetting.kl", "max": 0.05})
    res = compare([base, calm, drifted], ["base", "calm", "drifted"], spec=gate)
    assert res.verdicts == {"calm": {"forgetting.kl": "pass"}, "drifted": {"forgetting.kl": "fail"}}
    assert res.comparisons[0].gates[0].mde is None  # an absolute gate has no baseline to detect a change from


def test_the_learning_axis_is_the_domain_gain_when_the_suite_has_domain_metrics():
    from datakit.evals.report import _mean_gain, learning_metrics

    base = suite([True] * 20 + [False] * 30, domain=[False] * 14)  # general questions also score as knowledge
    tuned = suite([True] * 10 + [False] * 40, domain=[True] * 12 + [False] * 2, adapter="domain-only")
    res = compare([base, tuned], ["base", "domain-only"], spec=None)
    assert learning_metrics(res) == ["domain.accuracy"]
    assert _mean_gain(res.comparisons[0], learning_metrics(res)) == pytest.approx(12 / 14)  # not diluted


def test_with_a_gate_the_plots_show_the_gated_and_learning_metrics_not_every_metric():
    from datakit.evals.report import plotted_metrics

    base = suite([True] * 50, domain=[False] * 10)
    tuned = suite([True] * 45 + [False] * 5, domain=[True] * 8 + [False] * 2, adapter="sft")
    gated = compare([base, tuned], ["base", "sft"], spec=spec({"metric": "general.accuracy", "max_drop": 0.05}))
    assert plotted_metrics(gated) == ["domain.accuracy", "general.accuracy"]
    assert len(gated.metrics) == 6  # the table still lists all six
    assert plotted_metrics(compare([base, tuned], ["base", "sft"], spec=None)) == gated.metrics
